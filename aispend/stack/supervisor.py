"""Start, watch and stop the local stack's processes as one unit.

`Stack.start()` renders the configs, starts each component in order and waits until it
is ready; if one dies or never gets ready, everything already started is stopped and
`ChildFailed` names the child with its last log lines; a config that cannot run as
asked (StackError: receivers that page nobody, a run dir that cannot be written) is
refused before anything starts. `Stack.stop()` stops them all in
reverse order. Children die with the supervisor (PR_SET_PDEATHSIG), so no orphans.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aispend.procs import ChildFailed, ManagedProcess
from aispend.stack.components import COMPONENTS, CORE, PortInUse, RunContext
from aispend.stack.render import check_checkout, render_all, render_config

log = logging.getLogger(__name__)


def default_repo_root() -> Path:
    """The checkout holding deploy/ and alert-rules/ (the package's parent)."""
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class StackOptions:
    config: Path
    run_dir: Path = Path(".run")
    port_base: int = 9090
    components: Sequence[str] = CORE
    repo_root: Path | None = None
    ready_timeout: float = 60.0
    extra_args: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Extra command-line arguments per component (e.g. the demo's actuator dry-run off)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for every child."""


class Stack:
    def __init__(self, options: StackOptions):
        unknown = [c for c in options.components if c not in COMPONENTS]
        if unknown:
            raise ValueError(
                f"unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}"
            )
        self.options = options
        run_dir = options.run_dir.resolve()
        self.ctx = RunContext(
            run_dir=run_dir,
            repo_root=(options.repo_root or default_repo_root()).resolve(),
            config_path=run_dir / "aispend.yaml",
            port_base=options.port_base,
        )
        check_checkout(self.ctx.repo_root)  # before the demo writes its history, too
        # Start in the registry's order, whatever order the caller listed them in.
        self.components = [c for c in COMPONENTS if c in options.components]
        self.processes: list[ManagedProcess] = []
        self._config_stamp = self._source_stamp()
        self._unreadable_stamp: tuple[int, int] | None = None

    def start(self) -> None:
        busy = self.ports_in_use()
        if busy:
            raise PortInUse(
                f"port{'s' if len(busy) > 1 else ''} {', '.join(busy)} already in use by"
                " another process: stop it (a Debian prometheus or prometheus-alertmanager"
                " service, say) or move the stack with --port-base"
            )
        render_all(
            self.options.config, self.ctx, self.components, {**os.environ, **self.options.env}
        )
        try:
            for name in self.components:
                self._start_one(name)
        except BaseException:
            self.stop()
            raise

    def ports_in_use(self) -> list[str]:
        """`PORT (component)` for each port of the stack that something listens on."""
        busy = []
        for name in self.components:
            port = self.ctx.port(name)
            with socket.socket() as probe:
                # As the servers bind: a port in TIME_WAIT after the last run is free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.ctx.listen_host, port))
                except OSError:
                    busy.append(f"{port} ({name})")
        return busy

    def _start_one(self, name: str) -> None:
        component = COMPONENTS[name]
        proc = ManagedProcess(
            name=name,
            argv=[*component.argv(self.ctx), *self.options.extra_args.get(name, ())],
            log_path=self.ctx.run_dir / "logs" / f"{name}.log",
            ready_url=self.ctx.url(name) + component.ready_path,
            cwd=self.ctx.repo_root,
            env={**os.environ, **self.options.env},
        )
        log.info("starting %s: %s", name, " ".join(proc.argv))
        proc.start()
        self.processes.append(proc)
        proc.wait_ready(self.options.ready_timeout)

    def stop(self) -> None:
        """Stop in reverse start order, but Prometheus last: a stopping gateway waits
        for one more scrape of the usage it metered since the last one."""
        order = sorted(reversed(self.processes), key=lambda p: p.name == "prometheus")
        for proc in order:
            proc.stop(COMPONENTS[proc.name].stop_timeout_s)

    def dead_child(self) -> ManagedProcess | None:
        return next((p for p in self.processes if not p.alive()), None)

    def check(self) -> None:
        """Raise ChildFailed for a child that died; re-render a changed config."""
        dead = self.dead_child()
        if dead is not None:
            code = dead.proc.returncode if dead.proc else None
            from aispend.procs import tail

            raise ChildFailed(dead.name, code, tail(dead.log_path))
        stamp = self._source_stamp()
        if stamp is None or stamp in (self._config_stamp, self._unreadable_stamp):
            return  # gone for a moment (a checkout, an editor's rename): keep what runs
        try:
            render_config(self.options.config, self.ctx)
        except (OSError, ValueError) as exc:  # gone or unreadable between stat and read
            self._unreadable_stamp = stamp  # said once, tried again when it changes
            log.warning(
                "%s cannot be read, keeping the running config: %s", self.options.config, exc
            )
            return
        self._config_stamp = stamp
        log.info("%s changed: re-rendered for the running processes", self.options.config)

    def _source_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.options.config.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def urls(self) -> dict[str, str]:
        return {name: self.ctx.url(name) for name in self.components}

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def parse_components(value: str, base: Iterable[str] = CORE) -> list[str]:
    """`a,b` -> [a, b]; `+a,b` adds to the default set."""
    if value.startswith("+"):
        return [*base, *[v for v in value[1:].split(",") if v]]
    return [v for v in value.split(",") if v]
