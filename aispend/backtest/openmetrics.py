"""Turn a spend history into the series aispend's rules read, as OpenMetrics text.

Each workload's cost per interval becomes the monotonic counter
`aispend_llm_cost_total{team, project, agent, model, source}` sampled every `scrape`
seconds (a row's cost accrues evenly over its interval, as a real exporter's counter
would grow). Next to it, at the same timestamps, the series the rules join with:
`aispend_budget{team, period}` and `aispend_team_info{team, criticality}`, and
`aispend_info{currency}`. The text ends with `# EOF`, ready for
`promtool tsdb create-blocks-from openmetrics`.

Budgets come from an aispend.yaml when one is given; a team without one gets a budget
derived from its own history (see `derive_budgets`), so budget-based rules have
something to compare with.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from aispend import __version__, metrics
from aispend.backtest.history import DAY, History, SeriesKey
from aispend.tsdb import label_text

DEFAULT_SCRAPE = 60
DEFAULT_HEADROOM = 1.5
DAYS_PER_MONTH = 30.44


@dataclass(frozen=True)
class BudgetSeries:
    team: str
    period: str
    amount: float
    project: str = ""
    agent: str = ""

    def labels(self) -> dict[str, str]:
        pairs = {
            metrics.TEAM: self.team,
            metrics.PROJECT: self.project,
            metrics.AGENT: self.agent,
            metrics.PERIOD: self.period,
        }
        return {k: v for k, v in pairs.items() if v}


@dataclass(frozen=True)
class TeamMeta:
    team: str
    criticality: str = "standard"
    cost_center: str = ""
    owner: str = ""

    def labels(self) -> dict[str, str]:
        pairs = {
            metrics.TEAM: self.team,
            metrics.COST_CENTER: self.cost_center,
            metrics.OWNER: self.owner,
            metrics.CRITICALITY: self.criticality,
        }
        return {k: v for k, v in pairs.items() if v}


def derive_budgets(history: History, headroom: float = DEFAULT_HEADROOM) -> list[BudgetSeries]:
    """Budgets for teams that have none: `headroom` x their typical spend.

    Month: headroom x median UTC-day total x 30.44. Day: headroom x the 95th percentile
    of UTC-day totals (a busy normal day stays under it). Medians and percentiles are
    robust to the incidents the history may contain.
    """
    out = []
    for team, days in history.team_totals(DAY).items():
        totals = sorted(cost for _, cost in days)
        median = statistics.median(totals)
        p95 = totals[min(len(totals) - 1, int(0.95 * len(totals)))]
        month = round(headroom * median * DAYS_PER_MONTH, 4)
        day = round(headroom * p95, 4)
        if month > 0:
            out.append(BudgetSeries(team, "month", month))
        if day > 0:
            out.append(BudgetSeries(team, "day", day))
    return out


def _scrape_times(start: int, end: int, scrape: int) -> range:
    first = start - start % scrape
    return range(first, end + 1, scrape)


def _series_times(times: range, points: list[tuple[int, float]], step: int) -> range:
    """The scrape times of `times` in a series' (or a run's) own span: from the scrape
    at or before its first interval (so rate() sees the first interval) to the first at
    or after its last interval's end. A series that starts late is a new series, not one
    that spent nothing before (which would make its first hour look like a runaway)."""
    scrape = times.step
    first = points[0][0] - (points[0][0] - times.start) % scrape
    last = points[-1][0] + step
    last += -(last - times.start) % scrape
    return range(max(times.start, first), min(times.stop, last + 1), scrape)


def counter_samples(
    points: list[tuple[int, float]], step: int, times: Iterable[int]
) -> Iterator[tuple[int, float]]:
    """Cumulative cost at each time, each interval's cost spread evenly over it."""
    index = 0
    done = 0.0  # cost of the intervals that ended before the current one
    n = len(points)
    for t in times:
        while index < n and points[index][0] + step <= t:
            done += points[index][1]
            index += 1
        value = done
        if index < n and points[index][0] < t:
            value += points[index][1] * (t - points[index][0]) / step
        yield t, value


class Sink(Protocol):
    """Where OpenMetrics text goes: `family` starts a metric family, `sample` adds one."""

    def family(self, header: str) -> None: ...

    def sample(self, ts: int, line: str) -> None: ...

    def close(self) -> None: ...


class TextSink:
    """The whole exposition into one text stream."""

    def __init__(self, out: TextIO):
        self.out = out

    def family(self, header: str) -> None:
        self.out.write(header)

    def sample(self, ts: int, line: str) -> None:
        self.out.write(line)

    def close(self) -> None:
        self.out.write("# EOF\n")


class SplitSink:
    """One OpenMetrics file per `window` seconds of sample time (aligned to the epoch).

    promtool's `create-blocks-from openmetrics` re-reads its whole input for every
    block it writes; with one file per block window, each file is read once per block.
    Each file repeats the family header before the family's first sample in it.
    """

    def __init__(self, directory: Path, stem: str, window: int):
        self.directory = directory
        self.stem = stem
        self.window = window
        self.paths: list[Path] = []
        self._files: dict[int, TextIO] = {}
        self._header = ""
        self._headed: dict[int, str] = {}

    def family(self, header: str) -> None:
        self._header = header

    def sample(self, ts: int, line: str) -> None:
        index = ts // self.window
        handle = self._files.get(index)
        if handle is None:
            path = self.directory / f"{self.stem}-{index}.om"
            self.paths.append(path)
            handle = self._files[index] = path.open("w", encoding="utf-8")
        if self._headed.get(index) != self._header:
            handle.write(self._header)
            self._headed[index] = self._header
        handle.write(line)

    def close(self) -> None:
        for handle in self._files.values():
            handle.write("# EOF\n")
            handle.close()
        self._files.clear()


def write_openmetrics(
    out: Sink,
    history: History,
    budgets: list[BudgetSeries],
    teams: list[TeamMeta],
    scrape: int = DEFAULT_SCRAPE,
    currency: str = "USD",
) -> int:
    """Write the whole exposition and close the sink; returns the samples written."""
    times = _scrape_times(history.start, history.end, scrape)
    count = 0
    cost = metrics.LLM_COST
    out.family(f"# HELP {cost.family_name} {cost.full_help}\n# TYPE {cost.family_name} counter\n")
    for key in sorted(history.series):
        label = label_text(key.labels())
        points = history.series[key]
        own_times = itertools.chain.from_iterable(
            _series_times(times, run, history.step) for run in history.runs(points)
        )
        for t, v in counter_samples(points, history.step, own_times):
            out.sample(t, f"{cost.name}{label} {_num(v)} {t}\n")
            count += 1
    gauges: list[tuple[metrics.MetricSpec, list[tuple[dict[str, str], float]]]] = [
        (metrics.BUDGET, [(b.labels(), b.amount) for b in budgets]),
        (metrics.TEAM_INFO, [(m.labels(), 1.0) for m in teams]),
        (
            metrics.INFO,
            [({metrics.VERSION: __version__, metrics.CURRENCY: currency}, 1.0)],
        ),
    ]
    for spec, series in gauges:
        if not series:
            continue
        # Info metrics are written as gauges: same samples, simpler for the parser.
        out.family(f"# HELP {spec.name} {spec.full_help}\n# TYPE {spec.name} gauge\n")
        for labels, value in series:
            label = label_text(labels)
            text = _num(value)
            for t in times:
                out.sample(t, f"{spec.name}{label} {text} {t}\n")
            count += len(times)
    out.close()
    return count


def _num(value: float) -> str:
    return repr(round(value, 9))


def team_metas(history: History, configured: dict[str, TeamMeta]) -> list[TeamMeta]:
    """Configured metadata for each team in the history, `standard` for the rest."""
    return [configured.get(team, TeamMeta(team)) for team in history.teams]


def merge_budgets(
    history: History, configured: list[BudgetSeries], headroom: float
) -> list[BudgetSeries]:
    """Configured budgets, plus derived ones for (team, period) pairs without one."""
    have = {(b.team, b.period) for b in configured if not b.project and not b.agent}
    derived = [b for b in derive_budgets(history, headroom) if (b.team, b.period) not in have]
    return [*configured, *derived]


__all__ = [
    "BudgetSeries",
    "SeriesKey",
    "TeamMeta",
    "counter_samples",
    "derive_budgets",
    "merge_budgets",
    "team_metas",
    "write_openmetrics",
]
