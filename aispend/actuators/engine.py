"""The decision engine: one alert instance in, one durable decision out.

State machine per (fingerprint, startsAt) in the store:

    firing,   no row            -> policy: skipped | dry_run | applying
                                   applying -> applied | failed (prepare refused)
                                            | apply_failed (apply refused part-way)
    firing,   skipped           -> policy again (a cool-down or the team's limit may
                                   have passed); skipped again leaves the row as it is
    firing,   dry_run           -> policy again once its rule is no longer dry-run (the
                                   rollout: dry-run first, then live for what still fires)
    firing,   applying          -> resume the interrupted apply (same undo data), unless
                                   dry-run is on now or the team may not be acted on
    (no alert), applying        -> the same resume, by the actuator's own retry loop
                                   (retry_applies), for an apply that failed retryably
                                   and was answered 2xx (also after a restart); one a
                                   crash interrupted waits for the firing's redelivery
    firing,   undone            -> policy again if it is the series' newest instance and
                                   was undone REFIRE_GRACE_S ago or more: Alertmanager
                                   resolves an alert that Prometheus has not re-sent by its
                                   endsAt (a slow Prometheus restart, a partition), then
                                   fires it again with the same startsAt; applied again, or
                                   only audited (the undone row stays, for cool-downs). An
                                   older instance's firing, or one right after the undo, is
                                   a stale copy, ignored
    firing,   resolved          -> as undone (nothing was done: skipped, dry-run or
                                   refused, or its resolve came first; the policy may
                                   allow an action now); a new decision replaces the row
    firing,   anything else     -> ignored (duplicate)
    resolved, applying/applied/apply_failed/undo_failed -> undo -> undone | undo_failed
                                   (a failed undo is answered 503: Alertmanager redelivers
                                   the resolve until the undo succeeds. An `applying`
                                   row whose undo fails, even retryably, becomes
                                   undo_failed: the resolve has come, so neither the
                                   retry loop nor a late firing may apply it again)
    resolved, no row            -> resolved (so a late firing is ignored)
    resolved, other             -> resolved, nothing to undo / duplicate

A resolve also undoes the series' other instances (same fingerprint) that began before
it ended (its endsAt) and still hold their action (or failed to undo it): when an alert
flaps, Alertmanager replaces the old instance by the new one and never sends the old
one's resolve; with an HA Prometheus pair, a replica's earlier startsAt can reach
Alertmanager after the first notification, so the resolve carries an earlier startsAt
than the firing did.
A newer firing that is applied takes the older one's action over (`superseded`,
recorded with the new intent, once the target has been read); one that is skipped,
dry-run or refused leaves the older action in place until the series resolves.

The intent (`applying`, with what undo needs) is committed before the target is
called, and the outcome after, so a crash in between is resumed on redelivery. Calls for one
fingerprint are serialised by a lock (the webhook path and the retry loop alike);
different alerts proceed concurrently.

Retries. A retryable error in prepare (nothing recorded, nothing changed) asks
Alertmanager for a redelivery (503). A retryable error in apply does not: the intent is
recorded and the target may be changed part-way (one gateway replica of two), so the
firing is answered 2xx (`error: will retry`, `Outcome.later`) and the actuator retries
the apply itself (`retry_applies`, with a bounded backoff) until it succeeds, fails for
good (apply_failed) or the alert resolves. Alertmanager only sends a resolve to a
receiver that got the firing: had the firing been answered 503 until the alert
resolved, nothing would ever undo what the apply changed. The loop retries only rows
whose firing got that answer (audited RETRYING), after a restart too: a row a crash
interrupted before any answer is resumed by Alertmanager's redelivery of its firing,
never by the loop, since if its alert resolved meanwhile no resolve will come to undo
it. A failed undo of any other state asks for a redelivery (503), and a retryable one
leaves the state as it was.

Targets that change shared objects (`HoldsObjects`: a Deployment, an APIM
subscription) may be acted on by several alerts at once. A later action takes over
the object's original state from the earlier one, and undo leaves an object alone
while another action still holds it: the last one to resolve restores it. An object
the later action reads as not paused was changed by hand since the earlier apply (scaled
up by on-call): the earlier action lets it go, and the later one keeps what it read. An action
refused part-way (`apply_failed`) still holds what it changed. An action whose undo
failed (`undo_failed`) left its objects changed: a later action on them takes over its
original state and supersedes it, so the later one's undo restores them. Reading an object and
recording who holds it (prepare -> intent; release -> undo -> outcome) is serialised per
target, so a resolve cannot restore an object between another alert's read and record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aispend.actuators import store as st
from aispend.actuators.payload import Alert
from aispend.actuators.policy import decide, dry_run_of, forbidden, scope_of, team_of
from aispend.actuators.settings import ActionsSettings, Rule
from aispend.actuators.store import ActionRow, AuditRecord, Store
from aispend.actuators.targets.base import Action, HoldsObjects, Target, TargetError
from aispend.parsing import to_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    fingerprint: str
    decision: str
    result: str
    retry: bool = False
    """Ask Alertmanager to redeliver (503)."""
    later: bool = False
    """An apply left to the actuator's retry loop (answered 2xx: 202)."""


ActionCounter = Callable[[str, str, str], None]
"""(target, action, result) -> count one decision."""


RETRY_FIRST_S = 5.0
RETRY_MOST_S = 60.0
"""The retry loop's backoff: first wait, doubled after each pass that left an apply
pending, up to the most."""

RETRYING = "error: will retry"
"""The result of an apply that failed retryably and that the actuator retries itself."""


REFIRE_GRACE_S = 20.0
"""How long after an undo a firing of the same instance is taken for a copy sent before
the resolve, not the alert firing again: an HA peer sends 15 s after the first
Alertmanager; our Alertmanager route's group_interval is 30 s."""


@dataclass
class _KeyLocks:
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self.locks.setdefault(key, asyncio.Lock())
        self.users[key] = self.users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self.users[key] -= 1
            if self.users[key] == 0:
                del self.users[key], self.locks[key]


class Engine:
    def __init__(
        self,
        settings: ActionsSettings,
        criticality: Mapping[str, str],
        store: Store,
        targets: Mapping[str, Target],
        count: ActionCounter | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.criticality = dict(criticality)
        self.store = store
        self.targets = dict(targets)
        self._count = count or (lambda target, action, result: None)
        self._clock = clock
        self._locks = _KeyLocks()
        self._team_locks = _KeyLocks()
        self._object_locks = _KeyLocks()
        self._retry_wanted = asyncio.Event()
        # The firing of each apply left to the retry loop (for its annotations: the
        # target's reason); after a restart the row's labels stand in for it.
        self._waiting: dict[tuple[str, str], Alert] = {}

    async def handle(self, alert: Alert) -> Outcome:
        async with self._locks.hold(alert.fingerprint):
            if alert.status == "firing":
                return await self._firing(alert)
            return await self._resolved(alert)

    # ------------------------------------------------------------ firing

    async def _firing(self, alert: Alert) -> Outcome:
        fp, starts = alert.key()
        row = self.store.get(fp, starts)
        if row is not None and not self._decide_again(row):
            if row.state == st.APPLYING and row.rule is not None:
                rule = self.settings.rule(row.rule)
                held = self._held_back(alert, rule)
                if held is not None:  # stays applying: undone on resolve
                    return self._note(alert, row, "ignore", f"ignored: not resumed: {held}")
                return await self._apply(alert, row, rule, how="resumed an interrupted apply")
            why = "duplicate"
            if row.state in (st.RESOLVED, st.UNDONE, st.UNDO_FAILED):
                before = row.state == st.RESOLVED and row.rule is None  # no decision made
                why = "resolved before firing" if before else "already resolved"
            return self._note(alert, row, "ignore", f"ignored: {why}")

        # Deciding and recording the intent are serialised per team, so that two
        # alerts of one team cannot both pass max_active_per_team.
        async with self._team_locks.hold(team_of(alert.labels)):
            begun = await self._begin(alert, fp, starts, previous=row)
        if isinstance(begun, Outcome):
            return begun
        new, rule = begun
        return await self._apply(alert, new, rule)

    def _decide_again(self, row: ActionRow) -> bool:
        """Whether a repeated firing goes through the policy again."""
        if row.state == st.SKIPPED:
            return True
        if row.state in (st.UNDONE, st.RESOLVED):
            # Fired again after its own resolve: Alertmanager resolves an alert that
            # Prometheus has not re-sent by its endsAt, and fires it again with the same
            # startsAt once Prometheus gets through (one group_interval or more later).
            # A copy sent before the resolve (queued behind it, or from an HA peer) comes
            # within REFIRE_GRACE_S; a firing of an instance other than the series'
            # newest is a stale redelivery. RESOLVED: nothing was done (skipped, dry-run,
            # refused, or its resolve came first); the policy may now allow an action.
            if self._clock() - row.updated_at < REFIRE_GRACE_S:
                return False
            return row.starts_at == self.store.newest_start(row.fingerprint)
        rule = self.settings.rule(row.rule or "")
        return row.state == st.DRY_RUN and rule is not None and not dry_run_of(rule, self.settings)

    def _held_back(self, alert: Alert, rule: Rule | None) -> str | None:
        """Why an interrupted apply must not be resumed now (None: resume it)."""
        if rule is None:
            return None  # _apply records that the rule is gone
        never = forbidden(rule, alert.labels, self.criticality)
        if never is not None:
            return never
        return "dry-run" if dry_run_of(rule, self.settings) else None

    async def _begin(
        self, alert: Alert, fp: str, starts: str, previous: ActionRow | None
    ) -> Outcome | tuple[ActionRow, Rule]:
        """Policy, then either a final decision or the recorded intent to apply.
        `previous`: this firing's row when it was skipped (or dry-run) before."""
        decision = decide(
            alert.labels,
            self.settings,
            self.criticality,
            self.store.count_active,
            self.store.last_action_time,
            self._clock(),
        )
        rule = decision.rule
        reopened = previous is not None and previous.state == st.UNDONE
        refired = previous is not None and previous.state in (st.UNDONE, st.RESOLVED)
        again = "fired again after its resolve" if refired else ""
        new = ActionRow(
            fingerprint=fp,
            starts_at=starts,
            state=st.SKIPPED,
            labels=dict(alert.labels),
            rule=rule.name if rule else None,
            target=rule.target if rule else None,
            mode=rule.mode if rule else None,
            dry_run=decision.dry_run if rule else None,
            team=alert.labels.get("team"),
            scope=scope_of(alert.labels),
        )
        # A re-fired action that is not applied again leaves its row as it was (undone):
        # the row is the record of the action that cool-downs count from.
        recorded = None if reopened else new
        if decision.skip is not None:
            if previous is not None and previous.state == st.SKIPPED:
                return self._note(
                    alert, previous, "ignore", f"ignored: still skipped: {decision.skip}"
                )
            return self._commit(
                alert, recorded, "skip", f"skipped: {decision.skip}",
                detail=again, row_for_audit=new,
            )  # fmt: skip
        assert rule is not None
        if decision.dry_run:
            new.state = st.DRY_RUN
            return self._commit(
                alert, recorded, "apply", "dry_run",
                detail="; ".join(filter(None, [again, f"would {rule.mode} via {rule.target}"])),
                row_for_audit=new,
            )  # fmt: skip
        target = self.targets.get(rule.target)
        if target is None:  # settings validation makes this unreachable; be safe anyway
            new.state = st.FAILED
            return self._commit(
                alert, recorded, "apply", "error", error="target not configured",
                row_for_audit=new,
            )  # fmt: skip

        async with self._objects_lock(target):
            try:
                undo_data = await target.prepare(self._action(alert, rule))
            except TargetError as exc:
                new.state = st.FAILED  # recorded only if not retryable
                record = not exc.retryable and not reopened
                return self._target_failed(alert, new, "apply", exc, record_row=record)
            # A newer firing of the same series takes over the older one's action on this
            # target (one on another target is undone when the series resolves); the
            # older rows hold their objects until this intent is committed with them.
            superseded = [
                old for old in self.store.holding_with_fingerprint(fp) if old.target == rule.target
            ]
            in_force = self._in_force_on_objects(target)
            # Objects changed by hand since an earlier action's apply are that action's
            # no more: it lets them go, and this one keeps the state it read.
            overridden = self._overridden(target, undo_data, in_force)
            in_force = [row for row in in_force if row.state != st.SUPERSEDED]
            new.undo_data = self._take_over(target, undo_data, in_force)
            # An action whose undo failed, on objects this one now holds too, hands its
            # original state over: this action restores it when it is undone.
            taken = self._failed_undos_taken_over(target, new, in_force)
            new.state = st.APPLYING
            for old in (*superseded, *taken):
                old.state = st.SUPERSEDED
            released = [row for row, _ in overridden]
            changed = {(r.fingerprint, r.starts_at): r for r in (*released, *superseded, *taken)}
            self.store.record(
                new,
                *[
                    self._audit(alert, old, "ignore", "ignored: superseded", detail=f"by {starts}")
                    for old in superseded
                ],
                *[
                    self._audit(
                        alert,
                        old,
                        "ignore",
                        "ignored: superseded",
                        detail=f"its undo failed; {fp} {starts} now restores its objects",
                    )
                    for old in taken
                ],
                *[
                    self._audit(
                        alert,
                        old,
                        "ignore",
                        "ignored: overridden",
                        detail=f"changed by hand since its apply, now held by {fp} {starts}: "
                        + ", ".join(keys),
                    )
                    for old, keys in overridden
                ],
                self._audit(alert, new, "apply", "pending", detail=again),
                also=list(changed.values()),
            )
        return new, rule

    async def _apply(
        self, alert: Alert, row: ActionRow, rule: Rule | None, how: str = ""
    ) -> Outcome:
        """Carry out the recorded intent `row` (state applying). `how`: why it runs again
        (a redelivery, the retry loop), for the audit record."""
        key = (row.fingerprint, row.starts_at)
        target = self.targets.get(row.target or "")
        if rule is None or target is None:
            self._waiting.pop(key, None)
            # The intent is recorded, so the target may have been changed part-way: with
            # the target still there, the row keeps holding what it changed and is undone
            # on resolve (apply_failed); `failed` would leave it in force for good.
            row.state = st.FAILED if target is None else st.APPLY_FAILED
            return self._commit(
                alert, row, "apply", "error", error="rule or target no longer configured"
            )
        try:
            detail = await target.apply(self._action(alert, rule), row.undo_data)
        except TargetError as exc:
            if exc.retryable:
                # The row stays applying and the retry loop tries again; Alertmanager
                # gets a 2xx, so that it sends the resolve (see the module docstring).
                self._waiting[key] = alert
                self._retry_wanted.set()
                return self._target_failed(
                    alert, row, "apply", exc, record_row=False, later=True, detail=how
                )
            self._waiting.pop(key, None)
            row.state = st.APPLY_FAILED  # it may have changed some objects (replicas) first
            return self._target_failed(alert, row, "apply", exc, record_row=True, detail=how)
        self._waiting.pop(key, None)
        row.state = st.APPLIED
        if how:
            detail += f" ({how})"
        return self._commit(alert, row, "apply", "ok", detail=detail)

    # ------------------------------------------------------------ retry loop

    async def retry_applies(self, first: float = RETRY_FIRST_S, most: float = RETRY_MOST_S) -> None:
        """Retry the applies left to it until cancelled (`_left_to_retry`: failed
        retryably and answered 2xx; at start-up, those of the last run). Waits `first`
        seconds before a pass, doubled (up to `most`) while a pass leaves one pending;
        sleeps while there is none."""
        delay, pending = first, True  # at start-up: whatever the last run left to it
        while True:
            if not pending:
                await self._retry_wanted.wait()  # set by an apply that failed retryably
                delay = first
            await asyncio.sleep(delay)
            self._retry_wanted.clear()  # a failure from here on is seen by this pass or sets it
            try:
                pending = await self.retry_pending()
            except Exception:  # the store failed (disk full...): keep trying
                log.exception("cannot retry the pending applies; trying again later")
                pending = True
            delay = min(delay * 2, most) if pending else first

    async def retry_pending(self) -> bool:
        """One pass of the retry loop over the rows now `applying`, oldest first.
        Returns whether any is still applying afterwards."""
        keys = self._left_to_retry()
        self._waiting = {key: a for key, a in self._waiting.items() if key in keys}
        for fp, starts in keys:
            outcome = await self._retry_apply(fp, starts)
            if outcome is not None:
                log.info("retried apply %s %s: %s", fp, starts, outcome.result)
        return bool(self._left_to_retry())

    def _left_to_retry(self) -> list[tuple[str, str]]:
        """The applying rows whose firing was answered 2xx with RETRYING (their latest
        apply audit): Alertmanager will send their resolve. An applying row without that
        answer (a crash mid-apply, a notification answered 503, a 503 from an older
        version, a re-fire's new life) is left to Alertmanager's redelivery of its
        firing: if its alert resolved meanwhile, no resolve will ever come to undo it."""
        return self.store.keys_in_state(st.APPLYING, audited=RETRYING)

    async def hand_back(self, alert: Alert) -> None:
        """An apply answered `later` whose notification is answered 503 after all (another
        alert of it needs a redelivery): Alertmanager got no 2xx for this firing either,
        so the loop must leave it to the redelivery (audited `error: retry`)."""
        async with self._locks.hold(alert.fingerprint):
            row = self.store.get(*alert.key())
            if row is None or row.state != st.APPLYING:
                return
            self._waiting.pop(alert.key(), None)
            detail = "the notification was answered 503: left to Alertmanager's redelivery"
            self.store.record(None, self._audit(alert, row, "apply", "error: retry", detail))

    async def _retry_apply(self, fp: str, starts: str) -> Outcome | None:
        """Resume one interrupted apply, under the same lock as the webhook path. The
        row is checked again under the lock: a redelivery may have applied it, a resolve
        undone it (the resolve wins: an undone or undo_failed row is never applied), or
        the app handed it back since the pass listed it."""
        async with self._locks.hold(fp):
            row = self.store.get(fp, starts)
            if row is None or (fp, starts) not in self._left_to_retry():
                return None
            alert = self._waiting.get((fp, starts)) or _firing_of(row)
            rule = self.settings.rule(row.rule or "")
            if self._held_back(alert, rule) is not None:
                return None  # stays applying, undone on resolve (as on the webhook path)
            return await self._apply(alert, row, rule, how="retried by the actuator")

    # ------------------------------------------------------------ resolved

    async def _resolved(self, alert: Alert) -> Outcome:
        fp, starts = alert.key()
        ended = _ended(alert)
        earlier = [
            await self._undo(alert, old)
            for old in self.store.to_undo_with_fingerprint(fp)
            if old.starts_at != starts and _instant(old.starts_at) < ended
        ]
        outcome = await self._resolved_instance(alert, fp, starts)
        if any(o.retry for o in earlier) and not outcome.retry:
            return replace(outcome, retry=True)
        return outcome

    async def _resolved_instance(self, alert: Alert, fp: str, starts: str) -> Outcome:
        row = self.store.get(fp, starts)
        if row is None:
            tomb = ActionRow(
                fingerprint=fp,
                starts_at=starts,
                state=st.RESOLVED,
                labels=dict(alert.labels),
                team=alert.labels.get("team"),
                scope=scope_of(alert.labels),
            )
            return self._commit(alert, tomb, "ignore", "ignored: resolved before firing")
        if row.state in st.ACTIVE_STATES or row.state in (st.APPLY_FAILED, st.UNDO_FAILED):
            return await self._undo(alert, row)
        if row.state in (st.SKIPPED, st.DRY_RUN, st.FAILED, st.SUPERSEDED):
            was = row.state
            row.state = st.RESOLVED
            return self._commit(alert, row, "undo", "nothing to undo", detail=f"was {was}")
        return self._note(alert, row, "ignore", "ignored: duplicate")

    async def _undo(self, alert: Alert, row: ActionRow) -> Outcome:
        """Undo `row`'s action. A failure of any kind asks for a redelivery: the workload
        stays throttled or paused until an undo succeeds (once its cause is fixed)."""
        target = self.targets.get(row.target or "")
        rule = self.settings.rule(row.rule or "")
        if target is None:
            row.state = st.UNDO_FAILED
            failed = self._commit(
                alert, row, "undo", "error", error=f"target {row.target!r} no longer configured"
            )
            return replace(failed, retry=True)
        action = self._action(alert, rule, row)
        async with self._objects_lock(target):
            undo_data, kept = self._release(target, row)
            detail = ""
            if undo_data is not None:
                try:
                    detail = await target.undo(action, undo_data)
                except TargetError as exc:
                    # An interrupted apply whose resolve came must not be applied again
                    # (by the retry loop, or a late copy of its firing).
                    changed = not exc.retryable or row.state == st.APPLYING
                    if changed:
                        row.state = st.UNDO_FAILED
                    self._waiting.pop((row.fingerprint, row.starts_at), None)
                    failed = self._target_failed(alert, row, "undo", exc, record_row=changed)
                    return replace(failed, retry=True)
            row.state = st.UNDONE
            return self._commit(
                alert, row, "undo", "ok", detail="; ".join(filter(None, [detail, kept]))
            )

    # ------------------------------------------------------------ shared objects

    def _objects_lock(self, target: Target) -> AbstractAsyncContextManager[None]:
        if isinstance(target, HoldsObjects):
            return self._object_locks.hold(f"{target.type} {target.objects_scope}")
        return nullcontext()

    def _sharing(self, target: HoldsObjects) -> list[str]:
        """The configured targets that reach the same objects as `target` (itself too)."""
        return [
            name
            for name, other in self.targets.items()
            if isinstance(other, HoldsObjects)
            and (other.type, other.objects_scope) == (target.type, target.objects_scope)
        ]

    def _in_force_on_objects(self, target: Target) -> list[ActionRow]:
        """Actions in force through the targets that reach `target`'s objects (none for a
        target that holds no objects), oldest first."""
        if not isinstance(target, HoldsObjects):
            return []
        return self.store.in_force_for_targets(self._sharing(target))

    def _take_over(
        self, target: Target, undo_data: dict[str, Any], in_force: list[ActionRow]
    ) -> dict[str, Any]:
        """Objects another action already holds keep the original state it recorded
        (what prepare just read is that action's change, not the original)."""
        if not isinstance(target, HoldsObjects):
            return undo_data
        held = _holdings(target, in_force)
        mine = target.originals(undo_data)
        taken = {key: held[key][1] for key in mine if key in held}
        return target.with_originals(undo_data, mine | taken) if taken else undo_data

    def _overridden(
        self, target: Target, undo_data: dict[str, Any], in_force: list[ActionRow]
    ) -> list[tuple[ActionRow, list[str]]]:
        """The rows of `in_force` holding objects that prepare read as not `as_applied`
        (scaled up or re-activated by hand since), and those objects' keys. Each row is
        changed in place to let them go (superseded if it holds nothing else), so
        neither its undo nor `_take_over` restores a state from before the hand's. Not
        an `applying` row: its apply may not have reached the object yet (in flight, or
        left to the retry loop), so the state read is still the original."""
        if not isinstance(target, HoldsObjects):
            return []
        read = target.originals(undo_data)
        released: list[tuple[ActionRow, list[str]]] = []
        for row in in_force:
            if row.state == st.APPLYING:
                continue
            held = target.originals(row.undo_data)
            keys = [key for key in held if key in read and not target.as_applied(read[key])]
            if not keys:
                continue
            kept = {key: state for key, state in held.items() if key not in keys}
            if kept:
                row.undo_data = target.with_originals(row.undo_data, kept)
            else:
                row.state = st.SUPERSEDED
            released.append((row, keys))
        return released

    def _failed_undos_taken_over(
        self, target: Target, new: ActionRow, in_force: list[ActionRow]
    ) -> list[ActionRow]:
        """Rows of `in_force` whose undo failed and whose objects are all held by `new`."""
        if not isinstance(target, HoldsObjects):
            return []
        mine = set(target.originals(new.undo_data))
        return [
            row
            for row in in_force
            if row.state == st.UNDO_FAILED
            and (row.fingerprint, row.starts_at) != (new.fingerprint, new.starts_at)
            and set(target.originals(row.undo_data)) <= mine
        ]

    def _release(self, target: Target, row: ActionRow) -> tuple[dict[str, Any] | None, str]:
        """What undo restores now (None: nothing), and which objects it leaves held."""
        if not isinstance(target, HoldsObjects):
            return row.undo_data, ""
        others = [
            other
            for other in self.store.holding_for_targets(self._sharing(target))
            if (other.fingerprint, other.starts_at) != (row.fingerprint, row.starts_at)
        ]
        held = _holdings(target, others)
        mine = target.originals(row.undo_data)
        kept_keys = [key for key in mine if key in held]
        if not kept_keys:
            return row.undo_data, ""
        kept = "left as they are, still held by another alert: " + ", ".join(
            f"{key} ({held[key][0].labels.get('alertname', '?')} {held[key][0].fingerprint})"
            for key in kept_keys
        )
        free = {key: state for key, state in mine.items() if key not in held}
        return (target.with_originals(row.undo_data, free) if free else None), kept

    # ------------------------------------------------------------ helpers

    def _action(self, alert: Alert, rule: Rule | None, row: ActionRow | None = None) -> Action:
        fp, starts = (row.fingerprint, row.starts_at) if row else alert.key()
        return Action(
            fingerprint=fp,
            starts_at=starts,
            labels=dict(row.labels if row else alert.labels),
            annotations=dict(alert.annotations),
            rule=rule.name if rule else (row.rule if row else "") or "",
            mode=rule.mode if rule else (row.mode if row else "") or "",
            requests_per_minute=rule.requests_per_minute if rule else None,
            tokens_per_minute=rule.tokens_per_minute if rule else None,
        )

    def _target_failed(
        self,
        alert: Alert,
        row: ActionRow,
        which: str,
        exc: TargetError,
        record_row: bool,
        later: bool = False,
        detail: str = "",
    ) -> Outcome:
        """Record a target's error. Retryable: a redelivery is asked for (503), or with
        `later` the actuator's retry loop tries again."""
        log.warning(
            "%s %s via %s failed (%s): %s",
            which,
            alert.fingerprint,
            row.target,
            ("the actuator retries it" if later else "will retry")
            if exc.retryable
            else "not retryable",
            exc,
        )
        later = later and exc.retryable
        result = RETRYING if later else "error: retry" if exc.retryable else "error"
        outcome = self._commit(
            alert,
            row if record_row else None,
            which,
            result,
            detail=detail,
            error=str(exc),
            row_for_audit=row,
        )
        return Outcome(
            outcome.fingerprint, which, result, retry=exc.retryable and not later, later=later
        )

    def _note(self, alert: Alert, row: ActionRow, decision: str, result: str) -> Outcome:
        return self._commit(alert, None, decision, result, row_for_audit=row)

    def _commit(
        self,
        alert: Alert,
        row: ActionRow | None,
        decision: str,
        result: str,
        detail: str = "",
        error: str = "",
        row_for_audit: ActionRow | None = None,
    ) -> Outcome:
        about = row or row_for_audit
        assert about is not None
        self.store.record(row, self._audit(alert, about, decision, result, detail, error))
        self._count(about.target or "none", decision, result.split(":")[0])
        return Outcome(alert.fingerprint, decision, result)

    def _audit(
        self,
        alert: Alert,
        row: ActionRow,
        decision: str,
        result: str,
        detail: str = "",
        error: str = "",
    ) -> AuditRecord:
        return AuditRecord(
            fingerprint=row.fingerprint,
            starts_at=row.starts_at,
            alert_status=alert.status,
            labels=dict(alert.labels),
            decision=decision,
            result=result,
            rule=row.rule,
            target=row.target,
            mode=row.mode,
            dry_run=row.dry_run,
            detail=detail,
            error=error,
        )


def _firing_of(row: ActionRow) -> Alert:
    """The firing alert of a row, for a retry with no delivery at hand (after a
    restart): its labels and startsAt; the annotations are not stored."""
    return Alert(
        status="firing",
        labels=dict(row.labels),
        startsAt=datetime.fromisoformat(row.starts_at),
        fingerprint=row.fingerprint,
    )


def _holdings(target: HoldsObjects, rows: list[ActionRow]) -> dict[str, tuple[ActionRow, Any]]:
    """Object key -> the first of `rows` that holds it, and the original state it recorded."""
    held: dict[str, tuple[ActionRow, Any]] = {}
    for row in rows:
        for key, state in target.originals(row.undo_data).items():
            held.setdefault(key, (row, state))
    return held


def _ended(alert: Alert) -> datetime:
    """When a resolved instance ended: its endsAt, or its startsAt when that is later."""
    starts = to_utc(alert.startsAt)
    return starts if alert.endsAt is None else max(starts, to_utc(alert.endsAt))


def _instant(starts_at: str) -> datetime:
    """A stored startsAt (UTC ISO 8601) as a datetime, for ordering instances."""
    return datetime.fromisoformat(starts_at)
