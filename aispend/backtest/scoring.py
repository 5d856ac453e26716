"""Detection scores: alert episodes against labelled incident windows.

Per team, the alert episodes of all scored alerts are merged into one timeline (a
page is a page, whichever alert sent it), then:
- an incident is *caught* when a merged episode overlaps its window; its detection
  delay is `max(0, first overlapping fired_at - window start)`;
- an episode that overlaps no incident window is a *false alarm*;
- recall = caught / incidents; precision = true episodes / episodes;
  false alarms per week are over the scored time range summed over teams.
An episode is [fired_at, resolved_at) (resolved_at is the first evaluation without
the alert); one still firing at the end of the range counts as open until then. The
range is [start, end): an incident window counts when it has time in it (a window that
is one instant, when that instant is in it).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from aispend.backtest.labels import Labels, Window

WEEK = 7 * 86400


@dataclass(frozen=True)
class Episode:
    """One alert, fired and (unless still firing at the end) resolved."""

    alertname: str
    team: str
    fired_at: int
    resolved_at: int | None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Score:
    incidents: int
    caught: int
    recall: float | None
    alert_episodes: int
    false_alarms: int
    precision: float | None
    false_alarms_per_week: float
    delay_median_seconds: float | None
    delay_p90_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Detection:
    """One incident and how it was detected (delay None when missed)."""

    team: str
    window: Window
    delay_seconds: int | None


def merge(episodes: Iterable[Episode], end: int) -> list[tuple[int, int]]:
    """Union of episode intervals, open ones closed at `end`."""
    spans = sorted(
        (e.fired_at, e.resolved_at if e.resolved_at is not None else end) for e in episodes
    )
    out: list[tuple[int, int]] = []
    for start, stop in spans:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def overlaps(span: tuple[int, int], window: Window) -> bool:
    """Whether the half-open span [start, stop) meets the window [start, end]."""
    return span[0] <= window.end and span[1] > window.start


def in_range(window: Window, start: int, end: int) -> bool:
    """Whether the window has time in the range [start, end)."""
    if window.start == window.end:
        return start <= window.start < end
    return window.start < end and window.end > start


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0..1."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def detections(
    episodes: Sequence[Episode], labels: Labels, teams: Iterable[str], start: int, end: int
) -> tuple[list[Detection], int, int]:
    """Per-incident detections, plus (merged episodes, false alarms) counts.

    Only incidents whose window has time in [start, end) are scored.
    """
    found: list[Detection] = []
    total = false = 0
    for team in sorted(teams):
        spans = merge((e for e in episodes if e.team == team), end)
        windows = [w for w in labels.for_team(team) if in_range(w, start, end)]
        total += len(spans)
        false += sum(1 for s in spans if not any(overlaps(s, w) for w in windows))
        for window in windows:
            hits = [s for s in spans if overlaps(s, window)]
            delay = max(0, hits[0][0] - window.start) if hits else None
            found.append(Detection(team, window, delay))
    return found, total, false


def score(
    episodes: Sequence[Episode], labels: Labels, teams: Iterable[str], start: int, end: int
) -> Score:
    team_list = sorted(set(teams))
    found, total, false = detections(episodes, labels, team_list, start, end)
    delays = [d.delay_seconds for d in found if d.delay_seconds is not None]
    weeks = (end - start) / WEEK if end > start else 0.0
    return Score(
        incidents=len(found),
        caught=len(delays),
        recall=round(len(delays) / len(found), 4) if found else None,
        alert_episodes=total,
        false_alarms=false,
        precision=round((total - false) / total, 4) if total else None,
        false_alarms_per_week=round(false / weeks, 4) if weeks else 0.0,
        delay_median_seconds=float(statistics.median(delays)) if delays else None,
        delay_p90_seconds=round(percentile(delays, 0.9), 1) if delays else None,
    )
