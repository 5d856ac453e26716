"""What the local stack can run: one `Component` per process, by docker-compose name.

Each component knows its default port (aispend/ports.py), the Prometheus job that
scrapes it, its readiness path, and how to build its command line in a run context.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aispend import ports


class StackError(RuntimeError):
    """Something a user fixes before the stack can start; the message says what.

    StackError
     +-- MissingBinary, PortInUse, MissingCheckout
     +-- RunDirUnusable, ReceiversUnconfigured
    """


class MissingBinary(StackError):
    """A server binary the stack needs is not on PATH."""


class PortInUse(StackError):
    """Another process listens on a port the stack needs (a system Prometheus on :9090,
    say): its readiness answer would pass for the stack's own."""


class MissingCheckout(StackError):
    """The stack's deploy/ files are not there: they live in the repository, not in the
    installed package, so the stack and the demo run from a checkout."""


class RunDirUnusable(StackError):
    """The run directory (or a file the stack writes in it) cannot be created or written."""


class ReceiversUnconfigured(StackError):
    """Alertmanager's receivers still send to the demo's chat-sink, which this stack does
    not run, or lack their keys: alerts would page nobody while the stack looked healthy."""


@dataclass(frozen=True)
class RunContext:
    run_dir: Path
    repo_root: Path
    config_path: Path
    port_base: int
    listen_host: str = "127.0.0.1"

    def port(self, component: Component | str) -> int:
        c = COMPONENTS[component] if isinstance(component, str) else component
        return ports.shifted(c.port, self.port_base)

    def address(self, component: Component | str) -> str:
        return f"{self.listen_host}:{self.port(component)}"

    def url(self, component: Component | str) -> str:
        return f"http://{self.address(component)}"


ArgvBuilder = Callable[[RunContext], list[str]]


@dataclass(frozen=True)
class Component:
    name: str
    port: int
    job: str | None
    ready_path: str
    argv: ArgvBuilder
    summary: str
    stop_timeout_s: float = 10.0
    """How long it gets to exit after SIGTERM before SIGKILL."""


def find_binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise MissingBinary(
        f"{names[0]} is not on PATH: run `make setup` (as root it installs the Debian "
        f"packages prometheus and prometheus-alertmanager)"
    )


def _aispend(*args: str) -> list[str]:
    return [sys.executable, "-m", "aispend", *args]


def _prometheus(ctx: RunContext) -> list[str]:
    return [
        find_binary("prometheus"),
        f"--config.file={ctx.run_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={ctx.run_dir / 'prometheus-data'}",
        f"--web.listen-address={ctx.address('prometheus')}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=45d",
    ]


def _alertmanager(ctx: RunContext) -> list[str]:
    return [
        find_binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={ctx.run_dir / 'alertmanager.yml'}",
        f"--storage.path={ctx.run_dir / 'alertmanager-data'}",
        f"--web.listen-address={ctx.address('alertmanager')}",
        "--cluster.listen-address=",
    ]


def _aispend_server(*command: str, state: str | None = None) -> ArgvBuilder:
    """An aispend server; `state` names its state-file flag, pointed into the run dir."""
    name = {"exporter": f"exporter-{command[-1]}"}.get(command[0], command[0])

    def build(ctx: RunContext) -> list[str]:
        argv = _aispend(*command, "--config", str(ctx.config_path), "--listen", ctx.address(name))
        if state:
            argv += [state, str(ctx.run_dir / f"{name}.sqlite3")]
        return argv

    return build


def _demo(name: str, *command: str) -> ArgvBuilder:
    def build(ctx: RunContext) -> list[str]:
        return _aispend("demo", *command, "--listen", ctx.address(name))

    return build


_ALL = (
    Component(
        "demo-upstream",
        ports.DEMO_UPSTREAM,
        None,
        "/healthz",
        _demo("demo-upstream", "upstream"),
        "simulated LLM provider",
    ),
    Component(
        "chat-sink",
        ports.DEMO_CHAT_SINK,
        None,
        "/healthz",
        _demo("chat-sink", "chat-sink"),
        "records chat/pager notifications",
    ),
    Component(
        "exporter-budgets",
        ports.BUDGETS_EXPORTER,
        "aispend-budgets",
        "/metrics",
        _aispend_server("exporter", "budgets"),
        "budgets exporter",
    ),
    Component(
        "exporter-gpu",
        ports.GPU_EXPORTER,
        "aispend-gpu",
        "/metrics",
        _aispend_server("exporter", "gpu"),
        "GPU exporter",
    ),
    Component(
        "exporter-tokens",
        ports.TOKENS_EXPORTER,
        "aispend-tokens",
        "/metrics",
        _aispend_server("exporter", "tokens"),
        "Azure tokens exporter",
    ),
    Component(
        "exporter-billing",
        ports.BILLING_EXPORTER,
        "aispend-billing",
        "/metrics",
        _aispend_server("exporter", "billing"),
        "billing exporter",
    ),
    Component(
        "gateway",
        ports.GATEWAY,
        "aispend-gateway",
        "/healthz",
        _aispend_server("gateway", state="--throttle-db"),
        "metering gateway",
        # drain (5 s), then a last scrape of what it metered (up to 15 s by default)
        stop_timeout_s=30.0,
    ),
    Component(
        "actuator",
        ports.ACTUATOR,
        "aispend-actuator",
        "/healthz",
        _aispend_server("actuator", state="--state-db"),
        "alert actuator",
    ),
    Component(
        "alertmanager",
        ports.ALERTMANAGER,
        "alertmanager",
        "/-/ready",
        _alertmanager,
        "Alertmanager",
    ),
    Component(
        "prometheus",
        ports.PROMETHEUS,
        "prometheus",
        "/-/ready",
        _prometheus,
        "Prometheus",
    ),
)

COMPONENTS: dict[str, Component] = {c.name: c for c in _ALL}
"""Every component, in start order (Prometheus last, so its first scrape finds all)."""

CORE = ("exporter-budgets", "alertmanager", "prometheus")
"""What `aispend stack up` runs by default."""
