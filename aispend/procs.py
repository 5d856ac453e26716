"""Child processes that die with their parent, and polling with a deadline.

Used by `aispend stack up`, the demo and the tests: start a server, wait until it
answers, stop it (SIGTERM, then SIGKILL), and show its last log lines when it fails.
On Linux each child gets PR_SET_PDEATHSIG, so it is killed even if the parent is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll `check` until it returns something truthy; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path, lines: int = 20) -> str:
    try:
        data = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(data[-lines:])


@dataclass
class ManagedProcess:
    """One child process with its log file and readiness URL."""

    name: str
    argv: Sequence[str]
    log_path: Path
    ready_url: str | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ) if self.env is None else self.env
        self.proc = subprocess.Popen(
            list(self.argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.cwd,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait for the ready URL; raise with the log tail if the child exits first."""

        def check() -> bool:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ChildFailed(self.name, code, tail(self.log_path))
            return self.ready_url is None or http_ok(self.ready_url)

        try:
            wait_until(check, timeout, what=f"{self.name} to become ready")
        except TimeoutError as exc:
            raise ChildFailed(self.name, None, tail(self.log_path), str(exc)) from exc

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


class ChildFailed(RuntimeError):
    """A child process exited or never became ready."""

    def __init__(self, name: str, code: int | None, log_tail: str, detail: str = ""):
        self.name = name
        self.code = code
        self.log_tail = log_tail
        why = detail or (f"exited with status {code}" if code is not None else "failed")
        super().__init__(f"{name} {why}; last log lines:\n{log_tail}")
