"""Shared pytest fixtures: free loopback ports, the repo root, the example config."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aispend import ports
from aispend.procs import ManagedProcess
from aispend.stack.components import COMPONENTS, CORE

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "aispend.example.yaml"
SHARED_DATA = REPO.parent / "shared" / "data"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ephemeral_start() -> int:
    """The lowest port the kernel hands to client sockets and to bind(0) listeners."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_base(components: Iterable[str] = CORE) -> int:
    """A port base whose ports are all free, below the ephemeral range: a client
    connection or a temporary Prometheus may take an ephemeral port at any time (a stack
    chosen there met PortInUse twice)."""
    top = min(_ephemeral_start(), 65536) - 200
    for _ in range(200):
        base = random.randint(10000, max(10001, top))
        wanted = [ports.shifted(COMPONENTS[c].port, base) for c in components]
        if all(port_is_free(p) for p in wanted):
            return base
    raise RuntimeError("no free port base found")


def file_size_limit(limit: int) -> Callable[[], None]:
    """A child whose writes stop at `limit` bytes a file (EFBIG), as a disk that fills up
    part-way through a write; Python ignores SIGXFSZ, so write() raises."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not on PATH: run `make setup` (installs the Debian packages)")
    return path


@contextmanager
def _serving(process: ManagedProcess, url: str) -> Iterator[str]:
    """Start `process`, wait until it is ready, yield `url`; stop it however it ends."""
    process.start()
    try:
        process.wait_ready(30)
        yield url
    finally:
        process.stop()


def running_alertmanager(config: Path, workdir: Path) -> AbstractContextManager[str]:
    """A real Alertmanager with `config` on a free loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    am = ManagedProcess(
        "alertmanager",
        [require_binary("prometheus-alertmanager"), f"--config.file={config}",
         f"--storage.path={workdir / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", f"--web.external-url={url}"],
        workdir / "alertmanager.log",
        ready_url=f"{url}/-/ready",
    )  # fmt: skip
    return _serving(am, url)


def running_prometheus(config: Path, data: Path, *extra: str) -> AbstractContextManager[str]:
    """A real Prometheus with `config` and TSDB `data` on a free loopback port (log next
    to the TSDB); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prometheus = ManagedProcess(
        "prometheus",
        [require_binary("prometheus"), f"--config.file={config}",
         f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}", *extra],
        data.parent / "prometheus.log",
        ready_url=f"{url}/-/ready",
    )  # fmt: skip
    return _serving(prometheus, url)


def cmdline(pid: int) -> str:
    """A process's command line, arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (the test's unique run dir)."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != os.getpid()
        and text in cmdline(int(entry.name))
    ]


def scrape(url: str) -> str:
    """A /metrics page's text."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.read().decode()


def prom_query(base: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector; the query must succeed."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def am_post_alert(
    am_url: str,
    labels: dict[str, str],
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
) -> None:
    """Post one alert to Alertmanager's v2 API, as Prometheus does (started 5 min ago;
    `ends_at` in the past resolves it)."""
    now = datetime.now(UTC)
    body = [{
        "labels": labels,
        "annotations": annotations or {},
        "startsAt": (now - timedelta(minutes=5)).isoformat(),
        "endsAt": (ends_at or now + timedelta(hours=1)).isoformat(),
        "generatorURL": "http://prometheus:9090/graph",
    }]  # fmt: skip
    request = urllib.request.Request(
        am_url + "/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture
def example_config() -> Path:
    return EXAMPLE_CONFIG
