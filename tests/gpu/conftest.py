"""Fixtures for the GPU exporter tests: a fake libnvidia-ml.so.1 compiled here by gcc.

No GPU on the test machine: `fake_nvml/fake_nvml.c` implements the NVML entry points
the exporter calls, with the signatures and struct layouts of nvml.h, answering from a
JSON state file ($FAKE_NVML_STATE). pynvml's real ctypes bindings load it, either in an
exporter subprocess through LD_LIBRARY_PATH or in-process by setting `pynvml.nvmlLib`.
"""

from __future__ import annotations

import copy
import ctypes
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest

FAKE_SOURCE = Path(__file__).parent / "fake_nvml" / "fake_nvml.c"

GIB = 1024**3
POD_UID = "0b8f5a0c-1c2d-4e5f-8a9b-0123456789ab"
CONTAINER_ID = "3f1e" * 16

# Two GPUs: GPU 0 idle with MIG on (one MIG device) whose power reading is not
# supported; GPU 1 busy with two processes, whose temperature read says the GPU is lost.
STATE: dict[str, Any] = {
    "devices": [
        {
            "name": "NVIDIA A100-SXM4-40GB",
            "uuid": "GPU-0d7c9d2a-0000-4a4a-8000-000000000000",
            "utilization_gpu": 0,
            "memory_total": 40 * GIB,
            "memory_used": 5 * GIB,
            "power_mw": 61250,
            "energy_mj": 987654321,
            "temperature": 31,
            "mig_mode": 1,
            "mig_devices": [
                {"gpu_instance_id": 3, "memory_total": 10 * GIB, "memory_used": 2 * GIB}
            ],
            "errors": {"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED},
        },
        {
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-5e1f0b3c-1111-4b4b-9111-111111111111",
            "utilization_gpu": 87,
            "memory_total": 80 * GIB,
            "memory_used": 64 * GIB,
            "power_mw": 512300,
            "energy_mj": 123456789012,
            "temperature": 61,
            "processes": [
                {"pid": 4242, "used_memory": 32 * GIB, "name": "python3"},
                {"pid": 4343, "used_memory": 16 * GIB, "name": "vllm"},
            ],
            "errors": {"nvmlDeviceGetTemperature": pynvml.NVML_ERROR_GPU_IS_LOST},
        },
    ]
}

CONFIG = """
teams:
  - {name: search, projects: [ranking]}
  - {name: research, projects: [finetune]}
prices:
  gpu: {"NVIDIA H100 80GB HBM3": 6.5}
sources:
  gpu:
    hostname: gpu-node-1
    idle_threshold: 0.05
    proc_root: %(proc_root)s
    attribution:
      - {host: other-node, team: research}
      - {host: gpu-node-1, gpu: 1, team: search, project: ranking}
    pods:
      %(pod_uid)s: {team: research, project: finetune, pod: trainer-0, namespace: ml}
"""


def state() -> dict[str, Any]:
    return copy.deepcopy(STATE)


def write_state(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


@pytest.fixture(scope="session")
def fake_nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the compiled fake libnvidia-ml.so.1."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not on PATH: the GPU tests compile a fake NVML library")
    out = tmp_path_factory.mktemp("fake_nvml")
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-O1",
            "-Wall",
            "-Werror",
            "-o",
            str(out / "libnvidia-ml.so.1"),
            str(FAKE_SOURCE),
        ],
        check=True,
    )
    return out


@pytest.fixture
def gpu_env(tmp_path: Path) -> dict[str, Path]:
    """A state file, a fake /proc with the two processes' cgroups, and a config file."""
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{POD_UID.replace('-', '_')}.slice/cri-containerd-{CONTAINER_ID}.scope\n"
    )
    (proc / "4343").mkdir()
    (proc / "4343" / "cgroup").write_text(f"0::/system.slice/docker-{'ab12' * 16}.scope\n")
    config = tmp_path / "aispend.yaml"
    config.write_text(CONFIG % {"proc_root": proc, "pod_uid": POD_UID})
    state_file = tmp_path / "nvml_state.json"
    write_state(state_file, state())
    return {"state": state_file, "config": config, "proc": proc}


@pytest.fixture
def fake_nvml_loaded(
    fake_nvml_dir: Path, gpu_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """pynvml in this process bound to the fake library (restored afterwards)."""
    monkeypatch.setenv("FAKE_NVML_STATE", str(gpu_env["state"]))
    monkeypatch.setattr(pynvml, "nvmlLib", ctypes.CDLL(str(fake_nvml_dir / "libnvidia-ml.so.1")))
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    yield gpu_env["state"]
