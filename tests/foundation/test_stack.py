"""`aispend stack up` with the real Prometheus and Alertmanager binaries.

Starts the stack as a user would (the CLI, in a subprocess) on free loopback ports,
checks through Prometheus' HTTP API that it scrapes the budgets exporter, then stops it
and checks that no process it started is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from aispend import ports
from aispend.procs import wait_until
from aispend.stack.components import CORE
from tests.conftest import (
    EXAMPLE_CONFIG,
    REPO,
    cmdline,
    free_port_base,
    processes_mentioning,
    require_binary,
)

pytestmark = pytest.mark.integration

STARTED = (*CORE, "chat-sink")
"""What start_stack runs."""


def query(base: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)["data"]["result"]
    except OSError:
        return []


def start_stack(
    tmp_path: Path,
    base: int | str,
    env: dict[str, str] | None = None,
    components: str = "+chat-sink",
) -> subprocess.Popen[str]:
    """The CLI; by default with the demo's chat-sink, which deploy/alertmanager.yml's
    receivers send to (without it, the stack refuses to start)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aispend",
            "stack",
            "up",
            "--config",
            str(EXAMPLE_CONFIG),
            "--run-dir",
            str(tmp_path / "run"),
            "--port-base",
            str(base),
            "--components",
            components,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_stack_scrapes_budgets_and_stops_cleanly(tmp_path: Path):
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    base = free_port_base(STARTED)
    stack = start_stack(tmp_path, base)
    run_dir = str(tmp_path / "run")
    try:

        def budgets_by_team():
            rows = query(base, 'aispend_budget{project="",agent=""}')
            return {
                (r["metric"]["team"], r["metric"]["period"]): float(r["value"][1]) for r in rows
            } or None

        found = wait_until(budgets_by_team, 90, interval=1, what="aispend_budget in Prometheus")
        assert found == {
            ("search", "month"): 12000,
            ("search", "day"): 500,
            ("support", "month"): 20000,
            ("support", "day"): 800,
            ("research", "month"): 3000,
            ("growth", "month"): 6000,
            ("growth", "day"): 250,
        }
        info = query(base, "aispend_team_info")
        assert {r["metric"]["team"]: r["metric"]["criticality"] for r in info} == {
            "search": "standard",
            "support": "critical",
            "research": "experimental",
            "growth": "standard",
        }
        am = f"http://127.0.0.1:{ports.shifted(ports.ALERTMANAGER, base)}/-/ready"
        with urllib.request.urlopen(am, timeout=2) as response:
            assert response.status == 200
        children = [p for p in processes_mentioning(run_dir) if p != stack.pid]
        # prometheus, alertmanager, budgets exporter (the chat-sink's command line does
        # not name the run dir, but its listen address)
        assert len(children) == 3, children
        sink = f"chat-sink --listen 127.0.0.1:{ports.shifted(ports.DEMO_CHAT_SINK, base)}"
        assert len(processes_mentioning(sink)) == 1
    finally:
        stack.send_signal(signal.SIGTERM)
        output, _ = stack.communicate(timeout=60)
    assert stack.returncode == 0, output
    assert "aispend stack is up" in output and "aispend stack stopped." in output
    assert processes_mentioning(run_dir) == []
    assert processes_mentioning(sink) == []


def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path):
    """A Debian prometheus-alertmanager service on the port: the stack's readiness check
    was answered by it (for Prometheus, "aispend stack is up" was printed) before its own
    child failed to bind."""
    require_binary("prometheus-alertmanager")
    base = free_port_base(STARTED)
    port = ports.shifted(ports.ALERTMANAGER, base)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    try:
        stack = start_stack(tmp_path, base)
        output, _ = stack.communicate(timeout=90)
    finally:
        blocker.close()
    assert stack.returncode == 1
    assert f"port {port} (alertmanager) already in use by another process" in output
    assert "aispend stack is up" not in output
    assert processes_mentioning(str(tmp_path / "run")) == []


def test_child_failing_at_startup_is_named_and_nothing_is_left(tmp_path: Path):
    """Simulated: an `alertmanager` on PATH that exits at once with an error of its own."""
    require_binary("prometheus-alertmanager")
    _, env = _fake_binary(
        tmp_path, "prometheus-alertmanager", "echo 'bad flag: --no-such-option' >&2\nexit 3"
    )
    stack = start_stack(tmp_path, free_port_base(STARTED), env)
    output, _ = stack.communicate(timeout=90)
    assert stack.returncode == 1
    assert "alertmanager exited with status 3" in output
    assert "bad flag: --no-such-option" in output  # the child's own last log lines
    assert processes_mentioning(str(tmp_path / "run")) == []


def test_ctrl_c_while_a_child_is_starting_stops_everything_at_once(tmp_path: Path):
    """Ctrl-C only set an event that the start never looked at: a Prometheus slow to get
    ready (replaying its WAL) kept the stack starting until its 60 s ready timeout.
    Simulated: a `prometheus` on PATH that runs but never answers /-/ready."""
    require_binary("prometheus-alertmanager")
    fake, env = _fake_binary(tmp_path, "prometheus", "sleep 300")
    stack = start_stack(tmp_path, free_port_base(STARTED), env)
    run_dir = str(tmp_path / "run")
    try:
        wait_until(
            lambda: any(str(fake) in cmdline(pid) for pid in processes_mentioning(run_dir)),
            60,
            what="the fake prometheus to start",
        )
        stack.send_signal(signal.SIGINT)
        output, _ = stack.communicate(timeout=45)  # under the 60 s ready timeout
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.communicate()
    assert stack.returncode == 128 + signal.SIGINT, output
    assert "stopped while starting; nothing is left running" in output
    assert "Traceback" not in output
    assert processes_mentioning(run_dir) == []


def _fake_binary(tmp_path: Path, name: str, script: str) -> tuple[Path, dict[str, str]]:
    """A shell script named `name` first on PATH; returns it and the environment."""
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir(exist_ok=True)
    fake = fakebin / name
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    return fake, {**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}"}


@pytest.mark.parametrize("base", ["70000", "0", "ninety"])
def test_port_base_out_of_range_is_refused_before_anything_starts(tmp_path: Path, base: str):
    stack = start_stack(tmp_path, base)
    output, _ = stack.communicate(timeout=60)
    assert stack.returncode == 2
    assert "argument --port-base: " in output
    assert not (tmp_path / "run").exists()
    assert processes_mentioning(str(tmp_path / "run")) == []


def run_from_copy(
    root: Path, command: list[str], run_dir: Path
) -> subprocess.CompletedProcess[str]:
    """`python -m aispend COMMAND` with the package copied under `root` (found first on
    PYTHONPATH, so `root` is where it looks for deploy/ and alert-rules/)."""
    shutil.copytree(
        REPO / "aispend", root / "aispend", ignore=shutil.ignore_patterns("__pycache__")
    )
    return subprocess.run(
        [sys.executable, "-m", "aispend", *command, "--config", str(EXAMPLE_CONFIG),
         "--run-dir", str(run_dir), "--port-base", str(free_port_base())],
        cwd=root.parent,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("command", [["stack", "up"], ["demo", "--once"]], ids=" ".join)
def test_installed_package_without_a_checkout_is_told_where_to_run(
    tmp_path: Path, command: list[str]
):
    # Simulated: a non-editable install. The package alone is copied into a
    # site-packages folder (as `pip install .` lays it out), so deploy/ and
    # alert-rules/ are not beside it; the interpreter and its libraries are the real ones.
    site = tmp_path / "site-packages"
    run_dir = tmp_path / "run"
    done = run_from_copy(site, command, run_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{site / 'deploy' / 'prometheus.yml'} not found" in done.stderr
    assert "run them there" in done.stderr
    assert not run_dir.exists()
    assert processes_mentioning(str(run_dir)) == []


@pytest.mark.parametrize(
    "missing",
    ["alert-rules/aispend.alerts.yml", "alert-rules/aispend.rules.yml", "deploy/alertmanager.yml"],
)
def test_stack_refuses_to_start_without_its_rules_or_routes(tmp_path: Path, missing: str):
    # A checkout that lost one of these files: the stack would run, look healthy, and
    # never alert (or drop every alert). It refuses before it starts or writes anything.
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "deploy", checkout / "deploy")
    shutil.copytree(REPO / "alert-rules", checkout / "alert-rules")
    (checkout / missing).unlink()
    run_dir = tmp_path / "run"
    done = run_from_copy(checkout, ["stack", "up"], run_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{checkout / missing} not found: the stack does not start without its" in (done.stderr)
    assert not run_dir.exists()
    assert processes_mentioning(str(run_dir)) == []


class _Stopped:
    """Stands in for a started child: records the order and timeout it is stopped with
    (no process here; what is checked is the supervisor's order)."""

    def __init__(self, name: str, log: list[tuple[str, float]]) -> None:
        self.name = name
        self._log = log

    def stop(self, timeout: float = 10.0) -> None:
        self._log.append((self.name, timeout))


def test_prometheus_stops_last_and_the_gateway_gets_time_for_its_last_scrape(
    tmp_path: Path,
) -> None:
    """A stopping gateway waits for one more scrape of what it metered since the last
    (sources.gateway.shutdown_scrape_wait_s): Prometheus, started last, must stop last,
    and the gateway must not be killed before its drain and that wait are over."""
    from aispend.stack.supervisor import Stack, StackOptions

    stack = Stack(
        StackOptions(
            config=EXAMPLE_CONFIG,
            run_dir=tmp_path / "run",
            components=("exporter-budgets", "gateway", "alertmanager", "prometheus"),
            repo_root=REPO,
        )
    )
    log: list[tuple[str, float]] = []
    stack.processes = [_Stopped(n, log) for n in stack.components]  # type: ignore[misc]
    stack.stop()
    assert [name for name, _ in log] == [
        "alertmanager",
        "gateway",
        "exporter-budgets",
        "prometheus",
    ]
    assert dict(log)["gateway"] >= 5 + 15  # drain, then the default scrape wait
