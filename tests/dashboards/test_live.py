"""Every panel query returns data from a live Prometheus holding the demo history and
a running demo workload.

Real parts: Prometheus and Alertmanager (Debian binaries), promtool building the TSDB
from `aispend demo history` (14 days of OpenMetrics: gateway spend, requests, tokens,
budgets) and backfilling the generated recording rules over the last hours
(`promtool tsdb create-blocks-from rules`), and the local stack (`aispend.stack`):
simulated LLM upstream, gateway, budgets exporter, actuator, chat sink, with
`aispend demo traffic` driving the demo agents through the gateway.
Simulated: the GPUs. No GPU here, so the GPU exporter loads the fake
libnvidia-ml.so.1 that tests/gpu compiles (one idle A100, one busy H100), which makes
the GPU fleet dashboard and the data-age panel show data. Also simulated: the bill. The
billing exporter reads a FOCUS export written here (the columns and value formats of
the FOCUS sample in ../shared/data, with the last three UTC days of the demo teams'
AI and storage costs), so the bill panels and the estimate-vs-bill ratio show data.

A query that returns nothing fails the test unless its panel is documented as
alert-only (its description carries defaults.ALERT_ONLY; docs/dashboards.md lists them).
Panels with a relative time (`now/d`, `now/M`) get `$__range` = the time since the
start of that day or month.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from aispend import metrics as m
from aispend.procs import ManagedProcess, wait_until
from tests.conftest import (
    EXAMPLE_CONFIG,
    REPO,
    SHARED_DATA,
    free_port_base,
    prom_query,
    require_binary,
)
from tests.dashboards.panels import PanelQuery, all_queries, concrete, dashboard_files, load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

HISTORY_DAYS = 14
RULES_BACKFILL_HOURS = 3
COMPONENTS = [
    "demo-upstream", "chat-sink", "exporter-budgets", "exporter-gpu", "exporter-billing",
    "gateway", "actuator", "alertmanager", "prometheus",
]  # fmt: skip
GPU_SOURCE = REPO / "tests" / "gpu" / "fake_nvml" / "fake_nvml.c"
GIB = 1024**3
GPU_STATE = {
    "devices": [
        {
            "name": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-00000000-0000-4000-8000-00000000a100",
            "utilization_gpu": 0, "memory_total": 40 * GIB, "memory_used": 1 * GIB,
            "power_mw": 61000, "energy_mj": 1000000, "temperature": 30,
        },
        {
            "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-00000000-0000-4000-8000-00000000h100",
            "utilization_gpu": 87, "memory_total": 80 * GIB, "memory_used": 64 * GIB,
            "power_mw": 512000, "energy_mj": 90000000, "temperature": 61,
        },
    ]
}  # fmt: skip
GPU_SECTION = {
    "hostname": "gpu-node-1",
    "attribution": [
        {"host": "gpu-node-1", "gpu": 0, "team": "research", "project": "finetune"},
        {"host": "gpu-node-1", "gpu": 1, "team": "search", "project": "ranking"},
    ],
}


def range_seconds(q: PanelQuery, default: int = 3600) -> int:
    """Grafana's $__range for the panel: its relative time (today, this month) or 1h."""
    now = datetime.now(UTC)
    start = None
    if q.time_from == "now/d":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elif q.time_from == "now/M":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return default if start is None else max(60, int(time.time() - start.timestamp()))


def _focus_export(tmp: Path) -> Path:
    """A FOCUS CSV: per demo team, AI and storage cost for each of the last 3 UTC days."""
    with (SHARED_DATA / "focus" / "focus_sample.csv").open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        template = next(row for row in reader if row["BillingCurrency"] == "USD")
        columns = list(reader.fieldnames or [])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    fmt = "%Y-%m-%d %H:%M:%S"
    rows = []
    for back in (3, 2, 1):
        start = today - timedelta(days=back)
        for team in ("search", "research", "growth", "support"):
            for category, service, cost in (
                ("AI and Machine Learning", "Azure OpenAI Service", 40.0),
                ("Storage", "Storage Accounts", 7.5),
            ):
                rows.append(
                    template
                    | {
                        "ProviderName": "Microsoft",
                        "ServiceName": service,
                        "ChargePeriodStart": start.strftime(fmt),
                        "ChargePeriodEnd": (start + timedelta(days=1)).strftime(fmt),
                        "ServiceCategory": category,
                        "EffectiveCost": f"{cost:.2f}",
                        "BilledCost": f"{cost:.2f}",
                        "Tags": json.dumps({"team": team}),
                    }
                )
    path = tmp / "focus.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _config(tmp: Path) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["sources"]["gpu"] = GPU_SECTION
    data["sources"]["focus"] = {"paths": [str(_focus_export(tmp))]}
    path = tmp / "aispend.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _fake_nvml(tmp: Path) -> tuple[Path, Path]:
    gcc = require_binary("gcc")
    lib_dir = tmp / "nvml"
    lib_dir.mkdir()
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O1", "-o", str(lib_dir / "libnvidia-ml.so.1"), str(GPU_SOURCE)],
        check=True,
    )
    state = tmp / "nvml_state.json"
    state.write_text(json.dumps(GPU_STATE), encoding="utf-8")
    return lib_dir, state


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def live_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for binary in ("prometheus", "promtool", "gcc"):
        require_binary(binary)
    if shutil.which("prometheus-alertmanager") is None:
        require_binary("alertmanager")
    from aispend.config import load_config
    from aispend.demo.history import write_history
    from aispend.stack.supervisor import Stack, StackOptions
    from aispend.tsdb import backfill_recording_rules, create_blocks_from_openmetrics

    tmp = tmp_path_factory.mktemp("live")
    config = _config(tmp)
    run_dir = tmp / "run"
    data_dir = run_dir / "prometheus-data"
    history = write_history(load_config(config), tmp / "history", HISTORY_DAYS)
    create_blocks_from_openmetrics(history, data_dir)
    history.unlink()
    end = time.time()
    backfill_recording_rules(
        data_dir,
        [REPO / "alert-rules" / "aispend.rules.yml"],
        end - RULES_BACKFILL_HOURS * 3600,
        end,
        eval_interval="5m",
    )
    # Every port checked free, below the ephemeral range (a base drawn from 20000-50000
    # unchecked met PortInUse twice, on 38796 and 44296).
    port_base = free_port_base(COMPONENTS)
    lib_dir, state = _fake_nvml(tmp)
    saved = {k: os.environ.get(k) for k in ("LD_LIBRARY_PATH", "FAKE_NVML_STATE")}
    os.environ["LD_LIBRARY_PATH"] = str(lib_dir)
    os.environ["FAKE_NVML_STATE"] = str(state)
    stack = Stack(
        StackOptions(config=config, run_dir=run_dir, port_base=port_base, components=COMPONENTS)
    )
    traffic = None
    try:
        stack.start()
        _restore(saved)  # only the GPU exporter needs the fake library
        urls = stack.urls()
        traffic = ManagedProcess(
            "demo traffic",
            [
                sys.executable,
                "-m",
                "aispend",
                "demo",
                "traffic",
                "--config",
                str(run_dir / "aispend.yaml"),
                "--gateway",
                urls["gateway"],
            ],
            run_dir / "logs" / "traffic.log",
        )
        traffic.start()
        prom = urls["prometheus"]
        gateway_instance = urls["gateway"].removeprefix("http://")
        requests = f'{m.LLM_REQUESTS.name}{{instance="{gateway_instance}"}}'
        overhead = f"{m.GATEWAY_OVERHEAD.name}_bucket"
        ready = (
            f"sum(rate({requests}[1m])) > 0"
            f" and on() count({m.REC_TEAM_COST_RATE5M.name}) > 0"
            f" and on() count(histogram_quantile(0.5, rate({overhead}[1m])) >= 0)"
        )
        wait_until(
            lambda: prom_query(prom, ready),
            timeout=240,
            interval=2,
            what="live gateway traffic scraped twice and the rules evaluated",
        )
        yield prom
    finally:
        if traffic is not None:
            traffic.stop()
        stack.stop()
        _restore(saved)


def test_history_and_rules_backfill_are_in_the_tsdb(live_prometheus: str) -> None:
    """The 14-day history is there (a week-ago rate exists) and so are backfilled rules."""
    week_ago = prom_query(live_prometheus, f"sum(rate({m.LLM_COST.name}[1h] offset 7d))")
    assert len(week_ago) == 1 and float(week_ago[0]["value"][1]) > 0
    backfilled = prom_query(live_prometheus, f"count({m.REC_TEAM_COST_RATE1H.name} offset 2h)")
    assert int(backfilled[0]["value"][1]) == 4  # the four demo teams


def _concrete(q: PanelQuery) -> str:
    # Team showback has a single-team variable; the others run with All.
    values = {"team": "search"} if "showback" in q.dashboard.lower() else {}
    seconds = range_seconds(q)
    return concrete(q.expr, values | {"__range": f"{seconds}s", "__range_s": str(seconds)})


def _empty(prom: str, queries: list[PanelQuery]) -> list[str]:
    return [f"{q.name}: {_concrete(q)}" for q in queries if not prom_query(prom, _concrete(q))]


def test_every_panel_query_returns_data(live_prometheus: str) -> None:
    """Polls (deadline 4 min) until every query that must show data does: 1-minute rule
    groups (baselines, budgets used) and two self-scrapes have to happen first."""
    queries = list(all_queries())
    assert len(queries) >= 70
    required = [q for q in queries if not q.alert_only]
    assert len(queries) - len(required) == 9
    with contextlib.suppress(TimeoutError):  # the assertion below names what is missing
        wait_until(
            lambda: not _empty(live_prometheus, required),
            timeout=240,
            interval=5,
            what="every non-alert-only panel query returning data",
        )
    empty = _empty(live_prometheus, required)
    assert empty == [], "panels without data in the demo:\n" + "\n".join(empty)


_LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+), (?P<label>\w+)\)")


def _variable_values(prom: str, query: str, values: dict[str, str]) -> list[str]:
    """What Grafana lists for a `label_values(selector, label)` variable over the last
    7 days (the label values API with the selector as match[], as Grafana asks it)."""
    found = _LABEL_VALUES.fullmatch(query)
    assert found, f"not a label_values query: {query}"
    end = time.time()
    params = {
        "match[]": concrete(found["selector"], values),
        "start": str(end - 7 * 86400),
        "end": str(end),
    }
    url = f"{prom}/api/v1/label/{found['label']}/values?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return sorted(body["data"])


def _variables() -> list[tuple[str, str, str]]:
    return [
        (load(path)["title"], v["name"], v["query"])
        for path in dashboard_files()
        for v in load(path)["templating"]["list"]
        if v["type"] == "query"
    ]


def test_every_dashboard_variable_lists_values(live_prometheus: str) -> None:
    """Each variable lists values; the team list has every configured team, and a team's
    projects include one that has GPU spend only (research/finetune: the fake GPU 0)."""
    from aispend.config import load_config

    teams = {t.name for t in load_config(EXAMPLE_CONFIG).teams}
    variables = _variables()
    assert len(variables) == 7
    for dashboard, name, query in variables:
        # Team showback's $team is one team (regex-escaped: `.*` would match no team).
        team = "search" if "showback" in dashboard.lower() else ".*"
        listed = _variable_values(live_prometheus, query, {"team": team})
        assert listed, f"{dashboard}: ${name} lists nothing ({query})"
        if name == "team" and "showback" in dashboard.lower():
            assert teams <= set(listed), f"{dashboard}: ${name} lists {listed}"
    (project,) = [q for d, n, q in variables if n == "project"]
    wait_until(
        lambda: "finetune" in _variable_values(live_prometheus, project, {"team": "research"}),
        timeout=240,
        interval=5,
        what="the GPU-only project research/finetune listed by the $project variable",
    )
