"""The `sources.gpu` section of aispend.yaml.

sources:
  gpu:
    idle_threshold: 0.05          # utilisation ratio below which a GPU counts as idle
    hostname: gpu-node-1          # Hostname label (default: $NODE_NAME, else this
                                  # machine's hostname; see GpuSettings.host)
    proc_root: /proc              # where /proc/<pid>/cgroup is read (host /proc in a container)
    attribution:                  # first match wins: put specific entries first
      - {host: gpu-node-1, uuid: GPU-8c3e..., team: research, project: finetune}
      - {host: gpu-node-1, gpu: 1, team: search, project: ranking}   # a slot: prefer uuid
      - {host: gpu-node-2, team: search}          # every GPU of the host
    pods:                         # Kubernetes pod uid -> labels (never looked up online)
      0b8f5a0c-1c2d-4e5f-8a9b-0123456789ab: {team: search, project: ranking,
                                             pod: ranker-7d9f, namespace: search}

Keys that could never match are refused: a pod uid is normalised to the form the
exporter reads from cgroup paths (lower case, dashes; `_` from a systemd slice name is
accepted), a GPU UUID to NVML's (`GPU-` + lower-case hex, as `nvidia-smi -L` shows it).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from aispend.configbase import Name, StrictModel

DEFAULT_IDLE_THRESHOLD = 0.05

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_POD_UID_RE = re.compile(_UUID)
_GPU_UUID_RE = re.compile(rf"gpu-({_UUID})")
_MIG_UUID_RE = re.compile(rf"mig-(gpu-)?{_UUID}.*")


def normal_gpu_uuid(value: str) -> str:
    """`value` as NVML reports a GPU's UUID (GPU-<lower-case hex>); ValueError if it is not one."""
    text = value.strip().lower()
    if m := _GPU_UUID_RE.fullmatch(text):
        return f"GPU-{m.group(1)}"
    if _MIG_UUID_RE.fullmatch(text):
        raise ValueError(
            f"{value!r} is a MIG device: attribution is per GPU, give the UUID of its GPU"
            " (the GPU-... line above it in `nvidia-smi -L`)"
        )
    if _POD_UID_RE.fullmatch(text):
        raise ValueError(f"{value!r} lacks NVML's prefix: write 'GPU-{text}'")
    raise ValueError(
        f"{value!r} is not a GPU UUID (GPU- and 8-4-4-4-12 hex digits, as `nvidia-smi -L` shows it)"
    )


def normal_pod_uid(value: str) -> str:
    """`value` as the exporter reads a pod uid from cgroup paths (lower case, dashes)."""
    text = value.strip().lower().replace("_", "-")
    if not _POD_UID_RE.fullmatch(text):
        raise ValueError(f"{value!r} is not a pod uid (8-4-4-4-12 hex digits, as in metadata.uid)")
    return text


class GpuAttribution(StrictModel):
    """GPUs of a host (all, or one by index or UUID) -> team / project."""

    host: str | None = None
    gpu: Annotated[int, Field(ge=0)] | None = None
    """NVML's index of the GPU: a slot, not a GPU. When a GPU is lost or removed the
    next one takes its index (and this team) at the next enumeration; the exporter logs
    a warning when the UUID at an attributed index changes. Prefer `uuid`."""
    uuid: str | None = None
    """The GPU's UUID as `nvidia-smi -L` shows it (GPU-...; case is normalised)."""
    team: Name
    project: Name | None = None

    @field_validator("uuid")
    @classmethod
    def _gpu_uuid(cls, value: str | None) -> str | None:
        return None if value is None else normal_gpu_uuid(value)

    @model_validator(mode="after")
    def _one_selector(self) -> GpuAttribution:
        if self.gpu is not None and self.uuid is not None:
            raise ValueError("set gpu (index) or uuid, not both")
        return self

    def matches(self, host: str, index: int, uuid: str) -> bool:
        if self.host is not None and self.host != host:
            return False
        if self.uuid is not None:
            return self.uuid.lower() == uuid.lower()
        if self.gpu is not None:
            return self.gpu == index
        return True


class PodLabels(StrictModel):
    """What a Kubernetes pod uid stands for; the exporter never asks the API server."""

    team: Name
    project: Name | None = None
    pod: str = ""
    namespace: str = ""


class GpuSettings(StrictModel):
    idle_threshold: Annotated[float, Field(ge=0, le=1)] = DEFAULT_IDLE_THRESHOLD
    hostname: str | None = None
    """The Hostname label and what `attribution[].host` matches. Unset: $NODE_NAME
    (in a Kubernetes DaemonSet, set it from the downward API, fieldRef spec.nodeName, as
    for dcgm-exporter: the pod's own hostname is the pod name), else gethostname()."""
    proc_root: str = "/proc"
    attribution: list[GpuAttribution] = []
    pods: dict[str, PodLabels] = {}
    """Pod uid (metadata.uid) -> labels; keys normalised by `normal_pod_uid`."""

    @field_validator("pods")
    @classmethod
    def _pod_uids(cls, pods: dict[str, PodLabels]) -> dict[str, PodLabels]:
        out: dict[str, PodLabels] = {}
        problems: list[str] = []
        written: dict[str, str] = {}
        for key, labels in pods.items():
            try:
                uid = normal_pod_uid(key)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if uid in out:
                problems.append(f"{written[uid]!r} and {key!r} are the same pod uid")
                continue
            out[uid], written[uid] = labels, key
        if problems:
            raise ValueError("; ".join(problems))
        return out

    def host(self, environ: Mapping[str, str] = os.environ) -> str:
        """The Hostname label: `hostname`, else $NODE_NAME, else this machine's hostname."""
        return self.hostname or environ.get("NODE_NAME", "").strip() or socket.gethostname()

    def entry_for(self, host: str, index: int, uuid: str) -> GpuAttribution | None:
        """The first attribution entry matching a GPU."""
        return next((e for e in self.attribution if e.matches(host, index, uuid)), None)
