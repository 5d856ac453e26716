"""GPU cost accrued between scrapes: hourly price x elapsed time, and the idle share.

Each scrape observes every GPU with its current hourly price and whether it is idle;
the time since that GPU's previous observation is charged at the current price, and
to the idle total as well when the GPU is idle now (the sample at the end of an
interval classifies the interval). The first observation of a GPU starts its clock
and charges nothing, so a restart loses at most one scrape interval and never
double counts. Totals are kept per label set and only grow, so they are Prometheus
counters; the clock is injected (monotonic by default) so tests simulate time.

A GPU missing from a read (one failed NVML call, or NVML down) keeps its clock: when
it is seen again within MAX_GAP_SECONDS of the first read that missed it, the whole
time since it was last seen is charged, so one failed scrape loses nothing. A GPU
missing for longer (a driver outage, a GPU lost or removed) is forgotten: if it comes
back its clock starts again, without one lump charge for the time it was away.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0

MAX_GAP_SECONDS = 300.0
"""How long a GPU may be missing from reads and still be charged for the gap. Five
minutes covers a few failed scrapes at the usual 15-60 s intervals (and one missed
scrape at 5 minutes), and is short enough that a driver reload or a GPU off the bus
is not billed as one lump whose idle share is guessed from a single sample."""

Labels = tuple[str, ...]


@dataclass
class Accrued:
    cost: float = 0.0
    idle_cost: float = 0.0


@dataclass
class _GpuClock:
    last_seen: float
    missing_since: float | None = None  # the first read that missed the GPU


class CostAccrual:
    """Per-GPU clocks (by UUID) and per-label-set cost totals."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_gap: float = MAX_GAP_SECONDS
    ):
        self._clock = clock
        self._max_gap = max_gap
        self._gpus: dict[str, _GpuClock] = {}
        self._totals: dict[Labels, Accrued] = {}
        self._lock = threading.Lock()

    def observe(self, uuid: str, labels: Labels, hourly_price: float, idle: bool) -> None:
        now = self._clock()
        with self._lock:
            totals = self._totals.setdefault(labels, Accrued())
            previous = self._gpus.get(uuid)
            self._gpus[uuid] = _GpuClock(now)
            if previous is None or self._gone_too_long(previous, now):
                return
            amount = hourly_price * max(0.0, now - previous.last_seen) / SECONDS_PER_HOUR
            totals.cost += amount
            if idle:
                totals.idle_cost += amount

    def forget(self, uuid: str) -> None:
        """Stop the clock of a GPU that is unpriced (its totals stay)."""
        with self._lock:
            self._gpus.pop(uuid, None)

    def missing(self, present: set[str]) -> None:
        """Mark the GPUs not in `present` (this read's GPUs; empty when NVML is down) as
        missing, and forget those missing for longer than the gap."""
        now = self._clock()
        with self._lock:
            for uuid, gpu in list(self._gpus.items()):
                if uuid in present:
                    continue
                if gpu.missing_since is None:
                    gpu.missing_since = now
                elif self._gone_too_long(gpu, now):
                    del self._gpus[uuid]

    def tracked(self) -> set[str]:
        """The UUIDs whose clocks run (seen, or missing within the gap)."""
        with self._lock:
            return set(self._gpus)

    def totals(self) -> dict[Labels, Accrued]:
        with self._lock:
            return {k: Accrued(v.cost, v.idle_cost) for k, v in self._totals.items()}

    def _gone_too_long(self, gpu: _GpuClock, now: float) -> bool:
        return gpu.missing_since is not None and now - gpu.missing_since > self._max_gap
