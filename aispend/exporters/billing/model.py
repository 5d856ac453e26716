"""Bill data inside the billing exporter: daily costs in, a served snapshot out.

Both sources (Azure Cost Management, FOCUS files) produce `DailyCost` rows: cost per
label set per UTC day. `build_snapshot` turns them into what a scrape serves:

- month to date: the sum over the month of the newest day in the data;
- last day: the newest day that has fully ended by the data timestamp;
- data timestamp: the end of the newest charge period covered (never later than the
  time the data was read); FOCUS counts only periods of a day or less, since a month's
  fee ends with the month however far the export reaches. None when the source read
  has no cost rows (a scope without cost): there is no bill data to be old, so no
  timestamp is exported (it was 0, and AISpendBillingDataStale fired).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from aispend import metrics

DAY = dt.timedelta(days=1)


class CostLabels(NamedTuple):
    """Label values in the order of `metrics.CLOUD_COST_LABELS`."""

    provider: str
    account: str
    service_category: str
    service: str
    team: str
    project: str
    environment: str


assert CostLabels._fields == metrics.CLOUD_COST_LABELS


@dataclass(frozen=True)
class DailyCost:
    labels: CostLabels
    day: dt.date
    cost: float


@dataclass(frozen=True)
class CostFigures:
    month_to_date: float
    last_day: float


@dataclass(frozen=True)
class ResourceCost:
    """Month-to-date cost of one resource (or of `other`, the rest past the cap)."""

    provider: str
    account: str
    service: str
    team: str
    resource: str
    month_to_date: float


@dataclass(frozen=True)
class Snapshot:
    """One successful read of a source, served to scrapes until the next one."""

    costs: dict[CostLabels, CostFigures]
    data_timestamp: float | None  # None: no cost rows
    fetched_at: float
    last_day: dt.date | None
    month: tuple[int, int] | None
    resources: tuple[ResourceCost, ...] = field(default=())


def utc_midnight(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def data_timestamp(newest_day: dt.date, newest_period_end: float | None, read_at: float) -> float:
    """End of the newest charge period covered (the end of the newest day when the data
    does not say), never later than the time the data was read."""
    end = newest_period_end if newest_period_end is not None else utc_midnight(newest_day) + 86400
    return min(end, read_at)


def is_complete(day: dt.date, data_ts: float) -> bool:
    """The day has fully ended by the data timestamp (its bill is whole)."""
    return utc_midnight(day) + 86400 <= data_ts


def served_month(newest_day: dt.date, data_ts: float) -> tuple[int, int]:
    """The month a snapshot's month to date is of by default: the month the data has
    reached, that of the day that holds its end (`data_ts`). A day booked later (a row of
    this month billed next month, booked on that period's first day) waits for the data
    to reach it; the newest booked day's month was then an empty month."""
    reached = min(dt.datetime.fromtimestamp(max(data_ts - 1, 0), dt.UTC).date(), newest_day)
    return reached.year, reached.month


def build_snapshot(
    rows: Iterable[DailyCost],
    newest_period_end: float | None,
    fetched_at: float,
    resources: tuple[ResourceCost, ...] = (),
    month: tuple[int, int] | None = None,
) -> Snapshot:
    """Month-to-date and last-complete-day figures per label set. Month to date is of
    `month` (year, month), by default `served_month`."""
    by_day: dict[dt.date, dict[CostLabels, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        by_day[row.day][row.labels] += row.cost
    if not by_day:
        return Snapshot({}, None, fetched_at, None, None, resources)
    newest = max(by_day)
    data_ts = data_timestamp(newest, newest_period_end, fetched_at)
    complete = [d for d in by_day if is_complete(d, data_ts)]
    last_day = max(complete) if complete else None
    month = month or served_month(newest, data_ts)
    mtd: dict[CostLabels, float] = defaultdict(float)
    for day, costs in by_day.items():
        if (day.year, day.month) == month:
            for labels, cost in costs.items():
                mtd[labels] += cost
    last = by_day[last_day] if last_day is not None else {}
    keys = sorted(set(mtd) | set(last))
    figures = {k: CostFigures(mtd.get(k, 0.0), last.get(k, 0.0)) for k in keys}
    return Snapshot(figures, data_ts, fetched_at, last_day, month, resources)
