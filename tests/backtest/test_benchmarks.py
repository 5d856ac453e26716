"""The backtest benchmarks run end to end on a tiny subset (figures not asserted).

They read ../shared/data (spend traces, NAB) and the project's generated rules in
alert-rules/, and write their section into a temporary markdown file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

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
    # The NAB sets summed, with the goal's verdict per aispend row.
    assert "### NAB realKnownCause, all sets summed:" in text
    assert re.search(r"^- aispend rules, all warning/critical alerts: (met|NOT met)$", text, re.M)
    for detector in ("aispend rules, all", "static_150pct_of_30d_avg", "zscore_14d_gt_2.5"):
        assert detector in text


def test_forecast_accuracy_tiny(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    text = _run("forecast_accuracy.py", out, "--limit", "1", "--days", "3")
    assert "## Forecast accuracy (month-end spend)" in text
    assert "benchmarks/forecast_accuracy.py --limit 1 --days 3" in text
    assert "1 teams, 0 complete months" in text


def test_nab_sets_are_summed_per_detector() -> None:
    """The pooled NAB rows add caught, incidents and false alarms over the sets, and the
    goal verdict needs higher recall and fewer false alarms than every baseline."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import detection_quality as dq
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    def row(name: str, caught: int, incidents: int, false: int) -> dq.Row:
        return dq.Row(name, None, caught, incidents, None, false, 0.0, None, None, None, {})

    set_a = [row("aispend x", 1, 2, 1), row("baseline `a`", 0, 2, 3)]
    set_b = [row("aispend x", 2, 3, 0), row("baseline `a`", 1, 3, 0)]
    rows, days = dq.pooled([(set_a, 20.0), (set_b, 40.0)])
    assert days == 60.0
    summed = [
        (r.detector, r.caught, r.incidents, r.false_alarms, r.false_per_team_30d) for r in rows
    ]
    assert summed == [("aispend x", 3, 5, 1, 0.5), ("baseline `a`", 1, 5, 3, 1.5)]
    assert rows[0].recall == 0.6
    assert dq._better_than_baselines(rows[0], rows)
    # Higher recall with as many false alarms as a baseline is not better.
    tied, _ = dq.pooled([([row("aispend x", 3, 5, 3), row("baseline `a`", 1, 5, 3)], 30.0)])
    assert not dq._better_than_baselines(tied[0], tied)


def test_detection_sweep_tiny(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    text = _run("detection_sweep.py", out, "--limit", "1", "--days", "3")
    assert "## Detection sweep (anomaly tunables, chosen on NAB)" in text
    assert "benchmarks/detection_sweep.py --limit 1 --days 3" in text
    assert re.search(
        r"^- whole series, any configuration, .*: (none of|[\d,]+ of) 41,314", text, re.M
    )
    assert "### NAB windows: direction, and who catches them" in text


def _sweep_module() -> ModuleType:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import detection_sweep
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return detection_sweep


def test_sweep_configurations_follow_the_product() -> None:
    """Every rule off or at one setting; the two z-score alerts share one max_cv; the
    committed tunables are one of the configurations."""
    ds = _sweep_module()
    all_configs = list(ds.configs())
    assert len(all_configs) == len(set(all_configs)) == 41_314
    for c in all_configs:
        if c.z is not None and c.team_runaway is not None:
            assert dict(c.z)["max_cv"] == dict(c.team_runaway)["max_cv"]
        assert (c.z is None) == (c.z_baselines == ())
    assert ds.committed_config() in set(all_configs)


def test_sweep_rules_are_the_committed_ones_and_change_no_recording_rule() -> None:
    """The rules the sweep builds for the committed settings are those the committed
    files hold, as the backtest reads them; a tunable that would change a recording rule
    (which the one replay per data set could not reflect) is refused."""
    ds = _sweep_module()
    ds._check_committed(REPO / "alert-rules")
    assert len(ds._rules_for(ds.Z, ds.committed(ds.Z))) == 1
    loose = dict(ds.committed(ds.Z)) | {"anomaly_sigma": 3.0}
    assert "> 3\n" in ds._rules_for(ds.Z, tuple(loose.items()))[0].expr
    with pytest.raises(SystemExit, match="changes the recording rules"):
        ds._rules_for(ds.Z, (("forecast_rate_window", "1d"),))


def test_sweep_frontier_keeps_the_best_catch_per_false_alarm_count() -> None:
    ds = _sweep_module()
    a, b, c, d = (
        ds.Config(None, (), None, None),
        *(ds.Config(None, (n,), None, None) for n in "xyz"),
    )
    scored = {
        a: ds.Tally(0, 5, 0),
        b: ds.Tally(2, 5, 3),
        c: ds.Tally(1, 5, 3),  # fewer catches for as many false alarms
        d: ds.Tally(2, 5, 4),  # no more catches for more false alarms
    }
    assert ds.frontier(scored) == [(a, scored[a]), (b, scored[b])]
    assert ds.dominates(ds.Tally(2, 5, 1), ds.Tally(1, 5, 2))
    assert not ds.dominates(ds.Tally(2, 5, 2), ds.Tally(1, 5, 2))


def test_forecast_goal_is_judged_per_day_as_well_as_overall() -> None:
    """A day whose MAPE is over the goal is named even when the average meets it."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import forecast_accuracy as fa
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    verdict = fa.goal_verdict(0.059, {7: [0.1004, 0.1], 14: [0.046], 21: [0.03]})
    assert verdict == (
        "over all forecasts met (5.90 %); per day: day 7 NOT met (10.02 %), "
        "day 14 met (4.60 %), day 21 met (3.00 %)"
    )
    assert fa.goal_verdict(None, {}) == "n/a (no complete month in range)"


def test_rules_scale_tiny(tmp_path: Path) -> None:
    """One team (50 cost series): every group of the generated rules gets its row, and a
    rule's query time is read from a real Prometheus (figures not asserted)."""
    out = tmp_path / "benchmarks.md"
    text = _run("rules_scale.py", out, "--teams", "1", "--models", "1")
    assert "## Rules at scale (query time per rule group)" in text
    assert "### 50 cost series" in text
    groups = yaml.safe_load((REPO / "alert-rules" / "aispend.rules.yml").read_text())["groups"]
    groups += yaml.safe_load((REPO / "alert-rules" / "aispend.alerts.yml").read_text())["groups"]
    for group in groups:
        assert f"| {group['name']} | " in text
    assert "Past Prometheus's default query limits (timeout 2m, max-samples 50M;" in text
