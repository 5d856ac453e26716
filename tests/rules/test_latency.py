"""RunawaySpend's documented detection latency: its intervals are the shipped configs',
its figures follow the tunables, and the runbook shows them."""

from __future__ import annotations

import yaml

from aispend.rules.cli import RUNBOOKS_FILE
from aispend.rules.latency import PIPELINE, runaway_latency, runaway_latency_markdown
from aispend.rules.promql import seconds
from aispend.rules.tunables import Tunables
from tests.conftest import REPO


def test_pipeline_matches_the_shipped_configs() -> None:
    prometheus = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    assert seconds(prometheus["global"]["scrape_interval"]) == PIPELINE.scrape
    assert seconds(prometheus["global"]["evaluation_interval"]) == PIPELINE.evaluation
    alertmanager = yaml.safe_load((REPO / "deploy" / "alertmanager.yml").read_text())
    actuator = [r for r in alertmanager["route"]["routes"] if r["receiver"] == "actuator"]
    assert [seconds(r["group_wait"]) for r in actuator] == [PIPELINE.group_wait]
    # The z-scores RunawaySpend reads and the alerts run at the global interval.
    rules = yaml.safe_load((REPO / "alert-rules" / "aispend.rules.yml").read_text())
    alerts = yaml.safe_load((REPO / "alert-rules" / "aispend.alerts.yml").read_text())
    zscore = f"team_agent:aispend_cost:zscore_rate{Tunables().runaway_rate_window}"
    groups = [g for g in rules["groups"] if any(r.get("record") == zscore for r in g["rules"])] + [
        g for g in alerts["groups"] if any(r["alert"] == "AISpendRunawaySpend" for r in g["rules"])
    ]
    assert len(groups) == 2
    assert all("interval" not in g for g in groups)


def test_figures_follow_the_tunables() -> None:
    now = runaway_latency(Tunables())
    assert (now.window, now.fires_after, now.floor, now.worst) == (120, 30, 35, 80)
    assert round(now.t_zscore, 1) == 3.8  # 6 x 0.1 x 120 / 19
    assert round(now.t_burn, 1) == 14.7  # 120 x (1 / 0.3 - 1) / 19
    # The settings the runbook once described (5m rate, for: 1m) give its old figures:
    # floor 1m05s, worst 1m50s, burn condition after about 37 s.
    old = runaway_latency(Tunables(runaway_rate_window="5m", runaway_for="1m"))
    assert (old.floor, old.worst, round(old.t_burn)) == (65, 110, 37)
    # `for` that is not a whole number of evaluations fires at the next one after it.
    assert runaway_latency(Tunables(runaway_for="40s")).fires_after == 45


def test_runbook_shows_the_derived_figures() -> None:
    runbooks = (REPO / RUNBOOKS_FILE).read_text()
    section = runaway_latency_markdown(Tunables())
    assert section in runbooks
    for text in ("`runaway_for` (30s)", "**35 s**", "**80 s**", "= 3.8 s", ": 14.7 s"):
        assert text in section
    assert "5m rate" not in section and "1m05s" not in runbooks
