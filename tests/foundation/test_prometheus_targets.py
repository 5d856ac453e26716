"""deploy/prometheus.yml scrapes the optional exporters (GPU, Azure tokens and billing)
only where they are deployed: their jobs read the target from a file that only
docker-compose.gpu.yml / docker-compose.azure.yml mount (deploy/targets/), and
`aispend stack up` inlines it when it runs the exporter.

The Compose side (which file mounts what) is checked in tests/dashboards/test_compose.py;
here the real Prometheus shows the consequence: no target file, no `up` series (so no
AISpendExporterDown); a target file whose exporter is not listening, `up` 0.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from aispend.procs import wait_until
from aispend.stack.components import COMPONENTS, CORE, RunContext
from aispend.stack.render import TARGETS_PREFIX, render_prometheus
from tests.conftest import REPO, free_port, prom_query, require_binary, running_prometheus

DEPLOY = REPO / "deploy" / "prometheus.yml"
OPTIONAL = {
    "aispend-gpu": "exporter-gpu",
    "aispend-tokens": "exporter-tokens",
    "aispend-billing": "exporter-billing",
}


def _jobs(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in data["scrape_configs"]}


def test_optional_jobs_read_their_target_from_a_mounted_file() -> None:
    jobs = _jobs(yaml.safe_load(DEPLOY.read_text()))
    for job, component in OPTIONAL.items():
        assert "static_configs" not in jobs[job]
        assert jobs[job]["file_sd_configs"] == [{"files": [f"{TARGETS_PREFIX}{component}.yml"]}]
        targets = yaml.safe_load((REPO / "deploy" / "targets" / f"{component}.yml").read_text())
        assert [t["targets"] for t in targets] == [[f"{component}:{_port(component)}"]]
    # The core jobs keep static targets.
    assert all("static_configs" in j for name, j in jobs.items() if name not in OPTIONAL)


def _port(component: str) -> int:
    return COMPONENTS[component].port


def test_stack_inlines_the_target_of_an_optional_exporter_it_runs(tmp_path: Path) -> None:
    ctx = RunContext(tmp_path, REPO, tmp_path / "aispend.yaml", port_base=29090)
    core = yaml.safe_load(render_prometheus(DEPLOY, ctx, CORE))
    assert not set(_jobs(core)) & set(OPTIONAL)
    text = render_prometheus(DEPLOY, ctx, [*CORE, "exporter-gpu", "exporter-billing"])
    jobs = _jobs(yaml.safe_load(text))
    assert jobs["aispend-gpu"]["static_configs"] == [{"targets": [ctx.address("exporter-gpu")]}]
    assert jobs["aispend-billing"]["static_configs"] == [
        {"targets": [ctx.address("exporter-billing")]}
    ]
    assert jobs["aispend-billing"]["scrape_interval"] == "60s"
    assert "file_sd_configs" not in jobs["aispend-gpu"]
    assert "aispend-tokens" not in jobs
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(text)
    out = subprocess.run(
        [require_binary("promtool"), "check", "config", str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stdout + out.stderr


@pytest.mark.integration
def test_prometheus_scrapes_only_the_exporters_whose_target_is_mounted(tmp_path: Path) -> None:
    """As Compose with docker-compose.gpu.yml and without docker-compose.azure.yml: the
    GPU target file is mounted (its exporter down: nothing listens on its port), the
    tokens and billing files are not."""
    data = yaml.safe_load(DEPLOY.read_text())
    data.pop("rule_files")
    data.pop("alerting")
    data["scrape_configs"] = [j for j in data["scrape_configs"] if j["job_name"] in OPTIONAL]
    for job in data["scrape_configs"]:
        job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
        for sd in job["file_sd_configs"]:
            sd["files"] = [f.replace(TARGETS_PREFIX, f"{tmp_path}/targets-") for f in sd["files"]]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(data))
    gpu = (REPO / "deploy" / "targets" / "exporter-gpu.yml").read_text()
    down = f"127.0.0.1:{free_port()}"
    (tmp_path / "targets-exporter-gpu.yml").write_text(gpu.replace("exporter-gpu:9111", down))
    with running_prometheus(config, tmp_path / "data") as base:
        up = wait_until(
            lambda: prom_query(base, 'up{job="aispend-gpu"}'), 30, 0.5, "the GPU job's first scrape"
        )
        assert [(s["metric"]["instance"], s["value"][1]) for s in up] == [(down, "0")]
        assert prom_query(base, 'up{job=~"aispend-tokens|aispend-billing"}') == []
        with urllib.request.urlopen(f"{base}/api/v1/targets", timeout=5) as resp:
            active = json.load(resp)["data"]["activeTargets"]
        assert {t["labels"]["job"] for t in active} == {"aispend-gpu"}
