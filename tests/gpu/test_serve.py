"""`aispend exporter gpu` serving /metrics over a real loopback socket.

Simulated: the GPUs (fake libnvidia-ml.so.1 on LD_LIBRARY_PATH, JSON state file). The
test changes the state file between scrapes and polls until the exporter shows it,
which proves NVML is read at scrape time and counters never go backwards.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

import pytest

from aispend import metrics
from aispend.procs import ManagedProcess, wait_until
from tests.conftest import free_port
from tests.gpu.conftest import state, write_state
from tests.gpu.helpers import key, samples
from tests.gpu.test_exporter_once import G1


@pytest.mark.integration
def test_serves_live_values(fake_nvml_dir: Path, gpu_env: dict[str, Path], tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = dict(os.environ, LD_LIBRARY_PATH=str(fake_nvml_dir))
    env["FAKE_NVML_STATE"] = str(gpu_env["state"])
    exporter = ManagedProcess(
        "gpu-exporter",
        [
            sys.executable,
            "-m",
            "aispend",
            "exporter",
            "gpu",
            "--config",
            str(gpu_env["config"]),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        tmp_path / "exporter.log",
        ready_url=url,
        env=env,
    )

    def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        with urllib.request.urlopen(url, timeout=5) as response:
            return samples(response.read().decode())

    util = key(metrics.GPU_UTILIZATION.name, **G1)
    cost = key(metrics.GPU_COST.name, **G1)
    try:
        exporter.start()
        exporter.wait_ready(timeout=30)
        first = scrape()
        assert first[util] == 0.87
        assert first[key(metrics.EXPORTER_UP.name, source="gpu")] == 1.0

        data = state()
        data["devices"][1]["utilization_gpu"] = 12
        write_state(gpu_env["state"], data)
        second = wait_until(lambda: (s := scrape()).get(util) == 0.12 and s, timeout=10)
        assert second[cost] >= first[cost]
    finally:
        exporter.stop()
