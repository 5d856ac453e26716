"""`aispend exporter gpu --once` in a subprocess against the fake NVML library.

Simulated: the GPUs. The test compiles `fake_nvml.c` into a libnvidia-ml.so.1 and puts
it on LD_LIBRARY_PATH, so pynvml's real bindings load it exactly as they would load the
driver's library; the GPUs are described by a JSON state file. Also simulated: /proc
(a tmp directory with the two processes' cgroup files, via `sources.gpu.proc_root`).
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aispend import metrics
from aispend.gpu_prices import DEFAULT_GPU_HOURLY_PRICES
from tests.conftest import require_binary
from tests.gpu.conftest import GIB, STATE, state, write_state
from tests.gpu.helpers import key, samples

HOST = "gpu-node-1"
G0 = {
    metrics.GPU: "0",
    metrics.GPU_UUID: STATE["devices"][0]["uuid"],
    metrics.GPU_MODEL_NAME: "NVIDIA A100-SXM4-40GB",
    metrics.HOSTNAME: HOST,
    metrics.TEAM: metrics.UNATTRIBUTED_TEAM,
    metrics.PROJECT: "",
}
G1 = {
    metrics.GPU: "1",
    metrics.GPU_UUID: STATE["devices"][1]["uuid"],
    metrics.GPU_MODEL_NAME: "NVIDIA H100 80GB HBM3",
    metrics.HOSTNAME: HOST,
    metrics.TEAM: "search",
    metrics.PROJECT: "ranking",
}


def run_once(
    lib_dir: Path, state_file: Path | None, cwd: Path, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AISPEND_CONFIG"}
    env["LD_LIBRARY_PATH"] = str(lib_dir)
    if state_file is not None:
        env["FAKE_NVML_STATE"] = str(state_file)
    argv = [sys.executable, "-m", "aispend", "exporter", "gpu", "--once"]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool")
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def test_once_exposition_is_exact(
    fake_nvml_dir: Path, gpu_env: dict[str, Path], tmp_path: Path
) -> None:
    result = run_once(fake_nvml_dir, gpu_env["state"], tmp_path, gpu_env["config"])
    assert result.returncode == 0, result.stderr

    got = samples(result.stdout, "aispend_gpu_")
    process_labels = (metrics.PID, metrics.PROCESS_NAME, metrics.POD, metrics.NAMESPACE)
    p4242 = {
        **G1,
        metrics.TEAM: "research",
        metrics.PROJECT: "finetune",
        **dict(zip(process_labels, ("4242", "python3", "trainer-0", "ml"), strict=True)),
    }
    p4343 = {**G1, **dict(zip(process_labels, ("4343", "vllm", "", ""), strict=True))}
    expected = {
        key(metrics.GPU_UTILIZATION.name, **G0): 0.0,
        key(metrics.GPU_UTILIZATION.name, **G1): 0.87,
        key(metrics.GPU_MEMORY_USED.name, **G0): 5.0 * GIB,
        key(metrics.GPU_MEMORY_USED.name, **G1): 64.0 * GIB,
        key(metrics.GPU_MEMORY_TOTAL.name, **G0): 40.0 * GIB,
        key(metrics.GPU_MEMORY_TOTAL.name, **G1): 80.0 * GIB,
        # GPU 0's power read answers NVML_ERROR_NOT_SUPPORTED: no sample, one error.
        key(metrics.GPU_POWER.name, **G1): 512.3,
        key(metrics.GPU_ENERGY.name, **G0): 987654.321,
        key(metrics.GPU_ENERGY.name, **G1): 123456789.012,
        # GPU 1's temperature read answers NVML_ERROR_GPU_IS_LOST: no sample, one error.
        key(metrics.GPU_TEMPERATURE.name, **G0): 31.0,
        key(metrics.GPU_PROCESS_MEMORY.name, **p4242): 32.0 * GIB,
        key(metrics.GPU_PROCESS_MEMORY.name, **p4343): 16.0 * GIB,
        key(metrics.GPU_MIG_MEMORY_USED.name, **G0, gpu_instance="3"): 2.0 * GIB,
        key(metrics.GPU_HOURLY_COST.name, **G0): DEFAULT_GPU_HOURLY_PRICES[G0["model_name"]],
        key(metrics.GPU_HOURLY_COST.name, **G1): 6.5,  # prices.gpu overrides the table
        # One scrape: the clocks start, nothing is charged yet.
        key(metrics.GPU_COST.name, **G0): 0.0,
        key(metrics.GPU_COST.name, **G1): 0.0,
        key(metrics.GPU_IDLE_COST.name, **G0): 0.0,
        key(metrics.GPU_IDLE_COST.name, **G1): 0.0,
        key(metrics.GPU_NVML_ERRORS.name, call="nvmlDeviceGetPowerUsage"): 1.0,
        key(metrics.GPU_NVML_ERRORS.name, call="nvmlDeviceGetTemperature"): 1.0,
    }
    assert got == expected
    rest = samples(result.stdout, "aispend_")
    assert rest[key(metrics.EXPORTER_UP.name, source="gpu")] == 1.0
    assert rest[key(metrics.INFO.name, version=_version(), currency="USD")] == 1.0

    check = promtool_check(result.stdout)
    assert (check.returncode, check.stdout + check.stderr) == (0, "")


def _version() -> str:
    from aispend import __version__

    return __version__


def test_no_library_exports_up_zero_and_one_log_line(tmp_path: Path) -> None:
    """No libnvidia-ml.so.1 anywhere (empty LD_LIBRARY_PATH dir, no config file)."""
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("a real NVML library is installed on this machine")
    empty = tmp_path / "no-nvml"
    empty.mkdir()
    result = run_once(empty, None, tmp_path)
    assert result.returncode == 0, result.stderr
    got = samples(result.stdout, "aispend_")
    assert got[key(metrics.EXPORTER_UP.name, source="gpu")] == 0.0
    assert not [k for k in got if k[0].startswith("aispend_gpu_")]
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert "libnvidia-ml.so.1 not found" in errors[0]
    assert 'aispend_exporter_up{source="gpu"} 0' in errors[0]
    check = promtool_check(result.stdout)
    assert (check.returncode, check.stdout + check.stderr) == (0, "")


def test_driver_not_loaded_says_so(fake_nvml_dir: Path, tmp_path: Path) -> None:
    """The library is there but nvmlInit answers NVML_ERROR_DRIVER_NOT_LOADED."""
    data = state()
    data["init_error"] = 9  # NVML_ERROR_DRIVER_NOT_LOADED
    state_file = tmp_path / "state.json"
    write_state(state_file, data)
    result = run_once(fake_nvml_dir, state_file, tmp_path)
    assert result.returncode == 0, result.stderr
    got = samples(result.stdout, "aispend_")
    assert got[key(metrics.EXPORTER_UP.name, source="gpu")] == 0.0
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "NVIDIA kernel driver is not loaded" in errors[0]


def test_bad_config_is_a_clear_error(fake_nvml_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "teams: [{name: search}]\n"
        "sources:\n  gpu:\n    idle_threshold: 5\n"
        f"    attribution: [{{gpu: 0, uuid: {G1[metrics.GPU_UUID]}, team: search}},\n"
        "                  {uuid: GPU-x, team: search}]\n"
        "    pods: {trainer-2: {team: search}}\n"
    )
    result = run_once(fake_nvml_dir, None, tmp_path, config)
    assert result.returncode == 1
    assert "sources.gpu.idle_threshold: must be <= 1" in result.stderr
    assert "sources.gpu.attribution[0]: set gpu (index) or uuid, not both" in result.stderr
    assert "sources.gpu.attribution[1].uuid: 'GPU-x' is not a GPU UUID" in result.stderr
    assert "sources.gpu.pods: 'trainer-2' is not a pod uid" in result.stderr
    assert "Traceback" not in result.stderr
