"""Which container or Kubernetes pod a process runs in, from /proc/<pid>/cgroup.

Handles cgroup v1 and v2 paths of the common runtimes:

    11:memory:/kubepods/burstable/pod0b8f5a0c-1c2d-.../3f1e...<64 hex>
    0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b8f5a0c_1c2d_....slice/cri-containerd-3f1e....scope
    0::/system.slice/docker-3f1e...<64 hex>.scope

Only the local file is read; a pod uid becomes team labels only through config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_POD_RE = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
_CONTAINER_RE = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


@dataclass(frozen=True)
class Workload:
    pod_uid: str = ""
    container_id: str = ""


def parse_cgroup(text: str) -> Workload:
    """Pod uid (dashes, lowercase) and container id from a /proc/<pid>/cgroup text."""
    pod = container = ""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        if not pod and (m := _POD_RE.search(path)):
            pod = m.group(1).replace("_", "-")
        if not container:
            found = _CONTAINER_RE.findall(path)
            if found:
                container = found[-1]
    return Workload(pod, container)


def workload_of(pid: int, proc_root: str | Path = "/proc") -> Workload:
    """The process's pod / container; empty when not containerised or not readable."""
    try:
        text = (Path(proc_root) / str(pid) / "cgroup").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return Workload()
    return parse_cgroup(text)
