"""The `sources.gpu` section of aispend.yaml.

sources:
  gpu:
    idle_threshold: 0.05          # utilisation ratio below which a GPU counts as idle
    hostname: gpu-node-1          # Hostname label (default: this machine's hostname)
    proc_root: /proc              # where /proc/<pid>/cgroup is read (host /proc in a container)
    attribution:                  # first match wins: put specific entries first
      - {host: gpu-node-1, uuid: GPU-8c3e..., team: research, project: finetune}
      - {host: gpu-node-1, gpu: 1, team: search, project: ranking}
      - {host: gpu-node-2, team: search}          # every GPU of the host
    pods:                         # Kubernetes pod uid -> labels (never looked up online)
      0b8f5a0c-1c2d-4e5f-8a9b-0123456789ab: {team: search, project: ranking,
                                             pod: ranker-7d9f, namespace: search}
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from aispend.configbase import Name, StrictModel

DEFAULT_IDLE_THRESHOLD = 0.05


class GpuAttribution(StrictModel):
    """GPUs of a host (all, or one by index or UUID) -> team / project."""

    host: str | None = None
    gpu: Annotated[int, Field(ge=0)] | None = None
    uuid: str | None = None
    team: Name
    project: Name | None = None

    @model_validator(mode="after")
    def _one_selector(self) -> GpuAttribution:
        if self.gpu is not None and self.uuid is not None:
            raise ValueError("set gpu (index) or uuid, not both")
        return self

    def matches(self, host: str, index: int, uuid: str) -> bool:
        if self.host is not None and self.host != host:
            return False
        if self.uuid is not None:
            return self.uuid == uuid
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
    proc_root: str = "/proc"
    attribution: list[GpuAttribution] = []
    pods: dict[str, PodLabels] = {}

    def owner(self, host: str, index: int, uuid: str) -> tuple[str, str] | None:
        """(team, project) of a GPU by the first matching attribution entry."""
        for entry in self.attribution:
            if entry.matches(host, index, uuid):
                return entry.team, entry.project or ""
        return None
