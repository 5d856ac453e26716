"""Billing collector: serves cached bill data; a background refresher re-reads sources.

Scrapes never call Azure or read files: they serve the last good `Snapshot` of each
source. A `CachedSource` refreshes when its interval has passed (after a failure,
sooner: `FAILURE_RETRY_SECONDS`), and a failed refresh keeps the previous snapshot,
with its own data timestamp, so stale data shows as stale. Exposition:

    aispend_cloud_cost_month_to_date{provider="Microsoft",account="prod",
        service_category="Compute",service="Virtual Machines",team="search",
        project="",environment=""} 1234.5
    aispend_cloud_cost_last_day{...} 41.2
    aispend_cloud_resource_cost_month_to_date{...,resource="..."} 12.0   (if configured)
    aispend_cloud_cost_data_timestamp_seconds{source="azure_cost"} 1.7256e9  (none: no cost)
    aispend_source_last_success_timestamp_seconds{source="azure_cost"} 1.7257e9
    aispend_source_cache_age_seconds{source="azure_cost"} 312
    aispend_source_throttled_total{source="azure_cost"} 2
    aispend_exporter_up{source="azure_cost"} 1
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import Metric

from aispend import metrics
from aispend.exporters.billing.model import CostFigures, CostLabels, Snapshot

log = logging.getLogger(__name__)

FAILURE_RETRY_SECONDS = 900.0


class BillingSource(Protocol):
    name: str
    refresh_interval: float
    throttled: int

    def fetch(self) -> Snapshot: ...


class CachedSource:
    """One source, its last good snapshot and the outcome of its last refresh."""

    def __init__(self, source: BillingSource, clock: Callable[[], float] = time.time):
        self.source = source
        self._clock = clock
        self._lock = threading.Lock()
        self.snapshot: Snapshot | None = None
        self.last_success: float | None = None
        self.last_attempt: float | None = None
        self.ok = False
        self.error: str | None = None
        self.refreshes = 0

    @property
    def name(self) -> str:
        return self.source.name

    def next_due(self) -> float:
        if self.last_attempt is None:
            return self._clock()
        interval = self.source.refresh_interval
        if not self.ok:
            interval = min(interval, FAILURE_RETRY_SECONDS)
        return self.last_attempt + interval

    def due(self) -> bool:
        return self.last_attempt is None or self._clock() >= self.next_due()

    def refresh(self) -> bool:
        """Fetch now; on any error keep the previous snapshot and return False."""
        started = self._clock()
        try:
            snapshot = self.source.fetch()
        except Exception as exc:
            error = str(exc) or f"unexpected {type(exc).__name__} without a message"
            with self._lock:
                self.last_attempt = started
                self.ok = False
                self.error = error
            kept = "keeping the previous data" if self.snapshot else "no data yet"
            log.error("%s refresh failed (%s): %s", self.name, kept, error)
            return False
        with self._lock:
            self.snapshot = snapshot
            self.last_attempt = started
            self.last_success = self._clock()
            self.ok = True
            self.error = None
            self.refreshes += 1
        reached = snapshot.data_timestamp
        log.info(
            "%s refreshed: %d series, %s",
            self.name,
            len(snapshot.costs),
            "no cost rows"
            if reached is None
            else time.strftime("data up to %Y-%m-%dT%H:%M:%SZ", time.gmtime(reached)),
        )
        return True

    def refresh_if_due(self) -> bool:
        return self.refresh() if self.due() else False


class Refresher:
    """Background thread: refreshes each source when it is due."""

    def __init__(self, sources: Sequence[CachedSource], clock: Callable[[], float] = time.time):
        self.sources = list(sources)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        for source in self.sources:
            source.refresh_if_due()

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.run_once()
                wait = min(s.next_due() for s in self.sources) - self._clock()
                self._stop.wait(max(1.0, wait))

        self._thread = threading.Thread(target=loop, name="billing-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class BillingCollector:
    """Cost families are built once per set of snapshots and reused by later scrapes
    (they only change on a refresh); the freshness gauges are built per scrape."""

    def __init__(self, sources: Sequence[CachedSource], clock: Callable[[], float] = time.time):
        self.sources = list(sources)
        self._clock = clock
        # The snapshots the families were built from: kept (not their ids, which a new
        # snapshot may reuse once an old one is freed) and compared by identity.
        self._cost_cache: tuple[tuple[Snapshot | None, ...], tuple[Metric, ...]] | None = None

    def _cost_families(self) -> tuple[Metric, ...]:
        snapshots = tuple(c.snapshot for c in self.sources)
        cached = self._cost_cache
        if cached is not None and all(a is b for a, b in zip(cached[0], snapshots, strict=True)):
            return cached[1]
        mtd = metrics.CLOUD_COST_MONTH_TO_DATE.gauge()
        last = metrics.CLOUD_COST_LAST_DAY.gauge()
        resource = metrics.CLOUD_RESOURCE_COST_MONTH_TO_DATE.gauge()
        seen: dict[CostLabels, str] = {}
        seen_resources: set[tuple[str, ...]] = set()
        for cached_source, snapshot in zip(self.sources, snapshots, strict=True):
            if snapshot is None:
                continue
            for labels, figures in snapshot.costs.items():
                if not self._duplicate(seen, labels, cached_source.name):
                    _add(mtd, last, labels, figures)
            for r in snapshot.resources:
                rkey = (r.provider, r.account, r.service, r.team, r.resource)
                if rkey not in seen_resources:
                    seen_resources.add(rkey)
                    resource.add_metric(list(rkey), r.month_to_date)
        families = (mtd, last, resource)
        self._cost_cache = (snapshots, families)
        return families

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        yield from self._cost_families()
        data_ts = metrics.CLOUD_COST_DATA_TIMESTAMP.gauge()
        success = metrics.SOURCE_LAST_SUCCESS.gauge()
        age = metrics.SOURCE_CACHE_AGE.gauge()
        throttled = metrics.SOURCE_THROTTLED.counter()
        up = metrics.EXPORTER_UP.gauge()
        for cached in self.sources:
            name = cached.name
            snapshot = cached.snapshot
            up.add_metric([name], 1.0 if cached.ok else 0.0)
            throttled.add_metric([name], float(cached.source.throttled))
            if cached.last_success is not None:
                success.add_metric([name], cached.last_success)
            if snapshot is None:
                continue
            if snapshot.data_timestamp is not None:  # None: read, and no cost to date
                data_ts.add_metric([name], snapshot.data_timestamp)
            age.add_metric([name], max(0.0, now - snapshot.fetched_at))
        yield from (data_ts, success, age, throttled, up)

    @staticmethod
    def _duplicate(seen: dict[CostLabels, str], labels: CostLabels, name: str) -> bool:
        first = seen.setdefault(labels, name)
        if first != name:
            log.warning("%s and %s both report %s; serving %s's", first, name, labels, first)
            return True
        return False

    def describe(self) -> Iterator[Metric]:
        yield metrics.CLOUD_COST_MONTH_TO_DATE.gauge()
        yield metrics.CLOUD_COST_LAST_DAY.gauge()
        yield metrics.CLOUD_RESOURCE_COST_MONTH_TO_DATE.gauge()
        yield metrics.CLOUD_COST_DATA_TIMESTAMP.gauge()
        yield metrics.SOURCE_LAST_SUCCESS.gauge()
        yield metrics.SOURCE_CACHE_AGE.gauge()
        yield metrics.SOURCE_THROTTLED.counter()
        yield metrics.EXPORTER_UP.gauge()


def _add(mtd: Metric, last: Metric, labels: CostLabels, figures: CostFigures) -> None:
    values = list(labels)
    mtd.add_metric(values, figures.month_to_date)  # type: ignore[attr-defined]
    last.add_metric(values, figures.last_day)  # type: ignore[attr-defined]
