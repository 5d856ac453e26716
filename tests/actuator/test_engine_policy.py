"""The engine's decisions over an alert's life: resumed applies, skips decided again,
the critical-team check, secrets and the failure counter.

Simulated: the target (`Recorder` counts calls and can fail on demand), so these tests
are about the engine's state machine and policy, not about any real system; each
real target has its own tests against a wire-format fake. The store is the real
SQLite store, and the clock is injected.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from aispend.actuators.app import build_app
from aispend.actuators.engine import Engine, Outcome
from aispend.actuators.payload import Alert
from aispend.actuators.settings import ActionsSettings
from aispend.actuators.store import Store
from aispend.actuators.targets.base import Action, TargetError
from aispend.secrets import SecretError, require_secret

RULES = [{"name": "pause", "match": {"action": "pause"}, "target": "t", "mode": "pause"}]
TARGETS = {"t": {"type": "command", "apply": ["true"]}}


class Recorder:
    name, type = "t", "command"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: TargetError | None = None

    async def prepare(self, action: Action) -> dict[str, Any]:
        return {"prepared": True}

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        self.calls.append("apply")
        if self.fail is not None:
            raise self.fail
        return "acted"

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        self.calls.append("undo")
        return "undone"


def settings(**extra: Any) -> ActionsSettings:
    return ActionsSettings.model_validate({"rules": RULES, "targets": TARGETS, **extra})


def alert(status: str = "firing", starts: str = "2024-05-01T10:00:00Z", **labels: str) -> Alert:
    base = {"alertname": "X", "team": "search", "action": "pause", **labels}
    return Alert.model_validate(
        {"status": status, "labels": base, "startsAt": starts, "fingerprint": "abcd"},
        strict=False,
    )


def handle(engine: Engine, a: Alert) -> Outcome:
    return asyncio.run(engine.handle(a))


def test_interrupted_apply_is_not_resumed_once_dry_run_is_on(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    target = Recorder()
    target.fail = TargetError("gateway unreachable", retryable=True)
    first = handle(Engine(settings(dry_run=False), {}, Store(db), {"t": target}), alert())
    # The intent is recorded: the actuator retries it itself (no 503 to Alertmanager).
    assert (first.result, first.retry, first.later) == ("error: will retry", False, True)

    # On-call restarts the actuator in dry-run to stop it; Alertmanager redelivers.
    target.fail = None
    engine = Engine(settings(dry_run=True), {}, Store(db), {"t": target})
    again = handle(engine, alert())
    assert again.result == "ignored: not resumed: dry-run"
    assert target.calls == ["apply"]  # only the first, failed call
    # Whatever the failed call may have done is still undone on resolve.
    assert handle(engine, alert("resolved")).result == "ok"
    assert target.calls == ["apply", "undo"]


def test_interrupted_apply_is_not_resumed_once_the_team_is_critical(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    target = Recorder()
    target.fail = TargetError("gateway unreachable", retryable=True)
    handle(Engine(settings(dry_run=False), {}, Store(db), {"t": target}), alert())
    target.fail = None
    engine = Engine(settings(dry_run=False), {"search": "critical"}, Store(db), {"t": target})
    assert handle(engine, alert()).result == "ignored: not resumed: critical"
    assert target.calls == ["apply"]


def test_firing_skipped_for_cooldown_is_decided_again_on_redelivery(tmp_path: Path) -> None:
    now = [1_000_000.0]
    target = Recorder()
    engine = Engine(
        settings(dry_run=False, cooldown="10m"),
        {},
        Store(tmp_path / "s.db", clock=lambda: now[0]),
        {"t": target},
        clock=lambda: now[0],
    )
    assert handle(engine, alert()).result == "ok"
    now[0] += 300
    assert handle(engine, alert("resolved")).result == "ok"
    now[0] += 120  # the runaway is back 2 minutes later: within the cool-down
    back = "2024-05-01T10:07:00Z"
    assert handle(engine, alert(starts=back)).result == "skipped: cooldown"
    now[0] += 60
    assert handle(engine, alert(starts=back)).result == "ignored: still skipped: cooldown"
    now[0] += 3600  # Alertmanager's repeat: the cool-down has passed, so it acts now
    assert handle(engine, alert(starts=back)).result == "ok"
    assert target.calls == ["apply", "undo", "apply"]
    # The cool-down counts from this action, not from the skipped firing.
    assert handle(engine, alert("resolved", starts=back)).result == "ok"
    now[0] += 60
    assert handle(engine, alert(starts="2024-05-01T11:20:00Z")).result == "skipped: cooldown"


@pytest.mark.parametrize(
    ("labels", "result"),
    [
        ({"team": "support"}, "skipped: critical"),
        ({"team": "Support"}, "skipped: critical"),
        ({"team": " support "}, "skipped: critical"),
        ({"team": ""}, "skipped: no team label"),
        ({"team": "search"}, "ok"),
    ],
)
def test_critical_team_check_cannot_be_sidestepped(
    tmp_path: Path, labels: dict[str, str], result: str
) -> None:
    target = Recorder()
    engine = Engine(
        settings(dry_run=False), {"support": "critical"}, Store(tmp_path / "s.db"), {"t": target}
    )
    assert handle(engine, alert(**labels)).result == result
    assert target.calls == (["apply"] if result == "ok" else [])


def test_alert_without_team_label_is_not_paused(tmp_path: Path) -> None:
    target = Recorder()
    engine = Engine(settings(dry_run=False), {}, Store(tmp_path / "s.db"), {"t": target})
    a = Alert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "X", "action": "pause"},
            "startsAt": "2024-05-01T10:00:00Z",
            "fingerprint": "abcd",
        },
        strict=False,
    )
    assert handle(engine, a).result == "skipped: no team label"
    assert target.calls == []


def test_whitespace_token_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISPEND_ACTUATOR_TOKEN", "   ")
    with pytest.raises(SecretError, match="no token configured"):
        require_secret(None, "AISPEND_ACTUATOR_TOKEN", "actuator webhook token")
    monkeypatch.setenv("AISPEND_ACTUATOR_TOKEN", " tok ")
    assert require_secret(None, "AISPEND_ACTUATOR_TOKEN", "actuator webhook token") == "tok"
    with pytest.raises(ValueError, match="token is empty"):
        build_app(settings(), {}, Store(":memory:"), " ")


def test_failure_counter_exists_at_zero_before_any_failure() -> None:
    # AISpendActuatorFailing reads increase(): the first failure must be an increase.
    registry = CollectorRegistry(auto_describe=True)
    build_app(settings(), {}, Store(":memory:"), "tok", registry=registry)
    text = generate_latest(registry).decode()
    for action in ("apply", "undo"):
        line = f'aispend_actuator_actions_total{{action="{action}",result="error",target="t"}} 0.0'
        assert line in text


def test_example_config_sends_no_idle_gpu_to_the_gateway() -> None:
    # A gateway pause blocks the team's LLM traffic and frees no GPU.
    from aispend.actuators.policy import decide
    from aispend.config import load_config
    from tests.conftest import EXAMPLE_CONFIG

    config = load_config(EXAMPLE_CONFIG)
    labels = {"alertname": "AISpendGPUIdle", "action": "pause", "team": "research"}
    decision = decide(labels, config.actions, {}, lambda team: 0, lambda r, s: None, 0.0)
    assert decision.rule is None or config.actions.targets[decision.rule.target].type != "gateway"
