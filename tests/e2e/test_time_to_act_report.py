"""The text benchmarks/time_to_act.py writes into docs/benchmarks.md.

Nothing runs: report() gets made-up measurements (no stack is started, a full run takes
minutes per demo) and the check is that the text carries those figures, the load the
script read, and no figure it did not measure or read from the repo's files.
"""

from __future__ import annotations

import re
import sys

from tests.conftest import REPO


def test_report_holds_only_measured_figures() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import time_to_act
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    floor = {"scrape_interval": 15.0, "evaluation_interval": 15.0, "for": 30.0,
             "group_wait": 5.0, "total": 65.0}  # fmt: skip
    text = time_to_act.report(
        runs=3, days=8.0, started="2026-12-07 09:00 UTC", detect=[80.0, 84.0, 91.5],
        act=[90.0, 95.5, 101.0], closed=3, floor=floor, cpus=2, load=(2.3, 0.5),
    )  # fmt: skip
    assert "benchmarks/time_to_act.py --runs 3` (2026-12-07 09:00 UTC" in text
    assert "2 CPUs, 1-minute load average 2.3 at the start and 0.5 at\nthe end" in text
    assert "| spike -> RunawaySpend firing in Prometheus | 84.0 s / 91.5 s |" in text
    assert "| spike -> throttle applied (first 429 seen by the agent) | 95.5 s / 101.0 s |" in text
    assert "| loop closed (throttled, critical only notified, lifted) | 3 of 3 |" in text
    assert "= **65 s**" in text
    # No durations in hours: the cloud tools' documented delays are not measured here.
    assert re.findall(r"\d+\s*h\b", text) == []
    assert "Azure" not in text and "AWS" not in text
