"""The backtest benchmarks run end to end on a tiny subset (figures not asserted).

They read ../shared/data (spend traces, NAB) and the project's generated rules in
alert-rules/, and write their section into a temporary markdown file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA, require_binary

pytestmark = pytest.mark.integration


def _run(script: str, out: Path, *args: str) -> str:
    require_binary("prometheus")
    require_binary("promtool")
    assert (SHARED_DATA / "spend-traces" / "labels.json").is_file()
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args, "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out.read_text()


def test_detection_quality_tiny(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    text = _run("detection_quality.py", out, "--limit", "1", "--days", "3")
    assert text.startswith("# Benchmarks\n\n## Other\n\nkept\n\n## Detection quality (backtest)\n")
    assert "benchmarks/detection_quality.py --limit 1 --days 3" in text
    assert "### Spend traces: 1 series, 3.0 series-days" in text
    assert "### NAB realKnownCause" in text
    for detector in ("aispend rules, all", "static_150pct_of_30d_avg", "zscore_14d_gt_2.5"):
        assert detector in text


def test_forecast_accuracy_tiny(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    text = _run("forecast_accuracy.py", out, "--limit", "1", "--days", "3")
    assert "## Forecast accuracy (month-end spend)" in text
    assert "benchmarks/forecast_accuracy.py --limit 1 --days 3" in text
    assert "1 teams, 0 complete months" in text
