"""`promql.integral`: a per-second rate summed over subquery steps counts the window once
whatever the phase of the minute a rule group runs at (real promtool). Prometheus runs
each group at a fixed sub-second phase: `[1h:1m]` had 61 steps at a whole minute (what
promtool and whole-minute Grafana queries hit), `[59m59s:1m]` 59 steps from 59 s past
a minute (one group in fifteen on a 15 s interval)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aispend.rules.promql import integral
from tests.dashboards.test_dashboards import _promtool_expr_test

PHASES = ("0s", "1s", "30s", "59s", "59s500ms", "59s999ms")


@pytest.mark.parametrize(("window", "offset"), [("1h", None), ("5m", None), ("1h", "1h")])
def test_integral_counts_the_window_once_at_any_phase(
    tmp_path: Path, window: str, offset: str | None
) -> None:
    series = [{"series": "cost_rate", "values": "1x300"}]  # 1 per second, for 5 hours
    expected = {"1h": 3600, "5m": 300}[window]
    cases = [
        {
            "expr": integral("cost_rate", window, offset),
            "eval_time": f"3h{phase}",
            "exp_samples": [{"labels": "{}", "value": expected}],
        }
        for phase in PHASES
    ]
    _promtool_expr_test(tmp_path, series, cases)
