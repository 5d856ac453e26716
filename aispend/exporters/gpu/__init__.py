"""GPU exporter: NVML device metrics, GPU cost accrued from hourly prices, attribution.

Modules: `settings` (the `sources.gpu` config section), `nvml` (pynvml calls with
per-call error counting), `cgroup` (pid -> pod uid / container id), `sample` (one
NVML read of every device into dataclasses), `accrual` (cost between scrapes),
`collector` (the Prometheus collector), `cli` (`aispend exporter gpu`).
"""

from aispend.exporters.gpu.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
