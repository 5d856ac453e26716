"""The GPU collector: NVML metrics per GPU, MIG device and process, and GPU cost.

Exposition (labels gpu, UUID, model_name, Hostname mirror dcgm-exporter, plus team
and project from `sources.gpu.attribution`; "unattributed" when nothing matches):

    aispend_gpu_utilization_ratio{gpu="1",UUID="GPU-...",model_name="NVIDIA H100 80GB HBM3",
                                  Hostname="node1",team="search",project="ranking"} 0.87
    aispend_gpu_memory_used_bytes{...} 6.4e+10     aispend_gpu_memory_total_bytes{...} 8.5e+10
    aispend_gpu_power_watts{...} 512.3             aispend_gpu_energy_joules_total{...} 1.2e+07
    aispend_gpu_temperature_celsius{...} 61
    aispend_gpu_process_memory_used_bytes{...,pid="4242",process_name="python3",
                                          pod="ranker-7d9f",namespace="search"} 3.2e+10
    aispend_gpu_mig_memory_used_bytes{...,gpu_instance="1"} 5.0e+09
    aispend_gpu_hourly_cost{...} 4.916
    aispend_gpu_cost_total{...} 0.41           aispend_gpu_idle_cost_total{...} 0.02
    aispend_gpu_nvml_errors_total{call="nvmlDeviceGetPowerUsage"} 3
    aispend_exporter_up{source="gpu"} 1

A process in a Kubernetes pod listed in `sources.gpu.pods` takes that pod's team and
project; other processes take their GPU's. A process whose memory NVML does not
report is exported with 0 bytes. A GPU whose utilisation cannot be read is
never counted idle. No NVML at all, or NVML that cannot count the GPUs any more: only
`aispend_exporter_up{source="gpu"} 0` (and the cost totals accrued so far), with one
log line saying why (again only when the reason changes); NVML is shut down and
initialised again at the next scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from aispend import __version__, metrics
from aispend.config import Prices
from aispend.exporters.gpu.accrual import CostAccrual
from aispend.exporters.gpu.nvml import Nvml, NvmlUnavailable
from aispend.exporters.gpu.sample import GpuSample, read_gpus
from aispend.exporters.gpu.settings import GpuSettings
from aispend.gpu_prices import gpu_hourly_price

log = logging.getLogger(__name__)

SOURCE = "gpu"


@dataclass(frozen=True)
class GpuConfig:
    """What the GPU collector needs from aispend.yaml (defaults when there is none)."""

    settings: GpuSettings = field(default_factory=GpuSettings)
    prices: Prices = field(default_factory=Prices)
    currency: str = "USD"


class GpuCollector:
    """Reads NVML at each scrape; cost totals and NVML error counts live across scrapes."""

    def __init__(
        self,
        get_config: Callable[[], GpuConfig],
        nvml: Nvml | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self._get_config = get_config
        self._nvml = nvml or Nvml()
        self._accrual = CostAccrual(clock)
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._last_success: float | None = None
        self._unavailable_reason: str | None = None
        self._unpriced_logged: set[str] = set()
        # (host, index) -> UUID last seen there, for indexes that attribution names.
        self._slot_uuids: dict[tuple[str, int], str] = {}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        config = self._get_config()
        gpus = self._read(config)
        families = _Families()
        # A GPU missing from this read (NVML down: all of them) keeps its clock for
        # accrual.MAX_GAP_SECONDS: a failed scrape loses no cost, a long outage is not
        # charged as one lump when the GPU is read again.
        present = set() if gpus is None else {gpu.uuid for gpu in gpus}
        self._accrual.missing(present)
        if gpus is not None:
            host = config.settings.host()
            for gpu in gpus:
                self._add_gpu(families, gpu, host, config)
            self._last_success = self._wall_clock()
        for labels, accrued in sorted(self._accrual.totals().items()):
            families.cost.add_metric(list(labels), accrued.cost)
            families.idle_cost.add_metric(list(labels), accrued.idle_cost)
        for call, count in sorted(self._nvml.error_counts().items()):
            families.errors.add_metric([call], count)
        yield from families.all()

        info = metrics.INFO.info()
        info.add_metric([], {metrics.VERSION: __version__, metrics.CURRENCY: config.currency})
        yield info
        up = metrics.EXPORTER_UP.gauge()
        up.add_metric([SOURCE], 0.0 if gpus is None else 1.0)
        yield up
        last = metrics.SOURCE_LAST_SUCCESS.gauge()
        if self._last_success is not None:
            last.add_metric([SOURCE], self._last_success)
        yield last

    def _read(self, config: GpuConfig) -> list[GpuSample] | None:
        try:
            self._nvml.start()
            gpus = read_gpus(self._nvml, config.settings.proc_root)
        except NvmlUnavailable as exc:
            # Shut down what did start: the next scrape initialises NVML again, which a
            # reloaded or upgraded driver needs.
            self._nvml.stop()
            reason = str(exc)
            if reason != self._unavailable_reason:
                log.error(
                    'NVML unavailable, exporting aispend_exporter_up{source="gpu"} 0: %s',
                    reason,
                )
                self._unavailable_reason = reason
            return None
        if self._unavailable_reason is not None:
            log.info("NVML available again")
            self._unavailable_reason = None
        return gpus

    def _add_gpu(self, f: _Families, gpu: GpuSample, host: str, config: GpuConfig) -> None:
        settings = config.settings
        entry = settings.entry_for(host, gpu.index, gpu.uuid)
        if entry is None:
            team, project = metrics.UNATTRIBUTED_TEAM, ""
        else:
            team, project = entry.team, entry.project or ""
            if entry.gpu is not None:
                self._check_slot(host, gpu.index, gpu.uuid, team)
        base = [str(gpu.index), gpu.uuid, gpu.name, host]
        labels = [*base, team, project]
        for family, value in (
            (f.utilization, gpu.utilization),
            (f.memory_used, gpu.memory_used),
            (f.memory_total, gpu.memory_total),
            (f.power, gpu.power_watts),
            (f.temperature, gpu.temperature),
        ):
            if value is not None:
                family.add_metric(labels, float(value))
        if gpu.energy_joules is not None:
            f.energy.add_metric(labels, gpu.energy_joules)
        for mig in gpu.migs:
            if mig.memory_used is not None:
                f.mig_memory.add_metric([*labels, str(mig.gpu_instance)], float(mig.memory_used))
        for proc in gpu.processes:
            # usedGpuMemory NVML_VALUE_NOT_AVAILABLE (None; e.g. no access to other
            # processes' accounting): exported as 0 bytes, so that the process and its
            # pod are still known to be on the GPU (the idle rule reads the series, not
            # its value).
            used = proc.used_memory or 0
            pod = settings.pods.get(proc.workload.pod_uid) if proc.workload.pod_uid else None
            p_team, p_project = (pod.team, pod.project or "") if pod else (team, project)
            pod_name = (pod.pod if pod else "") or proc.workload.pod_uid
            namespace = pod.namespace if pod else ""
            f.process_memory.add_metric(
                [*base, p_team, p_project, str(proc.pid), proc.name, pod_name, namespace],
                float(used),
            )

        price = gpu_hourly_price(gpu.name, config.prices)
        if price is None:
            self._accrual.forget(gpu.uuid)
            if gpu.name not in self._unpriced_logged:
                self._unpriced_logged.add(gpu.name)
                log.warning(
                    "no hourly price for GPU model %r: add it under prices.gpu in aispend.yaml"
                    " to export its cost",
                    gpu.name,
                )
            return
        f.hourly_cost.add_metric(labels, price)
        idle = gpu.utilization is not None and gpu.utilization < settings.idle_threshold
        self._accrual.observe(gpu.uuid, tuple(labels), price, idle)

    def _check_slot(self, host: str, index: int, uuid: str, team: str) -> None:
        """Warn when another GPU shows up at an index that attribution names by `gpu:`."""
        before = self._slot_uuids.get((host, index))
        self._slot_uuids[(host, index)] = uuid
        if before is not None and before != uuid:
            log.warning(
                "sources.gpu.attribution: GPU index %d on %s is now %s (was %s), and its"
                " cost goes to team %r: an index names a slot, not a GPU; attribute by"
                " uuid: to follow a GPU",
                index,
                host,
                uuid,
                before,
                team,
            )

    def describe(self) -> Iterator[Metric]:
        yield from _Families().all()
        yield metrics.INFO.info()
        yield metrics.EXPORTER_UP.gauge()
        yield metrics.SOURCE_LAST_SUCCESS.gauge()

    def close(self) -> None:
        self._nvml.stop()


class _Families:
    """Fresh metric families for one scrape."""

    def __init__(self) -> None:
        self.utilization = metrics.GPU_UTILIZATION.gauge()
        self.memory_used = metrics.GPU_MEMORY_USED.gauge()
        self.memory_total = metrics.GPU_MEMORY_TOTAL.gauge()
        self.power = metrics.GPU_POWER.gauge()
        self.energy = metrics.GPU_ENERGY.counter()
        self.temperature = metrics.GPU_TEMPERATURE.gauge()
        self.process_memory = metrics.GPU_PROCESS_MEMORY.gauge()
        self.mig_memory = metrics.GPU_MIG_MEMORY_USED.gauge()
        self.hourly_cost = metrics.GPU_HOURLY_COST.gauge()
        self.cost = metrics.GPU_COST.counter()
        self.idle_cost = metrics.GPU_IDLE_COST.counter()
        self.errors = metrics.GPU_NVML_ERRORS.counter()

    def all(self) -> Iterator[Metric]:
        families: list[Metric] = [
            self.utilization,
            self.memory_used,
            self.memory_total,
            self.power,
            self.energy,
            self.temperature,
            self.process_memory,
            self.mig_memory,
            self.hourly_cost,
            self.cost,
            self.idle_cost,
            self.errors,
        ]
        yield from families
