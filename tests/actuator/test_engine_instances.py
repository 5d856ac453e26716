"""An alert series over several instances (flapping: a new startsAt without the old
one's resolve), and actions that share an object: the action is always undone, and a
shared object always gets its original state back.

Simulated: the target. `Replicas` stands in for a target whose actions share objects
(Kubernetes Deployments, APIM subscriptions): it keeps replica counts in memory, can
fail a read or refuse a write on demand, and can hold a read open, so that the engine's
bookkeeping is tested without HTTP. The real Kubernetes target's wire format has its own
tests (test_kubernetes_target.py). The engine and the SQLite store are the real ones.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from aispend.actuators import store as st
from aispend.actuators.engine import REFIRE_GRACE_S, Engine, Outcome
from aispend.actuators.payload import Alert, PayloadError, parse_payload
from aispend.actuators.settings import ActionsSettings
from aispend.actuators.store import Store
from aispend.actuators.targets.base import Action, HoldsObjects, TargetError

T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:20:00Z"


class Replicas:
    """Objects named by the alert's `objects` label ("x,y"); pause sets them to 0."""

    name, type = "t", "command"

    def __init__(self, shares: Replicas | None = None, **replicas: int) -> None:
        self.replicas = shares.replicas if shares else dict(replicas)
        self.objects_scope = f"memory {id(self.replicas)}"  # one dict: the same objects
        self.fail_read: TargetError | None = None
        self.fail_undo: TargetError | None = None
        self.fail_apply: TargetError | None = None
        self.refuse_write: set[str] = set()
        self.hold_read: asyncio.Event | None = None
        self.reading = asyncio.Event()

    async def prepare(self, action: Action) -> dict[str, Any]:
        if self.fail_read is not None:
            error, self.fail_read = self.fail_read, None
            raise error
        read = {n: self.replicas[n] for n in action.labels["objects"].split(",")}
        self.reading.set()
        if self.hold_read is not None:
            await self.hold_read.wait()
        return {"replicas": read}

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        if self.fail_apply is not None:
            error, self.fail_apply = self.fail_apply, None
            raise error
        for name in undo_data["replicas"]:
            if name in self.refuse_write:
                raise TargetError(f"PATCH {name}: HTTP 403", retryable=False)
            self.replicas[name] = 0
        return "paused"

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        if self.fail_undo is not None:
            error, self.fail_undo = self.fail_undo, None
            raise error
        self.replicas.update(undo_data["replicas"])
        return "restored"

    def originals(self, undo_data: dict[str, Any]) -> dict[str, Any]:
        return dict(undo_data["replicas"])

    def with_originals(
        self, undo_data: dict[str, Any], originals: dict[str, Any]
    ) -> dict[str, Any]:
        return {**undo_data, "replicas": dict(originals)}

    def as_applied(self, state: Any) -> bool:
        return bool(state == 0)


def settings(**extra: Any) -> ActionsSettings:
    return ActionsSettings.model_validate(
        {
            "dry_run": False,
            "rules": [
                {"name": "pause", "match": {"action": "pause"}, "target": "t", "mode": "pause"}
            ],
            "targets": {"t": {"type": "command", "apply": ["true"]}},
            **extra,
        }
    )


def alert(
    fp: str,
    status: str = "firing",
    starts: str = T1,
    objects: str = "x",
    ends: str | None = None,
    action: str = "pause",
    team: str = "search",
) -> Alert:
    labels = {
        "alertname": "AISpendGPUIdle",
        "team": team,
        "action": action,
        "objects": objects,
    }
    body = {"status": status, "labels": labels, "startsAt": starts, "fingerprint": fp}
    if ends is not None:
        body["endsAt"] = ends
    return Alert.model_validate(body, strict=False)


def handle(engine: Engine, a: Alert) -> Outcome:
    return asyncio.run(engine.handle(a))


def test_replicas_fake_is_a_holds_objects_target() -> None:
    assert isinstance(Replicas(), HoldsObjects)


@pytest.mark.parametrize("held_back_by", [{"cooldown": "10m"}, {"max_active_per_team": 1}])
def test_resolve_undoes_the_earlier_instance_a_held_back_refiring_left(
    tmp_path: Path, held_back_by: dict[str, Any]
) -> None:
    """The re-firing is skipped (its own series' action counts for the cool-down and
    the team's limit); Alertmanager never resolves the first instance. The resolve of
    the second must still restore the object."""
    target = Replicas(x=3)
    store = Store(tmp_path / "s.db")
    engine = Engine(settings(**held_back_by), {}, store, {"t": target})
    assert handle(engine, alert("f1")).result == "ok"
    assert handle(engine, alert("f1", starts=T2)).result.startswith("skipped")
    assert target.replicas == {"x": 0}  # the series still fires: the pause stays

    resolved = handle(engine, alert("f1", "resolved", starts=T2))
    assert (resolved.result, resolved.retry) == ("nothing to undo", False)
    assert target.replicas == {"x": 3}
    first = store.get("f1", "2024-05-01T10:00:00+00:00")
    assert first is not None and first.state == st.UNDONE
    undo = [a for a in store.audit() if a.decision == "undo" and a.result == "ok"]
    assert [(a.starts_at, a.alert_status) for a in undo] == [
        ("2024-05-01T10:00:00+00:00", "resolved")
    ]


def test_resolve_with_an_earlier_start_than_the_firing_undoes_it(tmp_path: Path) -> None:
    """HA Prometheus pair: the replica whose alert began earlier reached Alertmanager after
    the first notification, so the firing said T2 and the resolve says T1 (Alertmanager
    keeps the earliest startsAt). The instance that began before the resolve's endsAt is
    the one resolved."""
    target = Replicas(x=3)
    store = Store(tmp_path / "s.db")
    engine = Engine(settings(), {}, store, {"t": target})
    assert handle(engine, alert("f1", starts=T2)).result == "ok"
    resolved = handle(engine, alert("f1", "resolved", starts=T1, ends="2024-05-01T10:40:00Z"))
    assert resolved.retry is False
    assert target.replicas == {"x": 3}
    second = store.get("f1", "2024-05-01T10:20:00+00:00")
    assert second is not None and second.state == st.UNDONE


def test_an_earlier_instance_whose_undo_failed_is_undone_on_redelivery(tmp_path: Path) -> None:
    """The flapping case (the re-firing held back by the cool-down) with the first undo
    refused (403): the resolve asks for a redelivery, which undoes it."""
    target = Replicas(x=3)
    store = Store(tmp_path / "s.db")
    engine = Engine(settings(cooldown="10m"), {}, store, {"t": target})
    handle(engine, alert("f1"))
    assert handle(engine, alert("f1", starts=T2)).result.startswith("skipped")
    target.fail_undo = TargetError("PATCH x: HTTP 403", retryable=False)
    assert handle(engine, alert("f1", "resolved", starts=T2)).retry is True
    assert target.replicas == {"x": 0}
    first = store.get("f1", "2024-05-01T10:00:00+00:00")
    assert first is not None and first.state == st.UNDO_FAILED
    assert handle(engine, alert("f1", "resolved", starts=T2)).retry is False
    assert target.replicas == {"x": 3}


def test_a_redelivered_old_resolve_leaves_a_newer_instance_alone(tmp_path: Path) -> None:
    target = Replicas(x=3)
    engine = Engine(settings(), {}, Store(tmp_path / "s.db"), {"t": target})
    old_resolve = alert("f1", "resolved", starts=T1, ends="2024-05-01T10:10:00Z")
    handle(engine, alert("f1"))
    handle(engine, old_resolve)
    assert target.replicas == {"x": 3}
    assert handle(engine, alert("f1", starts=T2)).result == "ok"  # began after T1 ended
    handle(engine, old_resolve)
    assert target.replicas == {"x": 0}


def test_notifications_do_not_count_towards_the_teams_limit(tmp_path: Path) -> None:
    """max_active_per_team bounds throttles and pauses; a firing notify rule holds nothing
    and must not keep a runaway workload from being paused."""
    both = settings(max_active_per_team=1)
    notify = both.rules[0].model_copy(update={"name": "tell", "mode": "notify"})
    notify = notify.model_copy(update={"match": {"action": "notify"}})
    engine_settings = both.model_copy(update={"rules": [notify, *both.rules]})
    target = Replicas(x=3, y=3)
    engine = Engine(engine_settings, {}, Store(tmp_path / "s.db"), {"t": target})
    assert handle(engine, alert("f1", objects="y", action="notify")).result == "ok"
    assert handle(engine, alert("f2", objects="x")).result == "ok"
    assert handle(engine, alert("f3", objects="x", starts=T2)).result == (
        "skipped: max active actions"
    )


def test_the_teams_limit_counts_a_team_however_its_label_is_spelt(tmp_path: Path) -> None:
    """The critical check reads the team label trimmed and lower-cased (as teams are
    configured); the limit counted `Search ` apart from `search`, so a second spelling
    got a second slot (a Kubernetes or command target takes any team label)."""
    target = Replicas(x=3, y=3)
    engine = Engine(settings(max_active_per_team=1), {}, Store(tmp_path / "s.db"), {"t": target})
    assert handle(engine, alert("f1", objects="y")).result == "ok"
    assert handle(engine, alert("f2", objects="x", team="Search ")).result == (
        "skipped: max active actions"
    )
    assert target.replicas == {"x": 3, "y": 0}


def test_a_firing_seen_in_dry_run_is_acted_on_once_dry_run_is_off(tmp_path: Path) -> None:
    """The rollout: dry-run first, then live. An alert still firing (repeats keep its
    startsAt) is acted on at its next repeat, and undone on resolve."""
    target = Replicas(x=3)
    store = Store(tmp_path / "s.db")
    rehearsal = Engine(settings(dry_run=True), {}, store, {"t": target})
    assert handle(rehearsal, alert("f1")).result == "dry_run"
    assert handle(rehearsal, alert("f1")).result == "ignored: duplicate"
    live = Engine(settings(), {}, store, {"t": target})
    assert handle(live, alert("f1")).result == "ok"
    assert target.replicas == {"x": 0}
    assert handle(live, alert("f1")).result == "ignored: duplicate"
    assert handle(live, alert("f1", "resolved")).result == "ok"
    assert target.replicas == {"x": 3}


@pytest.mark.parametrize("retryable", [True, False])
def test_refiring_whose_read_fails_keeps_the_original_state(
    tmp_path: Path, retryable: bool
) -> None:
    """The first instance keeps holding the original 3 until the new one's intent is
    recorded: a failed read (500 retried, or 403) must not hand over the paused 0."""
    target = Replicas(x=3)
    engine = Engine(settings(), {}, Store(tmp_path / "s.db"), {"t": target})
    handle(engine, alert("f1"))
    target.fail_read = TargetError("GET x: HTTP 500" if retryable else "GET x: HTTP 403", retryable)
    failed = handle(engine, alert("f1", starts=T2))
    assert failed.retry is retryable
    if retryable:  # Alertmanager redelivers; the read now sees the paused 0
        assert handle(engine, alert("f1", starts=T2)).result == "ok"
    handle(engine, alert("f1", "resolved", starts=T2))
    handle(engine, alert("f1", "resolved", starts=T1))
    assert target.replicas == {"x": 3}


def test_an_apply_refused_part_way_still_holds_what_it_changed(tmp_path: Path) -> None:
    """A pauses x, then y is refused (apply_failed). B pauses x too. A resolves first:
    x stays paused for B, and B's resolve restores x's original 3, not the 0 B read."""
    target = Replicas(x=3, y=2)
    target.refuse_write = {"y"}
    engine = Engine(settings(), {}, Store(tmp_path / "s.db"), {"t": target})
    assert handle(engine, alert("a1", objects="x,y")).result == "error"
    assert target.replicas == {"x": 0, "y": 2}
    target.refuse_write = set()
    assert handle(engine, alert("b2", objects="x")).result == "ok"
    handle(engine, alert("a1", "resolved", objects="x,y"))
    assert target.replicas["x"] == 0
    handle(engine, alert("b2", "resolved", objects="x"))
    assert target.replicas == {"x": 3, "y": 2}


@pytest.mark.parametrize("first_resolved", ["a1", "b2"])
def test_an_object_changed_by_hand_is_not_restored_to_the_state_before_the_hand(
    tmp_path: Path, first_resolved: str
) -> None:
    """A pauses x (3 -> 0); on-call scales x to 5 by hand, overriding the pause; B pauses
    x again. B took over A's original 3, so once both resolved x was at 3: the capacity
    on-call restored was lost. B keeps the 5 it read, and A lets x go."""
    target = Replicas(x=3)
    store = Store(tmp_path / "s.db")
    engine = Engine(settings(), {}, store, {"t": target})
    assert handle(engine, alert("a1")).result == "ok"
    target.replicas["x"] = 5
    assert handle(engine, alert("b2", starts=T2)).result == "ok"
    assert target.replicas == {"x": 0}
    first = store.get("a1", "2024-05-01T10:00:00+00:00")
    assert first is not None and first.state == st.SUPERSEDED
    overridden = [a for a in store.audit() if a.result == "ignored: overridden"]
    assert [(a.fingerprint, a.detail) for a in overridden] == [
        ("a1", "changed by hand since its apply, now held by b2 2024-05-01T10:20:00+00:00: x")
    ]
    starts = {"a1": T1, "b2": T2}
    second_resolved = "b2" if first_resolved == "a1" else "a1"
    handle(engine, alert(first_resolved, "resolved", starts=starts[first_resolved]))
    handle(engine, alert(second_resolved, "resolved", starts=starts[second_resolved]))
    assert target.replicas == {"x": 5}


def test_an_action_lets_go_only_of_the_objects_changed_by_hand(tmp_path: Path) -> None:
    """A pauses x and y; y is scaled to 4 by hand; B pauses x and y. x is still A's pause
    (B takes over its original 2), y is not (B keeps the 4 it read)."""
    target = Replicas(x=2, y=3)
    store = Store(tmp_path / "s.db")
    engine = Engine(settings(), {}, store, {"t": target})
    handle(engine, alert("a1", objects="x,y"))
    target.replicas["y"] = 4
    handle(engine, alert("b2", objects="x,y"))
    first = store.get("a1", "2024-05-01T10:00:00+00:00")
    assert first is not None and first.state == st.APPLIED
    assert first.undo_data == {"replicas": {"x": 2}}
    handle(engine, alert("b2", "resolved", objects="x,y"))
    assert target.replicas == {"x": 0, "y": 4}  # x still held by A
    handle(engine, alert("a1", "resolved", objects="x,y"))
    assert target.replicas == {"x": 2, "y": 4}


def test_an_apply_left_to_the_retry_loop_keeps_its_hold_on_an_object_it_did_not_reach(
    tmp_path: Path,
) -> None:
    """A's apply failed retryably before it reached x (x still 3, A left applying for the
    retry loop); B pauses x and reads 3. That 3 is A's original, not a state set by hand:
    A keeps its hold, so B's resolve leaves x paused while A's alert still fires."""
    target = Replicas(x=3)
    store = Store(tmp_path / "s.db")
    engine = Engine(settings(), {}, store, {"t": target})
    target.fail_apply = TargetError("PATCH x: HTTP 503", retryable=True)
    assert handle(engine, alert("a1")).later
    assert handle(engine, alert("b2", starts=T2)).result == "ok"
    first = store.get("a1", "2024-05-01T10:00:00+00:00")
    assert first is not None and first.state == st.APPLYING
    assert not [a for a in store.audit() if a.result == "ignored: overridden"]
    handle(engine, alert("b2", "resolved", starts=T2))
    assert target.replicas == {"x": 0}  # A's alert still fires
    handle(engine, alert("a1", "resolved"))
    assert target.replicas == {"x": 3}


def test_a_resolve_cannot_restore_an_object_between_another_alerts_read_and_record(
    tmp_path: Path,
) -> None:
    """B reads x (0, paused by A) and its answer is slow; A resolves meanwhile. Either
    A leaves x to B, or B reads x after A restored it: never B recording 0 as x's
    original. A's resolve waits for B's intent to be recorded."""
    target = Replicas(x=3)
    engine = Engine(settings(), {}, Store(tmp_path / "s.db"), {"t": target})
    handle(engine, alert("a1"))

    async def race() -> None:
        target.hold_read = asyncio.Event()
        target.reading = asyncio.Event()
        fire_b = asyncio.create_task(engine.handle(alert("b2")))
        await target.reading.wait()  # B has read x = 0
        resolve_a = asyncio.create_task(engine.handle(alert("a1", "resolved")))
        done, _ = await asyncio.wait([resolve_a], timeout=0.5)
        assert not done, "A's resolve ran while B's read was not yet recorded"
        target.hold_read.set()
        await asyncio.gather(fire_b, resolve_a)

    asyncio.run(race())
    assert target.replicas == {"x": 0}  # still paused for B
    target.hold_read = None
    handle(engine, alert("b2", "resolved"))
    assert target.replicas == {"x": 3}


def test_refiring_on_another_target_leaves_the_first_action_to_the_resolve(
    tmp_path: Path,
) -> None:
    """The rule was moved to another target between two firings (config changed, actuator
    restarted): the new action cannot take over the old one's objects, so both are
    undone when the series resolves."""
    old, new = Replicas(x=3), Replicas(x=5)
    targets = {
        "t": {"type": "command", "apply": ["true"]},
        "t2": {"type": "command", "apply": ["true"]},
    }
    moved = [{"name": "pause", "match": {"action": "pause"}, "target": "t2", "mode": "pause"}]
    db = tmp_path / "s.db"
    handle(Engine(settings(targets=targets), {}, Store(db), {"t": old, "t2": new}), alert("f1"))
    engine = Engine(settings(targets=targets, rules=moved), {}, Store(db), {"t": old, "t2": new})
    assert handle(engine, alert("f1", starts=T2)).result == "ok"
    assert (old.replicas, new.replicas) == ({"x": 0}, {"x": 0})
    handle(engine, alert("f1", "resolved", starts=T2))
    assert (old.replicas, new.replicas) == ({"x": 3}, {"x": 5})


def _fail_undo(engine: Engine, target: Replicas, a: Alert) -> None:
    """Resolve `a` with its undo refused (403: not retryable, e.g. an expired token)."""
    target.fail_undo = TargetError("PATCH x: HTTP 403", retryable=False)
    resolved = handle(engine, a)
    assert (resolved.result, resolved.retry) == ("error", True)
    assert target.replicas["x"] == 0


@pytest.mark.parametrize("second", ["another alert", "the same series, new startsAt"])
def test_a_failed_undo_hands_the_original_to_the_next_action_on_the_object(
    tmp_path: Path, second: str
) -> None:
    """A's undo was refused, so x stays at 0; B pauses x before A's resolve is retried
    (Alertmanager may never resend it). B must restore x's original 3, not the 0 it read,
    and A, taken over, has nothing left to undo."""
    target = Replicas(x=3)
    store = Store(tmp_path / "s.db")
    engine = Engine(settings(), {}, store, {"t": target})
    handle(engine, alert("a1"))
    _fail_undo(engine, target, alert("a1", "resolved"))
    b = alert("b2", starts=T2) if second == "another alert" else alert("a1", starts=T2)
    assert handle(engine, b).result == "ok"
    first = store.get("a1", "2024-05-01T10:00:00+00:00")
    assert first is not None and first.state == st.SUPERSEDED
    assert store.active_counts() == {("t", "search"): 1}
    handle(engine, alert(b.fingerprint, "resolved", starts=T2))
    assert target.replicas == {"x": 3}
    again = handle(engine, alert("a1", "resolved"))  # A's resolve, retried at last
    assert again.retry is False and target.replicas == {"x": 3}


def test_an_action_whose_undo_failed_is_in_force_but_holds_no_slot(tmp_path: Path) -> None:
    """x is still paused: the in-force count shows it. Its alert has ended, so it does
    not take the team's slot: a row whose undo can never succeed (target removed from
    the config) would keep the team from ever being acted on again."""
    target = Replicas(x=3, y=2)
    store = Store(tmp_path / "s.db")
    engine = Engine(settings(max_active_per_team=1), {}, store, {"t": target})
    handle(engine, alert("a1"))
    _fail_undo(engine, target, alert("a1", "resolved"))
    assert store.active_counts() == {("t", "search"): 1}
    assert handle(engine, alert("b2", objects="y")).result == "ok"
    assert store.active_counts() == {("t", "search"): 2}
    assert handle(engine, alert("a1", "resolved")).retry is False
    assert store.active_counts() == {("t", "search"): 1}


class Clock:
    """Engine and store time, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _timed(tmp_path: Path, target: Replicas, **extra: Any) -> tuple[Engine, Store, Clock]:
    clock = Clock()
    store = Store(tmp_path / "s.db", clock=clock)
    return Engine(settings(**extra), {}, store, {"t": target}, clock=clock), store, clock


def test_an_alert_that_fires_again_after_its_resolve_is_acted_on_again(tmp_path: Path) -> None:
    """Prometheus could not reach Alertmanager past the alert's endsAt, so Alertmanager
    resolved it (x restored); once Prometheus gets through, the same alert (same startsAt)
    fires again, a group_interval or more later. It must be paused again, and undone on
    its next resolve. A copy of the firing that comes right after the resolve (sent
    before it: queued behind it, or from an HA peer) is not the alert firing again."""
    target = Replicas(x=3)
    engine, store, clock = _timed(tmp_path, target)
    handle(engine, alert("f1"))
    handle(engine, alert("f1", "resolved"))
    assert target.replicas == {"x": 3}
    clock.now += REFIRE_GRACE_S - 1
    assert handle(engine, alert("f1")).result == "ignored: already resolved"
    assert target.replicas == {"x": 3}
    clock.now += 31
    assert handle(engine, alert("f1")).result == "ok"
    assert target.replicas == {"x": 0}
    pending = [a for a in store.audit() if a.result == "pending"]
    assert pending[-1].detail == "fired again after its resolve"
    assert handle(engine, alert("f1")).result == "ignored: duplicate"  # a repeat
    handle(engine, alert("f1", "resolved"))
    assert target.replicas == {"x": 3}


def test_a_skipped_firing_that_fires_again_after_its_resolve_is_decided_again(
    tmp_path: Path,
) -> None:
    """f2 was skipped (the team's one slot taken by f1); Prometheus then fell silent past
    both alerts' endsAt, so Alertmanager resolved them, and fired them again (same
    startsAt) once Prometheus got through. f2's slot is free now: it must be paused, not
    ignored for as long as it fires ("resolved before firing" at every repeat)."""
    target = Replicas(x=3, y=3)
    engine, store, clock = _timed(tmp_path, target, max_active_per_team=1)
    assert handle(engine, alert("f1", objects="x")).result == "ok"
    assert handle(engine, alert("f2", objects="y")).result == "skipped: max active actions"
    assert handle(engine, alert("f2", "resolved", objects="y")).result == "nothing to undo"
    handle(engine, alert("f1", "resolved", objects="x"))
    clock.now += REFIRE_GRACE_S - 1  # a copy sent before the resolve: still ignored
    assert handle(engine, alert("f2", objects="y")).result == "ignored: already resolved"
    clock.now += 120
    assert handle(engine, alert("f2", objects="y")).result == "ok"
    assert target.replicas == {"x": 3, "y": 0}
    refired = store.get("f2", "2024-05-01T10:00:00+00:00")
    assert refired is not None and refired.created_at == clock.now  # cool-downs count from it
    pending = [a for a in store.audit() if a.result == "pending"]
    assert pending[-1].detail == "fired again after its resolve"
    assert handle(engine, alert("f2", "resolved", objects="y")).result == "ok"
    assert target.replicas == {"x": 3, "y": 3}


def test_a_dry_run_firing_that_fires_again_after_its_resolve_is_acted_on_once_live(
    tmp_path: Path,
) -> None:
    """The rollout (dry-run, then live) with a resolve between: the re-firing after the
    switch to live is acted on, as a repeat without the resolve would be."""
    target = Replicas(x=3)
    engine, _, clock = _timed(tmp_path, target, dry_run=True)
    assert handle(engine, alert("f1")).result == "dry_run"
    handle(engine, alert("f1", "resolved"))
    engine.settings = engine.settings.model_copy(update={"dry_run": False})
    clock.now += 120
    assert handle(engine, alert("f1")).result == "ok"
    assert target.replicas == {"x": 0}


def test_a_firing_after_its_resolve_with_no_decision_is_ignored_within_the_grace(
    tmp_path: Path,
) -> None:
    """The resolve came first (no row: a tombstone); a copy of the firing right after it
    is ignored, and one after the grace (the alert firing again) is acted on."""
    target = Replicas(x=3)
    engine, _, clock = _timed(tmp_path, target)
    assert handle(engine, alert("f1", "resolved")).result == "ignored: resolved before firing"
    assert handle(engine, alert("f1")).result == "ignored: resolved before firing"
    assert target.replicas == {"x": 3}
    clock.now += REFIRE_GRACE_S
    assert handle(engine, alert("f1")).result == "ok"
    assert target.replicas == {"x": 0}


def test_a_refiring_held_back_keeps_the_record_cool_downs_count_from(tmp_path: Path) -> None:
    """The re-firing is skipped by the cool-down: the undone row stays as it was, so the
    cool-down still holds back the next alert of the same rule and workload."""
    target = Replicas(x=3)
    engine, store, clock = _timed(tmp_path, target, cooldown="1h")
    handle(engine, alert("f1"))
    handle(engine, alert("f1", "resolved"))
    clock.now += 60
    assert handle(engine, alert("f1")).result == "skipped: cooldown"
    first = store.get("f1", "2024-05-01T10:00:00+00:00")
    assert first is not None and first.state == st.UNDONE
    assert store.last_action_time("pause", first.scope or "") == 1_000_000.0
    clock.now += 60
    assert handle(engine, alert("g2", starts=T2)).result == "skipped: cooldown"
    assert target.replicas == {"x": 3}
    clock.now += 3600
    assert handle(engine, alert("f1")).result == "ok"  # the next repeat, cool-down over


def test_a_refiring_of_the_instance_that_took_over_with_an_earlier_start(
    tmp_path: Path,
) -> None:
    """HA Prometheus pair: T2 was notified first, then T1 (earlier startsAt) took it over.
    T1 resolves on its endsAt and fires again: it is the series' newest instance, though
    T2's startsAt is later."""
    target = Replicas(x=3)
    engine, _, clock = _timed(tmp_path, target)
    handle(engine, alert("f1", starts=T2))
    clock.now += 60
    assert handle(engine, alert("f1", starts=T1)).result == "ok"
    handle(engine, alert("f1", "resolved", starts=T1))
    assert target.replicas == {"x": 3}
    clock.now += 60
    assert handle(engine, alert("f1", starts=T1)).result == "ok"
    assert target.replicas == {"x": 0}


def test_a_stale_firing_of_an_instance_older_than_the_newest_is_ignored(tmp_path: Path) -> None:
    """T1 was undone by the resolve of the newer T2 (held back by the cool-down); a late
    copy of T1's firing must not pause x again: nothing would ever resolve it."""
    target = Replicas(x=3)
    engine, _, clock = _timed(tmp_path, target, cooldown="10m")
    handle(engine, alert("f1"))
    clock.now += 60
    handle(engine, alert("f1", starts=T2))
    handle(engine, alert("f1", "resolved", starts=T2))
    assert target.replicas == {"x": 3}
    clock.now += 3600  # past the grace and the cool-down: only its age holds it back
    assert handle(engine, alert("f1")).result == "ignored: already resolved"
    assert target.replicas == {"x": 3}


def test_two_targets_that_reach_the_same_object_share_its_hold(tmp_path: Path) -> None:
    """Two targets on one API server (one naming the Deployment, one selecting it): A
    pauses x through t, B through t2. A's resolve must leave x paused for B, and B's
    restore the original 3. A target reaching other objects under the same key (another
    cluster) is not held back by them."""
    t = Replicas(x=3)
    t2, elsewhere = Replicas(shares=t), Replicas(x=5)
    rules = [
        {"name": n, "match": {"action": n}, "target": n, "mode": "pause"} for n in ("t", "t2", "t3")
    ]
    targets = {n: {"type": "command", "apply": ["true"]} for n in ("t", "t2", "t3")}
    engine = Engine(
        settings(rules=rules, targets=targets),
        {},
        Store(tmp_path / "s.db"),
        {"t": t, "t2": t2, "t3": elsewhere},
    )
    handle(engine, alert("a1", action="t"))
    handle(engine, alert("b2", action="t2"))
    handle(engine, alert("c3", action="t3"))
    handle(engine, alert("a1", "resolved", action="t"))
    assert t.replicas == {"x": 0}
    handle(engine, alert("c3", "resolved", action="t3"))
    assert elsewhere.replicas == {"x": 5}
    handle(engine, alert("b2", "resolved", action="t2"))
    assert t.replicas == {"x": 3}


@pytest.mark.parametrize("starts", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_start_time_that_has_no_utc_form_is_a_payload_error(starts: str) -> None:
    """It passed validation, then failed converting to UTC: a 500 that Alertmanager
    retried for ever. Now it is named like any other bad field (the app answers 422)."""
    alerts = [
        {"status": "firing", "labels": {"team": "search"}, "startsAt": starts, "fingerprint": "f1"}
    ]
    body = json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()
    with pytest.raises(PayloadError, match=r"alerts\.0\.startsAt: .*out of range"):
        parse_payload(body)
