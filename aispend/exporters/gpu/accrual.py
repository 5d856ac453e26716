"""GPU cost accrued between scrapes: hourly price x elapsed time, and the idle share.

Each scrape observes every GPU with its current hourly price and whether it is idle;
the time since that GPU's previous observation is charged at the current price, and
to the idle total as well when the GPU is idle now (the sample at the end of an
interval classifies the interval). The first observation of a GPU starts its clock
and charges nothing, so a restart loses at most one scrape interval and never
double counts. Totals are kept per label set and only grow, so they are Prometheus
counters; the clock is injected (monotonic by default) so tests simulate time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0

Labels = tuple[str, ...]


@dataclass
class Accrued:
    cost: float = 0.0
    idle_cost: float = 0.0


class CostAccrual:
    """Per-GPU clocks (by UUID) and per-label-set cost totals."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._last_seen: dict[str, float] = {}
        self._totals: dict[Labels, Accrued] = {}
        self._lock = threading.Lock()

    def observe(self, uuid: str, labels: Labels, hourly_price: float, idle: bool) -> None:
        now = self._clock()
        with self._lock:
            totals = self._totals.setdefault(labels, Accrued())
            last = self._last_seen.get(uuid)
            self._last_seen[uuid] = now
            if last is None:
                return
            amount = hourly_price * max(0.0, now - last) / SECONDS_PER_HOUR
            totals.cost += amount
            if idle:
                totals.idle_cost += amount

    def forget(self, uuid: str) -> None:
        """Stop the clock of a GPU that is unpriced or gone (its totals stay)."""
        with self._lock:
            self._last_seen.pop(uuid, None)

    def forget_others(self, present: set[str]) -> None:
        """Stop the clocks of GPUs not in `present` (gone from a complete read): one that
        comes back is charged from its return, not for the time it was away."""
        with self._lock:
            for uuid in set(self._last_seen) - present:
                del self._last_seen[uuid]

    def totals(self) -> dict[Labels, Accrued]:
        with self._lock:
            return {k: Accrued(v.cost, v.idle_cost) for k, v in self._totals.items()}
