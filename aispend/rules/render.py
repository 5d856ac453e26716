"""Render rule groups to Prometheus YAML and the alerts' runbooks to Markdown.

Output is stable: groups and rules in definition order (rules in a group are evaluated
in order, so dependencies come first), mapping keys in a fixed order, labels and
annotations sorted, multi-line expressions as literal blocks, and a DO NOT EDIT header.
"""

from __future__ import annotations

from typing import Any

import yaml

from aispend.rules.latency import runaway_latency_markdown
from aispend.rules.model import Alert, Group, Recording
from aispend.rules.tunables import Tunables

HEADER = (
    "# DO NOT EDIT: generated from aispend/rules/ by `aispend rules generate`.\n"
    "# Edit the Python sources (tunables in aispend/rules/tunables.py) and regenerate.\n"
)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


TEAM_QUERY = "{{ if $labels.team }}?var-team={{ $labels.team }}{{ end }}"
"""Selects the alert's team on the linked dashboard; left out for an alert without a team
label (an empty `var-team=` would select no team and empty every team-filtered panel)."""


def _anchor(alertname: str) -> str:
    return alertname.lower()


def rule_dict(rule: Recording | Alert, t: Tunables) -> dict[str, Any]:
    if isinstance(rule, Recording):
        out: dict[str, Any] = {"record": rule.record, "expr": rule.expr}
        if rule.labels:
            out["labels"] = dict(sorted(rule.labels.items()))
        return out
    annotations = {
        "dashboard_url": f"{t.dashboard_url}/{rule.dashboard}{TEAM_QUERY}",
        "description": rule.description,
        "runbook_url": f"{t.runbook_url}#{_anchor(rule.alert)}",
        "summary": rule.summary,
    }
    return {
        "alert": rule.alert,
        "expr": rule.expr,
        "for": rule.for_,
        "labels": dict(sorted(rule.labels.items())),
        "annotations": dict(sorted(annotations.items())),
    }


def render_groups(groups: list[Group], t: Tunables) -> str:
    data: dict[str, list[Any]] = {"groups": []}
    for g in groups:
        if not g.rules:  # custom tunables (no burn window of 6h or more): no empty group
            continue
        group: dict[str, Any] = {"name": g.name}
        if g.interval:
            group["interval"] = g.interval
        group["rules"] = [rule_dict(r, t) for r in g.rules]
        data["groups"].append(group)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True, indent=2)
    return HEADER + body


RUNBOOK_INTRO = """<!-- DO NOT EDIT: generated from aispend/rules/ by `aispend rules generate`. -->
# Runbooks

One section per alert of `alert-rules/aispend.alerts.yml`: what it means, how to check,
what to do. Every alert carries `severity`, `team` where there is one, and `action`
(throttle | pause | notify) where the actuator acts. Teams with criticality `critical`
never get throttle or pause, only notify. Money is in the reporting currency; recorded
`:rate*` series are per second.

## How detection works

- **Spend** combines LLM token cost (gateway, tokens exporter) and GPU cost (aispend's
  gpu exporter, or dcgm-exporter GPUs priced by the `gpu_hourly_prices` tunable; a GPU
  model without a price has no cost and raises AISpendGPUUnpriced), read from the raw
  counters. Rules reading weeks or a month (spend so far, the forecast rate, the weekly
  and daily baselines) sum recorded hourly series instead, which Prometheus records from
  when it loads the rules: after installing over existing history, record the past
  hours with `aispend rules backfill` (README, "History from before the rules").
- **Spend so far** (today, this month, UTC) sums hourly buckets of the period plus
  5-minute buckets since the last full hour: it lags the counters by at most 5 minutes.
- **Burn rate** = spend rate / (budget / period length); 1 is exactly on budget.
  Month budgets use the Google SRE workbook windows (14.4x over 1h and 5m, 6x over 6h and
  30m page; 3x over 1d and 2h, 1x over 3d and 6h ticket). Day budgets divide the windows
  by 6 (10m/5m, 1h/5m, 4h/20m, 12h/1h): dividing by 30 would give 2-minute long windows,
  noise at a 15s scrape; a page then means 10 % of the day's budget in 10 minutes.
  Windows of 6h or more are recorded every minute (group aispend-spend-long-windows),
  shorter ones every 15 s (aispend-spend). Each window reads the raw counters once, into
  a rate per team, project and agent label
  (`team_project_agent_labels:aispend_cost:rate<window>`) that the budget scopes sum.
- **Anomalies**: z-score of the 5m spend rate against a prediction, with the baseline in
  the `baseline` label: `1w` (same time 1-3 weeks ago plus trend, median; weekly stddev)
  once a week of history exists, else `1d` (same with days), else `6h` (mean and stddev
  of the last 6 hours). The weekly and daily ones also need their recorded hourly rate
  to reach back over their period; a gap in it of under a day (Prometheus down) does not
  count. Guards: minimum spend rate (sparse series), stddev/mean at most
  `max_cv` (normality), stddev at least `min_stddev_ratio` of the prediction, and a
  per-series opt-out (`zscore_opt_out`).
- **Edge of history**: a past window (a week ago, a day ago) counts only when the
  history covers all of it (the series has a sample in the 5 minutes before the window
  starts); a window cut by the start of history holds only part of its period and would
  drag the median down. The same-hour leak comparison (baseline `same_weekday`) reads
  the highest of the same hour 1, 2 and 3 weeks ago and needs all three, so that a
  holiday in one or two of them does not lower the reference: it starts after three
  weeks of history. The weekly prediction is last week's value until
  two weeks and an hour of history add its trend term.
"""


def render_runbooks(groups: list[Group], t: Tunables) -> str:
    out = [RUNBOOK_INTRO, runaway_latency_markdown(t)]
    seen: dict[str, list[Alert]] = {}
    for g in groups:
        for rule in g.rules:
            if isinstance(rule, Alert):
                seen.setdefault(rule.alert, []).append(rule)
    for alertname, rules in seen.items():
        runbook = next((r.runbook for r in rules if r.runbook), None)
        if runbook is None:
            raise ValueError(f"{alertname} has no runbook")
        variants = sorted(
            {", ".join(f"{k}={v}" for k, v in sorted(r.labels.items())) for r in rules}
        )
        out.append(f"\n## {alertname}\n")
        out.append(
            f"Labels: {'; '.join(f'`{v}`' for v in variants)}. "
            f"For: {', '.join(sorted({r.for_ for r in rules}))}.\n"
        )
        out.append(f"**What it means.** {runbook.meaning}\n")
        out.append(f"**How to check.** {runbook.check}\n")
        out.append(f"**What to do.** {runbook.action}\n")
    return "\n".join(out)
