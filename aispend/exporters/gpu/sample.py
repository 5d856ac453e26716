"""One NVML read of every GPU, its MIG devices and its processes, into plain dataclasses.

Every field is read with its own NVML call; a call that fails leaves that field None
(counted by `Nvml.errors`) and the rest of the device is still read. A device whose
handle, name or UUID cannot be read is skipped whole: without them it has no labels.
Units are converted here: utilisation % -> ratio, mW -> W, mJ -> J.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml

from aispend.exporters.gpu.cgroup import Workload, workload_of
from aispend.exporters.gpu.nvml import Nvml

_NOT_SUPPORTED = (pynvml.NVML_ERROR_NOT_SUPPORTED,)
_EMPTY_SLOT = (pynvml.NVML_ERROR_NOT_FOUND, pynvml.NVML_ERROR_INVALID_ARGUMENT)
_EXITED = (pynvml.NVML_ERROR_NOT_FOUND,)


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    used_memory: int | None
    name: str
    workload: Workload


@dataclass(frozen=True)
class MigSample:
    gpu_instance: int
    memory_used: int | None


@dataclass(frozen=True)
class GpuSample:
    index: int
    uuid: str
    name: str
    utilization: float | None = None
    memory_used: int | None = None
    memory_total: int | None = None
    power_watts: float | None = None
    energy_joules: float | None = None
    temperature: float | None = None
    processes: list[ProcessSample] = field(default_factory=list)
    migs: list[MigSample] = field(default_factory=list)


def read_gpus(nvml: Nvml, proc_root: str | Path = "/proc") -> list[GpuSample]:
    """Every readable GPU; raises NvmlUnavailable when even the device count cannot be read."""
    count = nvml.device_count()
    gpus = []
    for index in range(count):
        gpu = _read_gpu(nvml, index, proc_root)
        if gpu is not None:
            gpus.append(gpu)
    return gpus


def _read_gpu(nvml: Nvml, index: int, proc_root: str | Path) -> GpuSample | None:
    handle = nvml.call("nvmlDeviceGetHandleByIndex", index)
    if handle is None:
        return None
    name = nvml.call("nvmlDeviceGetName", handle)
    uuid = nvml.call("nvmlDeviceGetUUID", handle)
    if name is None or uuid is None:
        return None
    mode = nvml.call("nvmlDeviceGetMigMode", handle, expected=_NOT_SUPPORTED)
    mig = mode is not None and mode[0] == pynvml.NVML_DEVICE_MIG_ENABLE
    # NVML does not measure a MIG-enabled GPU's utilisation: NOT_SUPPORTED is its normal
    # answer there, not an error (the GPU is exported without utilisation, never idle).
    util = nvml.call(
        "nvmlDeviceGetUtilizationRates", handle, expected=_NOT_SUPPORTED if mig else ()
    )
    memory = nvml.call("nvmlDeviceGetMemoryInfo", handle)
    power_mw = nvml.call("nvmlDeviceGetPowerUsage", handle)
    energy_mj = nvml.call("nvmlDeviceGetTotalEnergyConsumption", handle)
    temp = nvml.call("nvmlDeviceGetTemperature", handle, pynvml.NVML_TEMPERATURE_GPU)
    return GpuSample(
        index=index,
        uuid=str(uuid),
        name=str(name),
        utilization=None if util is None else util.gpu / 100.0,
        memory_used=None if memory is None else int(memory.used),
        memory_total=None if memory is None else int(memory.total),
        power_watts=None if power_mw is None else power_mw / 1000.0,
        energy_joules=None if energy_mj is None else energy_mj / 1000.0,
        temperature=None if temp is None else float(temp),
        processes=_read_processes(nvml, handle, proc_root),
        migs=_read_migs(nvml, handle) if mig else [],
    )


def _read_processes(nvml: Nvml, handle: Any, proc_root: str | Path) -> list[ProcessSample]:
    procs = nvml.call("nvmlDeviceGetComputeRunningProcesses", handle) or []
    out = []
    for proc in procs:
        pid = int(proc.pid)
        name = nvml.text("nvmlSystemGetProcessName", pid, expected=_EXITED)
        used = proc.usedGpuMemory
        out.append(
            ProcessSample(
                pid=pid,
                used_memory=None if used is None else int(used),
                name=name or "",
                workload=workload_of(pid, proc_root),
            )
        )
    return out


def _read_migs(nvml: Nvml, handle: Any) -> list[MigSample]:
    """The MIG devices of a GPU with MIG mode enabled."""
    slots = nvml.call("nvmlDeviceGetMaxMigDeviceCount", handle) or 0
    migs = []
    for slot in range(slots):
        mig = nvml.call("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot, expected=_EMPTY_SLOT)
        if mig is None:
            continue
        instance = nvml.call("nvmlDeviceGetGpuInstanceId", mig)
        if instance is None:
            continue
        memory = nvml.call("nvmlDeviceGetMemoryInfo", mig)
        migs.append(MigSample(int(instance), None if memory is None else int(memory.used)))
    return migs
