"""The metric contract in aispend/metrics.py follows the naming conventions, and
docs/metrics.md is exactly what it generates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aispend import metrics
from aispend.docs import EXPOSED_BY, render_metrics_md
from tests.conftest import EXAMPLE_CONFIG, REPO, SHARED_DATA

NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


def test_names_are_unique_prefixed_and_well_formed():
    names = [m.name for m in metrics.ALL_METRICS]
    assert len(names) == len(set(names))
    for m in metrics.ALL_METRICS:
        assert NAME_RE.match(m.name), m.name
        assert m.name.startswith(("aispend_", "gen_ai_")), m.name
        assert (m.type == "counter") == m.name.endswith("_total"), m.name
        if m.type == "info":
            assert m.name.endswith("_info"), m.name
        if m.unit == metrics.MONEY:
            assert "cost" in m.name or m.name == "aispend_budget", m.name
            assert "reporting currency" in m.full_help
        if m.unit == "ratio":
            assert m.name.endswith("_ratio"), m.name
        if m.unit in ("seconds", "bytes", "watts", "joules", "celsius"):
            assert m.unit in m.name, m.name
        for label in m.labels:
            assert not re.search(r"[a-z][A-Z]", label), f"camelCase label {label} in {m.name}"
        assert m.help.endswith("."), m.name


def test_family_names_strip_the_suffix_prometheus_client_adds():
    assert metrics.LLM_COST.family_name == "aispend_llm_cost"
    assert metrics.TEAM_INFO.family_name == "aispend_team"
    assert metrics.BUDGET.family_name == "aispend_budget"


def test_docs_metrics_md_is_generated_from_the_contract():
    committed = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert committed == render_metrics_md(), "run `make generate` and commit docs/metrics.md"
    for m in metrics.ALL_METRICS:
        assert f"`{m.name}`" in committed


def _shared_families(argv: list[str], cwd: Path) -> set[str]:
    """Names of the shared metrics (docs EXPOSED_BY) whose family an `--once` run declares."""
    env = {k: v for k, v in os.environ.items() if k != "AISPEND_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "aispend", "exporter", *argv, "--once"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    declared = {line.split()[2] for line in done.stdout.splitlines() if line.startswith("# TYPE ")}
    return {spec.name for spec in EXPOSED_BY if declared & {spec.name, spec.family_name}}


@pytest.mark.parametrize("process", ["budgets", "gpu", "billing"])
def test_docs_say_which_processes_expose_the_shared_metrics(process: str, tmp_path: Path):
    """docs/metrics.md's "exposed by" column against the real `--once` expositions (the
    gateway, tokens exporter and actuator are not run here)."""
    config = tmp_path / "aispend.yaml"
    if process == "billing":
        sample = SHARED_DATA / "focus" / "focus_sample.csv"
        config.write_text(
            "teams: [{name: search}]\n"
            "sources:\n"
            "  focus:\n"
            f"    paths: ['{sample}']\n"
            "    cost_column: BilledCost\n"
            "    tags: {team: business_unit, project: application}\n"
        )
    else:
        config.write_text(EXAMPLE_CONFIG.read_text())
    documented = {spec.name for spec, processes in EXPOSED_BY.items() if process in processes}
    assert _shared_families([process, "--config", str(config)], tmp_path) == documented
    if process == "gpu":  # without any config file it watches none (docs' note)
        empty = tmp_path / "empty"
        empty.mkdir()
        reload = {metrics.CONFIG_RELOAD_SUCCESS.name, metrics.CONFIG_RELOAD_TIMESTAMP.name}
        assert _shared_families(["gpu"], empty) == documented - reload
