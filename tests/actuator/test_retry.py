"""Applies that failed retryably are retried by the actuator, and a resolve still undoes them.

Alertmanager sends a resolve only to a receiver that got the firing: had the actuator
answered the firing 503 until the alert resolved, nothing would ever undo what the apply
did on the replicas that took it. So a firing whose intent is recorded is answered 2xx
(202, `error: will retry`) and the actuator's own retry loop resumes the apply.

The HTTP tests run the real actuator app in-process, with a short retry backoff, against
two fake gateway replicas (the admin API of aispend/gateway/admin.py; a fake so that one
replica can refuse on demand). The engine tests use a simulated target (`Blocking`) that
can hold an undo open, to put a resolve exactly between the retry loop's listing of the
pending applies and its taking the alert's lock; the store is the real SQLite store.
test_integration.py::test_apply_left_pending_is_undone_when_alertmanager_resolves plays
the whole story through the real Alertmanager and real gateways.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from aispend import metrics as m
from aispend.actuators.engine import REFIRE_GRACE_S, Engine
from aispend.actuators.payload import Alert
from aispend.actuators.settings import ActionsSettings
from aispend.actuators.store import Store
from aispend.actuators.targets.base import Action, TargetError
from aispend.procs import wait_until
from tests.actuator.conftest import gateway_actions
from tests.actuator.fakes import TOKEN, alert, payload

FP = "a1b2c3d4e5f60718"
KEY = (FP, "2024-05-01T10:00:00+00:00")
FAST = (0.05, 0.2)  # the retry loop's backoff here: production waits 5 s doubling to 60 s
RETRIED = "retried by the actuator"


def _retries(act: Any, fp: str) -> list[Any]:
    return [a for a in act.audit() if a.fingerprint == fp and RETRIED in a.detail]


@pytest.fixture
def replica_two_down(gateways, make_actuator, admin_token_file):  # type: ignore[no-untyped-def]
    """Two fake gateway replicas, the second refusing (503), and the actuator app with a
    short retry backoff: (replica one, replica two, actuator)."""
    (one, _), (two, _) = gateways
    act = make_actuator(
        gateway_actions([s.url for _, s in gateways], admin_token_file), retry_backoff=FAST
    )
    two.fail_with = 503
    return one, two, act


def test_partial_apply_is_answered_202_and_retried_until_the_replica_is_back(replica_two_down):
    one, two, act = replica_two_down
    r = act.post(payload(alert(FP)))
    # 2xx, so that Alertmanager records the firing as delivered and sends its resolve.
    assert r.status_code == 202
    assert r.json() == {
        "alerts": [{"fingerprint": FP, "decision": "apply", "result": "error: will retry"}]
    }
    assert list(one.rules) == [f"am-{FP}"] and two.rules == {}
    assert act.states() == {KEY: "applying"}

    # The loop retries while the replica refuses; each retry is audited.
    wait_until(lambda: len(_retries(act, FP)) >= 2, 30, 0.05, "two retries")
    assert act.states() == {KEY: "applying"}
    failed = _retries(act, FP)[0]
    assert (failed.decision, failed.result, failed.alert_status) == (
        "apply",
        "error: will retry",
        "firing",
    )
    assert "HTTP 503" in failed.error

    two.fail_with = None
    wait_until(lambda: act.states() == {KEY: "applied"}, 30, 0.05, "the retried apply")
    assert list(two.rules) == [f"am-{FP}"]
    # The retry carries the firing's annotations, like a redelivery would.
    assert two.rules[f"am-{FP}"]["reason"] == (
        "AISpendRunawaySpend: rerank-agent spends 9.1x its usual rate"
    )
    done = act.audit()[-1]
    assert (done.decision, done.result) == ("apply", "ok")
    assert done.detail == f"rate rule am-{FP} on search/rerank-agent at 2 gateway(s) ({RETRIED})"
    text = requests.get(f"{act.url}/metrics", timeout=10).text
    assert f'{m.ACTUATOR_ACTIVE_ACTIONS.name}{{target="gw",team="search"}} 1.0' in text
    assert f'{m.ACTUATOR_ACTIONS.name}{{action="apply",result="ok",target="gw"}} 1.0' in text
    assert f'{m.ACTUATOR_WEBHOOK_REQUESTS.name}{{code="202"}} 1.0' in text

    # A redelivery of the firing now is a duplicate; the resolve undoes on both replicas.
    assert act.post(payload(alert(FP))).json()["alerts"][0]["result"] == "ignored: duplicate"
    assert act.post(payload(alert(FP, status="resolved"))).status_code == 200
    assert one.rules == {} and two.rules == {}


def test_an_apply_answered_after_the_sender_left_is_left_to_its_redelivery(
    gateways, make_actuator, admin_token_file
):  # type: ignore[no-untyped-def]
    """Replica one answers after the sender's timeout (Alertmanager's notify timeout,
    played by a 1 s client timeout); replica two refuses. The 202 reached nobody, so
    Alertmanager counts the firing as undelivered and sends no resolve if the alert ends
    before a redelivery: the retry loop applied it anyway, and nothing ever undid it.
    Now it is left to the redelivery, which applies it."""
    (one, _), (two, _) = gateways
    one.on_put = lambda: time.sleep(1.5)
    two.fail_with = 503
    act = make_actuator(
        gateway_actions([s.url for _, s in gateways], admin_token_file), retry_backoff=FAST
    )
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            f"{act.url}/alerts",
            json=payload(alert(FP)),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=1.0,
        )
    wait_until(
        lambda: any("left to Alertmanager's redelivery" in a.detail for a in act.audit()),
        30,
        0.05,
        "the apply handed back",
    )
    two.fail_with = None
    one.on_put = None
    time.sleep(1.0)  # five retry-loop passes at most: none may apply it
    assert act.states() == {KEY: "applying"} and two.rules == {}
    assert _retries(act, FP) == []

    assert act.post(payload(alert(FP))).status_code == 200  # the redelivery
    assert act.states() == {KEY: "applied"} and list(two.rules) == [f"am-{FP}"]


def test_resolve_while_retrying_undoes_everywhere_and_is_never_applied_again(
    gateways, replica_two_down
):
    one, two, act = replica_two_down
    assert act.post(payload(alert(FP))).status_code == 202
    wait_until(lambda: _retries(act, FP), 30, 0.05, "a retry")

    # The alert resolves while replica two still refuses: the undo fails there (503,
    # Alertmanager redelivers the resolve), and the row is never applied again.
    r = act.post(payload(alert(FP, status="resolved")))
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (503, "error: retry")
    assert act.states() == {KEY: "undo_failed"}
    assert one.rules == {}
    puts = _puts(gateways, FP)

    # Another alert keeps the loop busy: once it has been retried twice after the
    # resolve, the loop has passed over the pending applies at least twice.
    other = "0000000000000abc"
    assert act.post(payload(alert(other, agent="crawler-agent"))).status_code == 202
    before = len(_retries(act, other))
    wait_until(lambda: len(_retries(act, other)) >= before + 2, 30, 0.05, "two passes")
    assert _puts(gateways, FP) == puts and f"am-{FP}" not in one.rules

    two.fail_with = None
    r = act.post(payload(alert(FP, status="resolved")))  # Alertmanager's redelivery
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (200, "ok")
    assert act.states()[KEY] == "undone"
    wait_until(lambda: act.states()[(other, KEY[1])] == "applied", 30, 0.05, "the other apply")
    assert _puts(gateways, FP) == puts
    assert f"am-{FP}" not in one.rules and f"am-{FP}" not in two.rules
    assert [a.result for a in act.audit() if a.fingerprint == FP and a.decision == "undo"] == [
        "error: retry",
        "ok",
    ]


def _puts(gateways: Any, fp: str) -> int:
    return sum(1 for fake, _ in gateways for s in fake.calls("PUT") if s.path.endswith(fp))


# ---------------------------------------------------------------- engine level


class Blocking:
    """A simulated target: apply fails while `down`; undo waits for `release` once set."""

    name, type = "t", "command"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.down = True
        self.release: asyncio.Event | None = None
        self.undoing: asyncio.Event | None = None

    async def prepare(self, action: Action) -> dict[str, Any]:
        return {}

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        self.calls.append("apply")
        if self.down:
            raise TargetError("unreachable", retryable=True)
        return "acted"

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        self.calls.append("undo")
        if self.undoing is not None and self.release is not None:
            self.undoing.set()
            await self.release.wait()
        return "undone"


SETTINGS = ActionsSettings.model_validate(
    {
        "dry_run": False,
        "rules": [{"name": "pause", "match": {"action": "pause"}, "target": "t", "mode": "pause"}],
        "targets": {"t": {"type": "command", "apply": ["true"]}},
    }
)


def _alert(status: str = "firing") -> Alert:
    return Alert.model_validate(
        {
            "status": status,
            "labels": {"alertname": "X", "team": "search", "action": "pause"},
            "startsAt": "2024-05-01T10:00:00Z",
            "fingerprint": "abcd",
        },
        strict=False,
    )


def test_a_resolve_that_comes_while_a_retry_waits_for_the_lock_wins(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    target = Blocking()
    engine = Engine(SETTINGS, {}, store, {"t": target})

    async def story() -> None:
        first = await engine.handle(_alert())
        assert (first.result, first.retry, first.later) == ("error: will retry", False, True)
        target.down = False
        target.undoing, target.release = asyncio.Event(), asyncio.Event()
        resolve = asyncio.create_task(engine.handle(_alert("resolved")))
        await target.undoing.wait()  # the resolve holds the alert's lock, row still applying
        retry = asyncio.create_task(engine.retry_pending())
        await asyncio.sleep(0)  # the pass lists the row and waits for the lock
        target.release.set()
        assert (await resolve).result == "ok"
        assert await retry is False  # nothing left applying
        assert await engine.retry_pending() is False

    asyncio.run(story())
    assert target.calls == ["apply", "undo"]
    assert store.get("abcd", "2024-05-01T10:00:00+00:00").state == "undone"  # type: ignore[union-attr]


def test_an_apply_answered_202_is_retried_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    target = Blocking()
    assert asyncio.run(Engine(SETTINGS, {}, Store(db), {"t": target}).handle(_alert())).later
    target.down = False
    restarted = Engine(SETTINGS, {}, Store(db), {"t": target})  # no delivery at hand
    assert asyncio.run(restarted.retry_pending()) is False
    assert target.calls == ["apply", "apply"]
    done = Store(db).audit()[-1]
    assert (done.decision, done.result, done.detail) == ("apply", "ok", f"acted ({RETRIED})")
    assert (done.labels["team"], done.alert_status) == ("search", "firing")


class Crashing(Blocking):
    """A simulated target whose apply never returns: the actuator is killed during it,
    after the intent was recorded and before any answer reached Alertmanager."""

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        self.calls.append("apply")
        if self.down:
            await asyncio.Event().wait()  # cancelled below: the process dies here
        return "acted"


def test_an_apply_a_crash_cut_before_any_answer_is_left_to_the_redelivery(
    tmp_path: Path,
) -> None:
    """Alertmanager never got a 2xx for this firing: if the alert resolved while the
    actuator was down, no resolve will ever come, so the retry loop must not apply it.
    A redelivered firing (the alert still fires) resumes it, as before the loop."""
    db = tmp_path / "s.db"
    target = Crashing()

    async def crash() -> None:
        handling = asyncio.create_task(
            Engine(SETTINGS, {}, Store(db), {"t": target}).handle(_alert())
        )
        await wait_for_calls(target, 1)
        handling.cancel()

    asyncio.run(crash())
    assert Store(db).get("abcd", "2024-05-01T10:00:00+00:00").state == "applying"  # type: ignore[union-attr]
    target.down = False
    restarted = Engine(SETTINGS, {}, Store(db), {"t": target})
    assert asyncio.run(restarted.retry_pending()) is False  # not left to the loop
    assert target.calls == ["apply"]
    assert asyncio.run(restarted.handle(_alert())).result == "ok"  # the redelivery
    assert target.calls == ["apply", "apply"]


async def wait_for_calls(target: Blocking, n: int) -> None:
    while len(target.calls) < n:
        await asyncio.sleep(0.01)


def test_an_apply_whose_rule_was_removed_is_still_undone_on_resolve(tmp_path: Path) -> None:
    """The rule of an apply left to the loop is renamed or removed before the retry:
    the target may have been changed part-way (one replica of two), so the row keeps
    holding it (apply_failed) and the resolve undoes it; `failed` left it for good."""
    db = tmp_path / "s.db"
    target = Blocking()
    assert asyncio.run(Engine(SETTINGS, {}, Store(db), {"t": target}).handle(_alert())).later
    renamed = SETTINGS.model_copy(
        update={"rules": [SETTINGS.rules[0].model_copy(update={"name": "pause-v2"})]}
    )
    restarted = Engine(renamed, {}, Store(db), {"t": target})
    assert asyncio.run(restarted.retry_pending()) is False
    assert Store(db).get("abcd", "2024-05-01T10:00:00+00:00").state == "apply_failed"  # type: ignore[union-attr]
    assert asyncio.run(restarted.handle(_alert("resolved"))).result == "ok"
    assert target.calls == ["apply", "undo"]


def test_the_retry_loop_holds_back_once_dry_run_is_on(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    target = Blocking()
    asyncio.run(Engine(SETTINGS, {}, Store(db), {"t": target}).handle(_alert()))
    target.down = False
    dry = SETTINGS.model_copy(update={"dry_run": True})
    engine = Engine(dry, {}, Store(db), {"t": target})
    assert asyncio.run(engine.retry_pending()) is True  # still applying: undone on resolve
    assert target.calls == ["apply"]
    assert asyncio.run(engine.handle(_alert("resolved"))).result == "ok"
    assert target.calls == ["apply", "undo"]


def test_a_refire_cut_by_a_crash_is_not_retried_for_its_first_lifes_answer(
    tmp_path: Path,
) -> None:
    """First life: the apply fails retryably (202, audited `error: will retry`), the loop
    applies it, the resolve undoes it. Alertmanager fires it again with the same startsAt
    and the actuator is killed during that apply: no 2xx for this firing, so the loop
    must not apply it on the first life's record (the audit is append-only)."""
    db = tmp_path / "s.db"
    now = [1000.0]

    def clock() -> float:
        return now[0]

    first = Blocking()
    engine = Engine(SETTINGS, {}, Store(db, clock=clock), {"t": first}, clock=clock)
    assert asyncio.run(engine.handle(_alert())).later
    first.down = False
    assert asyncio.run(engine.retry_pending()) is False
    assert asyncio.run(engine.handle(_alert("resolved"))).result == "ok"
    now[0] += REFIRE_GRACE_S + 40  # fired again after its resolve
    target = Crashing()

    async def crash() -> None:
        again = Engine(SETTINGS, {}, Store(db, clock=clock), {"t": target}, clock=clock)
        handling = asyncio.create_task(again.handle(_alert()))
        await wait_for_calls(target, 1)
        handling.cancel()

    asyncio.run(crash())
    target.down = False
    restarted = Engine(SETTINGS, {}, Store(db, clock=clock), {"t": target}, clock=clock)
    assert asyncio.run(restarted.retry_pending()) is False
    assert target.calls == ["apply"]  # left to Alertmanager's redelivery


def test_an_apply_in_a_notification_answered_503_is_left_to_the_redelivery(
    tmp_path: Path,
) -> None:
    """One notification with two firings (a route that groups alerts): A's apply fails
    retryably, B's target cannot be read (nothing recorded). The answer is 503, so
    Alertmanager got no 2xx for A either: A is handed back, not left to the loop. The
    real app in-process; the targets are simulated."""
    from aiohttp.test_utils import TestClient, TestServer

    from aispend.actuators.app import ENGINE, build_app

    class Unreadable(Blocking):
        async def prepare(self, action: Action) -> dict[str, Any]:
            raise TargetError("cannot read", retryable=True)

    settings = ActionsSettings.model_validate(
        {
            "dry_run": False,
            "rules": [
                {"name": "pause", "match": {"action": "pause"}, "target": "t", "mode": "pause"},
                {"name": "stop", "match": {"action": "stop"}, "target": "u", "mode": "pause"},
            ],
            "targets": {
                "t": {"type": "command", "apply": ["true"]},
                "u": {"type": "command", "apply": ["true"]},
            },
        }
    )
    a, b = Blocking(), Unreadable()
    app = build_app(
        settings,
        {},
        Store(tmp_path / "s.db"),
        "tok",
        targets_factory=lambda session: {"t": a, "u": b},  # type: ignore[arg-type,return-value]
        retry_backoff=(3600, 3600),
    )
    firings = [alert("aaaa", action="pause"), alert("bbbb", action="stop")]

    async def story() -> None:
        async with TestClient(TestServer(app)) as client:
            r = await client.post(
                "/alerts", headers={"Authorization": "Bearer tok"}, json=payload(*firings)
            )
            assert r.status == 503
            engine = app[ENGINE]
            assert await engine.retry_pending() is False  # nothing left to the loop
            assert a.calls == ["apply"]
            assert engine.store.audit()[-1].result == "error: retry"

    asyncio.run(story())


def test_an_apply_handed_back_after_the_pass_listed_it_is_not_retried(tmp_path: Path) -> None:
    """The app hands an apply back (its notification answered 503) between the retry
    pass listing the pending applies and taking the alert's lock: the row is checked
    again under the lock, so the loop leaves it to Alertmanager's redelivery."""
    db = tmp_path / "s.db"
    target = Blocking()
    engine = Engine(SETTINGS, {}, Store(db), {"t": target})
    assert asyncio.run(engine.handle(_alert())).later
    target.down = False
    key = _alert().key()
    assert engine._left_to_retry() == [key]  # what the pass listed
    asyncio.run(engine.hand_back(_alert()))
    assert asyncio.run(engine._retry_apply(*key)) is None
    assert target.calls == ["apply"]
