"""The throttle table: rules in SQLite (WAL) so they survive a restart, and the limiter.

Writes are synchronous=FULL: a PUT answered 200 is on disk, so a throttle the actuator
recorded as applied survives a power loss too (NORMAL may lose the last commits).

A rule scopes a team, optionally narrowed to one project or agent and one model. Mode
`block` refuses every matching request; mode `rate` admits `requests_per_minute`
and/or `tokens_per_minute` through token buckets (capacity = the per-minute limit,
refilled continuously). Tokens are only known after the response, so a token budget
is charged afterwards and may go negative; requests are refused until it refills.
Buckets live in memory: a restart starts them full, the rules themselves persist.
A PUT that changes a rule's limits keeps what its buckets owe, capped at the new
capacity (a repeated PUT keeps them as they are).
A refusal's Retry-After is the bucket's refill time, never past the rule's expiry.

The admin API writes through `ThrottleTable.upsert` / `delete`, which update SQLite
first and then the in-memory index the proxy reads (keyed by team, so a request of a
team without rules costs one dict lookup).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Mode = Literal["block", "rate"]

STORE_BUSY_S = 0.1
"""How long a write waits for another process's lock on the database (an operator's
sqlite3 shell, a second gateway given the same file): it runs on the event loop, so
every request would wait with it. Past it the admin call answers 503, nothing changed."""

BLOCK_RETRY_AFTER_S = 60
"""Retry-After for a block rule without an expiry: ask the client to check back."""


@dataclass(frozen=True)
class ThrottleRule:
    id: str
    team: str
    project: str | None
    agent: str | None
    model: str | None
    mode: Mode
    requests_per_minute: int | None
    tokens_per_minute: int | None
    reason: str
    alert_fingerprint: str | None
    expires_at: str | None
    """RFC 3339, UTC."""
    created_at: str
    updated_at: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ThrottleRule:
        return cls(**data)  # type: ignore[arg-type]

    def expiry_epoch(self) -> float | None:
        if self.expires_at is None:
            return None
        return datetime.fromisoformat(self.expires_at).timestamp()

    def same_limits(self, other: ThrottleRule) -> bool:
        return (self.mode, self.requests_per_minute, self.tokens_per_minute) == (
            other.mode,
            other.requests_per_minute,
            other.tokens_per_minute,
        )


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    level: float
    updated: float

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now

    def wait_for(self, need: float) -> float:
        """Seconds until the level reaches `need`."""
        return max(0.0, (need - self.level) / self.per_second)


@dataclass
class _Active:
    rule: ThrottleRule
    expires: float | None
    requests: _Bucket | None = None
    tokens: _Bucket | None = None
    refused: int = field(default=0)


@dataclass(frozen=True)
class Refusal:
    rule: ThrottleRule
    retry_after: int


class ThrottleStore:
    """SQLite persistence of the rules (one row per rule id, JSON body)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(self.path), timeout=STORE_BUSY_S, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS throttles (id TEXT PRIMARY KEY, rule TEXT NOT NULL)"
            )

    def load(self) -> list[ThrottleRule]:
        """Every stored rule; sqlite3.DatabaseError naming the rule that cannot be read
        (a row written by another version, or edited by hand)."""
        with self._lock:
            rows = self._db.execute("SELECT id, rule FROM throttles ORDER BY id").fetchall()
        rules = []
        for rule_id, text in rows:
            try:
                rule = ThrottleRule.from_json(json.loads(text))
                rule.expiry_epoch()  # an unreadable expiry stops the table's start too
            except (TypeError, ValueError, KeyError) as exc:
                raise sqlite3.DatabaseError(f"rule {rule_id!r} cannot be read: {exc}") from exc
            rules.append(rule)
        return rules

    def put(self, rule: ThrottleRule) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO throttles (id, rule) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET rule = excluded.rule",
                (rule.id, json.dumps(rule.to_json(), sort_keys=True)),
            )

    def delete(self, rule_id: str) -> bool:
        with self._lock:
            cursor = self._db.execute("DELETE FROM throttles WHERE id = ?", (rule_id,))
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ThrottleTable:
    """The rules in force and their buckets; `check` runs on every request."""

    def __init__(
        self,
        store: ThrottleStore,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._clock = clock
        self._wall = wall
        self._by_id: dict[str, _Active] = {}
        self._by_team: dict[str, list[_Active]] = {}
        self._agents_by_team: dict[str, frozenset[str]] = {}
        for rule in store.load():
            self._install(rule)

    # ------------------------------------------------------------ admin side

    def rules(self) -> list[ThrottleRule]:
        """The rules in force (expired ones are purged, or left out when the database
        cannot be written now)."""
        try:
            self.purge_expired()
        except sqlite3.Error as exc:
            log.warning("cannot purge expired throttles now: %s", exc)
        now = self._wall()
        return [
            a.rule
            for a in sorted(self._by_id.values(), key=lambda a: a.rule.id)
            if a.expires is None or a.expires > now
        ]

    def get(self, rule_id: str) -> ThrottleRule | None:
        active = self._by_id.get(rule_id)
        return active.rule if active else None

    def upsert(self, rule: ThrottleRule) -> ThrottleRule:
        previous = self._by_id.get(rule.id)
        if previous is not None:
            rule = _replace_created(rule, previous.rule.created_at)
        self._store.put(rule)
        if previous is not None and previous.rule.same_limits(rule):
            previous.rule = rule  # keep the buckets: a repeated PUT must not reset them
            previous.expires = rule.expiry_epoch()
            self._reindex()
        else:
            self._install(rule, previous)
        return rule

    def delete(self, rule_id: str) -> bool:
        deleted = self._store.delete(rule_id)
        if self._by_id.pop(rule_id, None) is not None:
            deleted = True
            self._reindex()
        return deleted

    def purge_expired(self) -> list[str]:
        now = self._wall()
        gone = [i for i, a in self._by_id.items() if a.expires is not None and a.expires <= now]
        for rule_id in gone:
            self._store.delete(rule_id)
            self._by_id.pop(rule_id, None)
        if gone:
            self._reindex()
        return gone

    # ------------------------------------------------------------ request side

    def agents_named(self, team: str) -> frozenset[str]:
        """The agents the team's rules name (attribution keeps their labels)."""
        return self._agents_by_team.get(team, frozenset())

    def check(self, team: str, project: str, agent: str, models: Iterable[str]) -> Refusal | None:
        """None to admit (a request is taken from request buckets), else the refusal."""
        candidates = self._by_team.get(team)
        if not candidates:
            return None
        matching = [a for a in candidates if _matches(a.rule, project, agent, models)]
        if not matching:
            return None
        wall = self._wall()
        now = self._clock()
        matching = [a for a in matching if a.expires is None or a.expires > wall]
        for active in matching:
            refusal = self._refusal(active, now, wall)
            if refusal is not None:
                return refusal
        for active in matching:
            if active.requests is not None:
                active.requests.level -= 1
        return None

    def charge_tokens(
        self, team: str, project: str, agent: str, models: Iterable[str], tokens: int
    ) -> None:
        candidates = self._by_team.get(team)
        if not candidates or tokens <= 0:
            return
        now = self._clock()
        for active in candidates:
            if active.tokens is not None and _matches(active.rule, project, agent, models):
                active.tokens.refill(now)
                active.tokens.level -= tokens

    def _refusal(self, active: _Active, now: float, wall: float) -> Refusal | None:
        rule = active.rule
        if rule.mode == "block":
            if active.expires is not None:
                return Refusal(rule, max(1, math.ceil(active.expires - wall)))
            return Refusal(rule, BLOCK_RETRY_AFTER_S)
        wait = 0.0
        if active.requests is not None:
            active.requests.refill(now)
            if active.requests.level < 1:
                wait = max(wait, active.requests.wait_for(1))
        if active.tokens is not None:
            active.tokens.refill(now)
            if active.tokens.level <= 0:
                wait = max(wait, active.tokens.wait_for(1))
        if wait <= 0:
            return None
        if active.expires is not None:
            wait = min(wait, active.expires - wall)  # the rule is gone then
        return Refusal(rule, max(1, math.ceil(wait)))

    # ------------------------------------------------------------ index

    def _install(self, rule: ThrottleRule, previous: _Active | None = None) -> None:
        """Index `rule` with new buckets; a rule that replaces `previous` under the same
        id keeps what its buckets owe (a tighter limit must not let an over-budget team
        straight back in), capped at the new capacity. A block keeps them as they are
        (refilling with time), for the rate rule that may follow it."""
        now = self._clock()
        active = _Active(rule, rule.expiry_epoch())
        if rule.mode == "block" and previous is not None:
            active.requests, active.tokens = previous.requests, previous.tokens
        elif rule.mode == "rate":
            if rule.requests_per_minute:
                old = previous.requests if previous is not None else None
                active.requests = _new_bucket(rule.requests_per_minute, old, now)
            if rule.tokens_per_minute:
                old = previous.tokens if previous is not None else None
                active.tokens = _new_bucket(rule.tokens_per_minute, old, now)
        self._by_id[rule.id] = active
        self._reindex()

    def _reindex(self) -> None:
        by_team: dict[str, list[_Active]] = {}
        for active in self._by_id.values():
            by_team.setdefault(active.rule.team, []).append(active)
        self._by_team = by_team
        self._agents_by_team = {
            team: frozenset(a.rule.agent for a in actives if a.rule.agent is not None)
            for team, actives in by_team.items()
        }


def _new_bucket(per_minute: int, previous: _Bucket | None, now: float) -> _Bucket:
    """A bucket for `per_minute`: full, or at the level `previous` has now."""
    capacity = float(per_minute)
    level = capacity
    if previous is not None:
        previous.refill(now)
        level = min(capacity, previous.level)
    return _Bucket(capacity, capacity / 60.0, level, now)


def _matches(rule: ThrottleRule, project: str, agent: str, models: Iterable[str]) -> bool:
    if rule.project is not None and rule.project != project:
        return False
    if rule.agent is not None and rule.agent != agent:
        return False
    return rule.model is None or rule.model in models


def _replace_created(rule: ThrottleRule, created_at: str) -> ThrottleRule:
    data = rule.to_json()
    data["created_at"] = created_at
    return ThrottleRule.from_json(data)


def now_rfc3339(wall: Callable[[], float] = time.time) -> str:
    return datetime.fromtimestamp(wall(), tz=UTC).isoformat().replace("+00:00", "Z")
