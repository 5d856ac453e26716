"""Recording rules for anomalies: baselines, seasonal predictions, z-scores.

For each level (team+model, team+agent) three baselines, best first:

- `1w`: weekly seasonality (GitLab's method): the hourly spend rate at the same time of
  day 1, 2 and 3 weeks ago, each plus the trend (this week's mean minus that week's),
  median of those that exist; stddev of the hourly rate over the last week.
  Exists once the series has a week of history.
- `1d`: daily seasonality, the same with 1, 2 and 3 days; needs a day of history.
- `6h`: the mean and stddev of the 5m rate over 6 hours (cold start).

Means and stddevs end an hour ago (HOLD_OUT), so a new series has a baseline after 1h.

Inputs: the week- and day-long means, stddevs and trends read the recorded hourly rate
(`team_model:` / `team_agent:aispend_cost:rate1h`, recorded every evaluation of
aispend-spend) at whole hours, not the raw counters: subqueries over weeks of the raw
counters took over the group's 60 s interval at 16,000 gateway cost series
(docs/benchmarks.md, "Rules at scale"). The recorded rate at a whole hour is the same
expression as the raw one there. The same-time 1h windows and the 6h baseline read the
raw counters (short windows). Recorded history starts when Prometheus loads the rules,
so a baseline also needs the recorded rate to reach back over its period (else its
stddev would cover a few hours: after an install over raw history it is not used until
then) and a trend over its window (`recorded_since`, which tolerates gaps of under a
day); `aispend rules backfill` records past hours.

Edge of history: a past window counts only where the series has a sample in the 5
minutes before the window starts (`covered`), since a window cut by the start of
history holds only part of its period and biases the median. The same-time window k
periods ago (1h, needs k periods + 30m of history) decides whether term k exists; its
trend (the mean of the period before it, needs (k + 1) periods + 1h) is added only
where that is whole too, else the term is the plain seasonal value. So with 8 days of
history the 1w prediction is last week's value; after 2 weeks and 1h it gains the trend
(after an install over raw history, once the recorded rate covers those 2 weeks too).

The `baseline` label of the prediction, stddev, mean and z-score says which one was
used. The z-score is (5m rate - prediction) / max(stddev, min_stddev_ratio x
prediction). The "same time" windows are centred on now (offset by 30m less than the
period), so the 1h window looks 30m either side of the same moment.
"""

from __future__ import annotations

from collections.abc import Sequence

from aispend import metrics as m
from aispend.rules.model import Group, Recording
from aispend.rules.promql import (
    covered,
    duration,
    num,
    recorded_since,
    seconds,
    set_label,
    spend,
)
from aispend.rules.tunables import Tunables

LEVELS: dict[str, tuple[str, ...]] = {
    "team_model": (m.TEAM, m.MODEL),
    "team_agent": (m.TEAM, m.AGENT),
}
BASELINES = ("1w", "1d", "6h")
RUNAWAY_LEVEL = "team_agent"
SHIFTS = (1, 2, 3)
"""The seasonal terms: the same time 1, 2 and 3 periods ago."""
HOLD_OUT = "1h"
"""Baseline means and stddevs end 1h ago, so an ongoing incident does not raise its own
baseline (and resolve itself) within its first hour."""


RECORDED_REACH = (max(SHIFTS) + 1) * seconds("1w") + 3600
"""How far back the baselines need the recorded hourly rate (`<level>:aispend_cost:rate1h`):
the weekly trend's oldest week starts 4 weeks ago, and `recorded_since` needs a sample at
a whole hour before that (the last whole hour before it is within this reach)."""


def name(level: str, suffix: str) -> str:
    return f"{level}:aispend_cost:{suffix}"


def _seasonal(level: str, by: Sequence[str], period: str) -> list[Recording]:
    on = ", ".join(by)
    hourly = name(level, "rate1h")
    avg = name(level, f"rate1h:avg_over_time_{period}")
    terms = []
    for k in SHIFTS:
        shift = k * seconds(period)
        past = spend("rate", "1h", by, offset=duration(shift - 1800))
        past_avg = f"avg_over_time({hourly}[{period}:1h] offset {duration(shift)})"
        # Each window counts only where the history covers all of it (see the docstring).
        trend = (
            f"({avg} - on({on}) {past_avg})\n"
            f"      and on({on}) {covered(by, duration(shift + seconds(period) + 3600))}\n"
            f"      and on({on}) {recorded_since(hourly, shift + seconds(period))}"
        )
        term = (
            f"(({past} + on({on}) ({trend}))\n    or on({on}) {past})\n"
            f"    and on({on}) {covered(by, duration(shift + 1800))}"
        )
        terms.append(set_label(term, "offset", duration(shift)))
    return [
        Recording(avg, f"avg_over_time({hourly}[{period}:1h] offset {HOLD_OUT})"),
        Recording(
            name(level, f"rate1h:stddev_over_time_{period}"),
            f"stddev_over_time({hourly}[{period}:1h] offset {HOLD_OUT})",
        ),
        Recording(
            name(level, f"rate1h:prediction_{period}"),
            f"clamp_min(quantile by ({on}) (0.5,\n  " + "\n  or ".join(terms) + "\n), 0)\n"
            f"and on({on}) {recorded_since(hourly, seconds(period))}",
        ),
    ]


def level_rules(level: str, by: Sequence[str], t: Tunables) -> list[Recording]:
    on = ", ".join(by)
    rate5m = spend("rate", "5m", by)
    rules = _seasonal(level, by, "1w") + _seasonal(level, by, "1d")
    rules += [
        Recording(
            name(level, "rate5m:avg_over_time_6h"),
            f"avg_over_time(({rate5m})[6h:5m] offset {HOLD_OUT})",
        ),
        Recording(
            name(level, "rate5m:stddev_over_time_6h"),
            f"stddev_over_time(({rate5m})[6h:5m] offset {HOLD_OUT})",
        ),
    ]
    sources = {
        "prediction": {
            "1w": name(level, "rate1h:prediction_1w"),
            "1d": name(level, "rate1h:prediction_1d"),
            "6h": name(level, "rate5m:avg_over_time_6h"),
        },
        "stddev": {
            "1w": name(level, "rate1h:stddev_over_time_1w"),
            "1d": name(level, "rate1h:stddev_over_time_1d"),
            "6h": name(level, "rate5m:stddev_over_time_6h"),
        },
        "avg": {
            "1w": name(level, "rate1h:avg_over_time_1w"),
            "1d": name(level, "rate1h:avg_over_time_1d"),
            "6h": name(level, "rate5m:avg_over_time_6h"),
        },
    }
    prediction = name(level, "rate1h:prediction")
    chosen = f"\nor on({on}) ".join(
        set_label(sources["prediction"][b], m.BASELINE, b) for b in BASELINES
    )
    rules.append(Recording(prediction, chosen))
    for kind in ("stddev", "avg"):
        union = "\n or ".join(set_label(sources[kind][b], m.BASELINE, b) for b in BASELINES)
        rules.append(
            Recording(
                name(level, f"rate1h:{kind}"),
                f"({union})\nand on({on}, {m.BASELINE}) {prediction}",
            )
        )
    floor = floored_stddev(name(level, "rate1h:stddev"), prediction, t)

    def zscore(record: str, rate: str) -> Recording:
        return Recording(
            record,
            f"({rate} - on({on}) group_right() {prediction})\n  / on({on}, {m.BASELINE}) {floor}",
        )

    rules.append(zscore(name(level, "zscore"), name(level, "rate5m")))
    if level == RUNAWAY_LEVEL:
        # RunawaySpend's fast signal: the same z-score on a short-window rate.
        fast_rate = name(level, f"rate{t.runaway_rate_window}")
        rules.append(Recording(fast_rate, spend("rate", t.runaway_rate_window, by)))
        rules.append(zscore(name(level, f"zscore_rate{t.runaway_rate_window}"), fast_rate))
    return rules


def floored_stddev(stddev: str, prediction: str, t: Tunables) -> str:
    """The z-score's denominator: the baseline's stddev, at least min_stddev_ratio x the
    prediction (selectors of one level's `rate1h:stddev` and `rate1h:prediction`)."""
    return (
        f"max without (floor) ({set_label(stddev, 'floor', 'stddev')}"
        f" or {set_label(f'{prediction} * {num(t.min_stddev_ratio)}', 'floor', 'prediction')})"
    )


def groups(t: Tunables) -> list[Group]:
    baselines: list[Recording] = []
    for level, by in LEVELS.items():
        baselines += level_rules(level, by, t)
    # Evaluated every 15s, in order: the fast rate before the z-score that reads it.
    fast = f":rate{t.runaway_rate_window}"
    live = [r for r in baselines if ":zscore" in r.record or r.record.endswith(fast)]
    rest = [r for r in baselines if r not in live]
    zscores = live
    return [
        Group("aispend-baselines", tuple(rest), interval="1m"),
        Group("aispend-anomaly", tuple(zscores)),
    ]
