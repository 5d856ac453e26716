"""The replay's recorder (record_level) against a real Prometheus (query only).

Rules are evaluated by Prometheus as instant queries, where `@ end()` is the evaluation
time; the spend-to-date rules use it for "now" inside their subqueries. A range query
resolves `end()` to the range's end at every step, so the recorder evaluates such a rule
one instant query per step."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from aispend import metrics
from aispend.backtest.openmetrics import TextSink
from aispend.backtest.rulefiles import RecordingRule, reads_query_bounds
from aispend.backtest.tsdb import TempPrometheus, record_level
from aispend.rules.tunables import Tunables
from aispend.tsdb import backfill_recording_rules, create_blocks_from_openmetrics
from tests.conftest import REPO, require_binary

RULES = REPO / "alert-rules" / "aispend.rules.yml"

NOW = "max_over_time(vector(time())[1s:1s] @ end())"


def _recorded(lines: str) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in lines.splitlines():
        if line.startswith("#"):
            continue
        name, value, ts = line.split(" ")
        out.setdefault(name.split("{")[0], []).append((int(ts), float(value)))
    return out


def test_a_rule_reading_the_evaluation_time_gets_each_step_s_own(tmp_path: Path) -> None:
    require_binary("prometheus")
    (tmp_path / "data").mkdir()
    rules = [
        RecordingRule("now_at_step", NOW, interval=60),
        RecordingRule("time_at_step", "vector(time())", interval=60),
    ]
    start, end = 1_796_083_200, 1_796_083_200 + 3 * 3600  # 2026-12-01, three hours
    text = io.StringIO()
    with TempPrometheus(tmp_path / "data", tmp_path) as prom:
        record_level(prom, rules, start, end, 60, TextSink(text), slow_interval=600)
    recorded = _recorded(text.getvalue())
    # Per step, every 10 minutes (the slow interval): each value is its own step's time.
    assert recorded["now_at_step"] == [(t, float(t)) for t in range(start, end + 1, 600)]
    # A rule without @ end() is still one range query per chunk, every minute.
    assert recorded["time_at_step"] == [(t, float(t)) for t in range(start, end + 1, 60)]


def test_rules_using_query_bounds_are_found() -> None:
    assert reads_query_bounds(f"sum_over_time((x and on() (vector(time()) > {NOW}))[1h:5m])")
    assert reads_query_bounds("max(y @ start())")
    assert not reads_query_bounds("rate(x[5m] @ 1700000000)")


def test_only_records_the_named_rule_s_inputs_every_minute(tmp_path: Path) -> None:
    """The demo backfills the hourly spend over its older history at whole hours only.
    It sums the DCGM GPU cost rate (a recorded input) at each minute of its hour: the
    input recorded hourly too counted 5 of 60 minutes (0.49 of 4.92 per hour).
    Simulated: one GPU seen only by dcgm-exporter (no GPU here)."""
    require_binary("promtool")
    end = 1_796_083_200  # 2026-12-01 00:00 UTC
    start = end - 8 * 3600
    history = tmp_path / "history.om"
    gpu = '{gpu="0",UUID="u1",Hostname="h",modelName="NVIDIA H100 80GB HBM3"}'
    lines = [f"DCGM_FI_DEV_GPU_UTIL{gpu} 50 {t}\n" for t in range(start, end + 1, 60)]
    history.write_text("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n" + "".join(lines) + "# EOF\n")
    data = tmp_path / "data"
    create_blocks_from_openmetrics(history, data)
    hourly = metrics.REC_SCOPE_COST_1H.name
    backfill_recording_rules(data, [RULES], start, end - 3 * 3600 - 1, "1h", only=[hourly])
    backfill_recording_rules(data, [RULES], end - 3 * 3600, end)
    price = Tunables().gpu_hourly_prices["NVIDIA H100 80GB HBM3"]
    with TempPrometheus(data, tmp_path) as prom:
        query = {"query": f'{hourly}{{team="unattributed"}}', "step": "3600"}
        found = prom.api("query_range", {**query, "start": str(start + 2 * 3600), "end": str(end)})
    [series] = found["result"]
    values = [float(v) for _, v in series["values"]]
    assert len(values) == 7  # three hours of the hourly pass, four of the minute one
    assert values == pytest.approx([price] * 7, rel=1e-6)
