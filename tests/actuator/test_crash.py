"""The actuator killed with SIGKILL between apply and response, restarted, redelivered.

Real process (`python -m aispend actuator`), real SQLite file, real sockets. The
gateway admin API is a fake here only so that the test can kill the actuator at the
exact moment needed: the fake stores the throttle, then SIGKILLs the actuator before
answering, so the actuator dies after the target acted and before it answered
Alertmanager. Alertmanager would redeliver; the test does so after a restart.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import requests
import yaml

from aispend.procs import ManagedProcess, wait_until
from tests.actuator.conftest import gateway_actions
from tests.actuator.fakes import TOKEN, FakeGatewayAdmin, ThreadedServer, alert, payload
from tests.conftest import EXAMPLE_CONFIG, free_port

FP = "c0ffee0000000001"


def _actuator(tmp_path: Path, config: Path, port: int, run: int) -> ManagedProcess:
    return ManagedProcess(
        name=f"actuator-{run}",
        argv=[
            sys.executable,
            "-m",
            "aispend",
            "actuator",
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
            "--token-file",
            str(tmp_path / "token"),
            "--state-db",
            str(tmp_path / "state.sqlite3"),
            "--dry-run",
            "false",
        ],
        log_path=tmp_path / f"actuator-{run}.log",
        ready_url=f"http://127.0.0.1:{port}/healthz",
    )


@pytest.mark.integration
def test_sigkill_between_apply_and_response(tmp_path, admin_token_file):
    (tmp_path / "token").write_text(TOKEN + "\n")
    fake = FakeGatewayAdmin()
    gateway = ThreadedServer(fake.app()).start()
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    # The config says dry_run: true; --dry-run false must override it.
    data["actions"] = gateway_actions([gateway.url], admin_token_file, dry_run=True)
    config = tmp_path / "aispend.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    first = _actuator(tmp_path, config, port, 1)
    second = _actuator(tmp_path, config, port, 2)
    try:
        first.start()
        first.wait_ready()
        pid = first.pid
        assert pid is not None
        kills: list[int] = []

        def kill_actuator() -> None:
            if not kills:
                kills.append(pid)
                os.kill(pid, signal.SIGKILL)

        fake.on_put = kill_actuator
        url = f"http://127.0.0.1:{port}/alerts"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with pytest.raises(requests.ConnectionError):
            requests.post(url, json=payload(alert(FP)), headers=headers, timeout=30)
        assert first.proc is not None and first.proc.wait(30) == -signal.SIGKILL
        assert list(fake.rules) == [f"am-{FP}"]  # the target acted before the kill

        second.start()
        second.wait_ready()
        r = requests.post(url, json=payload(alert(FP)), headers=headers, timeout=30)
        assert r.status_code == 200
        assert r.json()["alerts"] == [{"fingerprint": FP, "decision": "apply", "result": "ok"}]
        # A third delivery is a plain duplicate.
        r = requests.post(url, json=payload(alert(FP)), headers=headers, timeout=30)
        assert r.json()["alerts"][0]["result"] == "ignored: duplicate"
    finally:
        first.stop()
        second.stop()
        gateway.stop()

    # One action at the gateway: the redelivery re-sent the same idempotent upsert.
    assert list(fake.rules) == [f"am-{FP}"]
    puts = fake.calls("PUT")
    assert len(puts) == 2 and puts[0].body == puts[1].body and puts[0].path == puts[1].path

    from aispend.actuators.store import iter_audit

    audit = list(iter_audit(tmp_path / "state.sqlite3"))
    assert [(a.decision, a.result) for a in audit] == [
        ("apply", "pending"),
        ("apply", "ok"),
        ("ignore", "ignored: duplicate"),
    ]
    done = audit[1]
    assert done.detail.endswith("(resumed an interrupted apply)")
    assert (done.fingerprint, done.starts_at) == (FP, "2024-05-01T10:00:00+00:00")
    assert (done.rule, done.target, done.mode, done.dry_run) == (
        "throttle-agent",
        "gw",
        "throttle",
        False,
    )
    assert (done.alertname, done.team, done.labels["agent"]) == (
        "AISpendRunawaySpend",
        "search",
        "rerank-agent",
    )


@pytest.mark.integration
def test_sighup_keeps_the_actuator_serving(tmp_path, admin_token_file):
    """SIGHUP's default ends a process, and the README says the gateway and the budgets
    and GPU exporters reload aispend.yaml on it: sent to every aispend process after an
    edit, it stopped the actuator (which reads its config at start only), so resolves
    could not undo a throttle until a restart. It now logs that a restart applies the
    edit, and the actuator keeps answering."""
    (tmp_path / "token").write_text(TOKEN + "\n")
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["actions"] = gateway_actions(["http://127.0.0.1:9"], admin_token_file)
    config = tmp_path / "aispend.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    actuator = _actuator(tmp_path, config, port, 1)
    try:
        actuator.start()
        actuator.wait_ready()
        assert actuator.pid is not None
        os.kill(actuator.pid, signal.SIGHUP)
        wait_until(
            lambda: "restart it to apply an edit" in actuator.log_path.read_text(),
            10,
            what="the SIGHUP log line",
        )
        assert actuator.alive()
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status_code == 200
    finally:
        actuator.stop()
