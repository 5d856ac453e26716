"""Two common-practice detectors on daily totals, scored by the same scorer as the rules.

- `static`: a UTC day's spend > 150 % of the average day of the previous 30 days.
- `zscore`: a UTC day's spend more than 2.5 standard deviations above the mean of the
  previous 14 days.

Both work as cloud cost tools do: on complete daily totals, so a day is judged when it
ends (`fired_at` is the next midnight UTC) and consecutive flagged days form one
episode, resolved at the end of the first day that is not flagged. Both need at least
`min_days` (7) previous complete days; partial first and last days are left out.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aispend.backtest.history import DAY, History
from aispend.backtest.scoring import Episode

STATIC = "static_150pct_of_30d_avg"
ZSCORE = "zscore_14d_gt_2.5"


@dataclass(frozen=True)
class BaselineParams:
    static_ratio: float = 1.5
    static_days: int = 30
    z_threshold: float = 2.5
    z_days: int = 14
    min_days: int = 7


Rule = Callable[[Sequence[float], float], bool]


def complete_daily_totals(history: History) -> dict[str, list[tuple[int, float]]]:
    """Per team, (UTC midnight, spend) for every day fully covered by the team's data
    (where gaps are unknown, only days with a row for every interval)."""
    spans = history.team_spans()
    rows = history.team_rows(DAY) if history.gaps_are_unknown else {}
    out = {}
    for team, days in history.team_totals(DAY).items():
        start, end = spans[team]
        first_day = -(-start // DAY) * DAY  # first midnight at or after the start
        last_day = (end // DAY) * DAY  # days must end by the data's end
        by_day = dict(days)
        known = rows.get(team, {})
        out[team] = [
            (d, by_day.get(d, 0.0))
            for d in range(first_day, last_day, DAY)
            if not history.gaps_are_unknown or known.get(d, 0) >= DAY // history.step
        ]
    return out


def _episodes(
    name: str, team: str, days: list[tuple[int, float]], window: int, min_days: int, flag: Rule
) -> list[Episode]:
    out: list[Episode] = []
    open_at: int | None = None
    for i, (day, total) in enumerate(days):
        previous = [t for _, t in days[max(0, i - window) : i]]
        if len(previous) < min_days:
            continue
        judged_at = day + DAY
        if flag(previous, total):
            if open_at is None:
                open_at = judged_at
        elif open_at is not None:
            out.append(Episode(name, team, open_at, judged_at))
            open_at = None
    if open_at is not None:
        out.append(Episode(name, team, open_at, None))
    return out


def static_rule(history: History, params: BaselineParams = BaselineParams()) -> list[Episode]:
    def flag(previous: Sequence[float], total: float) -> bool:
        return total > params.static_ratio * statistics.fmean(previous)

    return [
        ep
        for team, days in complete_daily_totals(history).items()
        for ep in _episodes(STATIC, team, days, params.static_days, params.min_days, flag)
    ]


def zscore_rule(history: History, params: BaselineParams = BaselineParams()) -> list[Episode]:
    def flag(previous: Sequence[float], total: float) -> bool:
        sd = statistics.stdev(previous)
        return sd > 0 and (total - statistics.fmean(previous)) / sd > params.z_threshold

    return [
        ep
        for team, days in complete_daily_totals(history).items()
        for ep in _episodes(ZSCORE, team, days, params.z_days, params.min_days, flag)
    ]


BASELINES: dict[str, Callable[[History], list[Episode]]] = {
    STATIC: static_rule,
    ZSCORE: zscore_rule,
}
