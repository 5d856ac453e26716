"""Durable state of the actuator in SQLite (WAL, synchronous=FULL).

Two tables:
- `actions`: one row per alert instance, keyed by (fingerprint, startsAt): the
  idempotency key and, for applied actions, what undo needs (`undo_data`).
- `audit`: one append-only record per decision (triggers refuse UPDATE and DELETE).

Every change to `actions` is committed in the same transaction as its audit record,
and the commit is fsynced before the caller answers Alertmanager.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

STORE_BUSY_S = 1.0
"""How long a write waits for another process's lock on the database (an operator's
sqlite3 shell mid-transaction): it runs on the event loop, which serves /healthz and
/metrics too. Past it the webhook answers 500, nothing recorded, and Alertmanager
delivers again."""

# States of an alert instance in `actions`.
APPLYING = "applying"  # intent recorded, target call may or may not have happened
APPLIED = "applied"
UNDONE = "undone"
RESOLVED = "resolved"  # resolved with nothing to undo (or before its firing arrived)
SKIPPED = "skipped"
DRY_RUN = "dry_run"
FAILED = "failed"  # the target refused before changing anything; retrying would not help
APPLY_FAILED = "apply_failed"  # apply was refused part-way: what it did is undone on resolve
SUPERSEDED = "superseded"  # a newer firing of the same fingerprint took over
UNDO_FAILED = "undo_failed"
ACTIVE_STATES = (APPLYING, APPLIED)
# States whose target objects may still be changed by the action: undone on resolve,
# and holders of a shared object's original state. An apply refused part-way may have
# changed some objects already.
HOLDING_STATES = (*ACTIVE_STATES, APPLY_FAILED)
# States whose action may still be in force on its objects: shown as in force (the
# active_actions gauge). An undo that failed left its objects changed.
IN_FORCE_STATES = (*HOLDING_STATES, UNDO_FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    state TEXT NOT NULL,
    rule TEXT,
    target TEXT,
    mode TEXT,
    dry_run INTEGER,
    team TEXT,
    scope TEXT,
    labels TEXT NOT NULL,
    undo_data TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
CREATE INDEX IF NOT EXISTS actions_state ON actions (state);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alert_status TEXT NOT NULL,
    alertname TEXT,
    team TEXT,
    labels TEXT NOT NULL,
    rule TEXT,
    target TEXT,
    mode TEXT,
    dry_run INTEGER,
    decision TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
CREATE INDEX IF NOT EXISTS audit_key ON audit (fingerprint, starts_at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass
class ActionRow:
    fingerprint: str
    starts_at: str
    state: str
    labels: dict[str, str]
    rule: str | None = None
    target: str | None = None
    mode: str | None = None
    dry_run: bool | None = None
    team: str | None = None
    scope: str | None = None
    undo_data: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class AuditRecord:
    fingerprint: str
    starts_at: str
    alert_status: str
    labels: dict[str, str]
    decision: str  # apply | undo | skip | ignore
    result: str  # ok | dry_run | pending | error | skipped: <why> | ignored: <why> | ...
    rule: str | None = None
    target: str | None = None
    mode: str | None = None
    dry_run: bool | None = None
    detail: str = ""
    error: str = ""
    ts: float = 0.0
    id: int = 0

    @property
    def alertname(self) -> str | None:
        return self.labels.get("alertname")

    @property
    def team(self) -> str | None:
        return self.labels.get("team")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.ts,
            "fingerprint": self.fingerprint,
            "starts_at": self.starts_at,
            "alert_status": self.alert_status,
            "alertname": self.alertname,
            "team": self.team,
            "labels": self.labels,
            "rule": self.rule,
            "target": self.target,
            "mode": self.mode,
            "dry_run": self.dry_run,
            "decision": self.decision,
            "result": self.result,
            "detail": self.detail,
            "error": self.error,
        }


class Store:
    """The actuator's SQLite database: one instance, used from one thread at a time."""

    def __init__(self, path: Path | str, clock: Any = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._db = sqlite3.connect(
            str(self.path), isolation_level=None, timeout=STORE_BUSY_S, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ reads

    def get(self, fingerprint: str, starts_at: str) -> ActionRow | None:
        row = self._db.execute(
            "SELECT * FROM actions WHERE fingerprint = ? AND starts_at = ?",
            (fingerprint, starts_at),
        ).fetchone()
        return _action(row) if row else None

    def newest_start(self, fingerprint: str) -> str | None:
        """The stored startsAt of the series' newest instance: the last one recorded that
        no other took over (with an HA Prometheus pair, a later instance can carry an
        earlier startsAt)."""
        row = self._db.execute(
            "SELECT starts_at FROM actions WHERE fingerprint = ? AND state != ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (fingerprint, SUPERSEDED),
        ).fetchone()
        return str(row[0]) if row else None

    def holding_with_fingerprint(self, fingerprint: str) -> list[ActionRow]:
        """Actions of one alert series (any startsAt) that may hold objects, oldest first."""
        return self._holding("fingerprint", fingerprint)

    def to_undo_with_fingerprint(self, fingerprint: str) -> list[ActionRow]:
        """Actions of one alert series that a resolve undoes: those that may hold objects
        and those whose undo failed (tried again), oldest first."""
        return self._holding("fingerprint", fingerprint, states=IN_FORCE_STATES)

    def holding_for_targets(self, targets: Sequence[str]) -> list[ActionRow]:
        """Actions of these targets that may hold objects, oldest first."""
        return self._holding("target", *targets)

    def in_force_for_targets(self, targets: Sequence[str]) -> list[ActionRow]:
        """Actions of these targets that may hold objects or whose undo failed (their
        objects may still be changed, so they still know the original state), oldest first."""
        return self._holding("target", *targets, states=IN_FORCE_STATES)

    def _holding(
        self,
        column: Literal["fingerprint", "target"],
        *values: str,
        states: tuple[str, ...] = HOLDING_STATES,
    ) -> list[ActionRow]:
        if not values:
            return []
        each, marks = ", ".join("?" * len(values)), ", ".join("?" * len(states))
        rows = self._db.execute(
            f"SELECT * FROM actions WHERE {column} IN ({each}) AND state IN ({marks})"
            " ORDER BY created_at",
            (*values, *states),
        ).fetchall()
        return [_action(r) for r in rows]

    def keys_in_state(self, state: str, audited: str | None = None) -> list[tuple[str, str]]:
        """(fingerprint, startsAt) of the rows in `state`, oldest first; with `audited`,
        only those whose latest apply audit has that result (an earlier life of the same
        key, undone and fired again, keeps its records in the append-only audit)."""
        query = "SELECT a.fingerprint, a.starts_at FROM actions a WHERE a.state = ?"
        params: tuple[str, ...] = (state,)
        if audited is not None:
            query += (
                " AND (SELECT u.result FROM audit u WHERE u.fingerprint = a.fingerprint"
                " AND u.starts_at = a.starts_at AND u.decision = 'apply'"
                " ORDER BY u.id DESC LIMIT 1) = ?"
            )
            params += (audited,)
        rows = self._db.execute(query + " ORDER BY a.created_at", params).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def count_active(self, team: str) -> int:
        """The team's throttles and pauses applied (notifications hold nothing back), its
        label compared trimmed and lower-cased (`team`: as policy.team_of gives it). An
        action whose undo failed is not counted: its alert has ended, and a row whose
        undo can never succeed (its target removed from the config) would take the
        team's slot for good; the in-force gauge still shows it."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM actions WHERE lower(trim(team)) = ? AND state IN (?, ?)"
            " AND mode IS NOT 'notify'",
            (team, *ACTIVE_STATES),
        ).fetchone()
        return int(row[0])

    def last_action_time(self, rule: str, scope: str) -> float | None:
        """When `rule` last acted (or tried) on this workload scope, if ever."""
        row = self._db.execute(
            "SELECT MAX(created_at) FROM actions WHERE rule = ? AND scope = ?"
            " AND state IN (?, ?, ?, ?)",
            (rule, scope, APPLYING, APPLIED, UNDONE, UNDO_FAILED),
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def active_counts(self) -> dict[tuple[str, str], int]:
        """(target, team) -> number of actions in force (applied, or whose apply or undo
        failed, and not undone)."""
        marks = ", ".join("?" * len(IN_FORCE_STATES))
        rows = self._db.execute(
            "SELECT target, COALESCE(team, ''), COUNT(*) FROM actions"
            f" WHERE state IN ({marks}) GROUP BY target, team",
            IN_FORCE_STATES,
        ).fetchall()
        return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}

    def audit(self, since: float | None = None) -> list[AuditRecord]:
        query = "SELECT * FROM audit"
        params: tuple[Any, ...] = ()
        if since is not None:
            query += " WHERE ts >= ?"
            params = (since,)
        return [_audit(r) for r in self._db.execute(query + " ORDER BY id", params)]

    # ------------------------------------------------------------ writes

    def record(
        self, row: ActionRow | None, *audits: AuditRecord, also: Sequence[ActionRow] = ()
    ) -> None:
        """Upsert `row` (if given) and the rows in `also`, and append `audits`, in one
        durable transaction."""
        now = self._clock()
        with self._transaction():
            for each in [*also, *([row] if row is not None else [])]:
                existing = self._db.execute(
                    "SELECT created_at, state FROM actions WHERE fingerprint = ? AND starts_at = ?",
                    (each.fingerprint, each.starts_at),
                ).fetchone()
                # A skipped, dry-run, resolved or undone firing decided again starts
                # anew (cool-downs count from it).
                anew = (SKIPPED, DRY_RUN, RESOLVED, UNDONE)
                kept = existing is not None and existing[1] not in anew
                each.created_at = float(existing[0]) if kept else now
                each.updated_at = now
                self._db.execute(
                    "INSERT OR REPLACE INTO actions (fingerprint, starts_at, state, rule,"
                    " target, mode, dry_run, team, scope, labels, undo_data, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        each.fingerprint,
                        each.starts_at,
                        each.state,
                        each.rule,
                        each.target,
                        each.mode,
                        None if each.dry_run is None else int(each.dry_run),
                        each.team,
                        each.scope,
                        json.dumps(each.labels, sort_keys=True),
                        json.dumps(each.undo_data, sort_keys=True),
                        each.created_at,
                        each.updated_at,
                    ),
                )
            for a in audits:
                self._db.execute(
                    "INSERT INTO audit (ts, fingerprint, starts_at, alert_status, alertname,"
                    " team, labels, rule, target, mode, dry_run, decision, result, detail,"
                    " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        now,
                        a.fingerprint,
                        a.starts_at,
                        a.alert_status,
                        a.alertname,
                        a.team,
                        json.dumps(a.labels, sort_keys=True),
                        a.rule,
                        a.target,
                        a.mode,
                        None if a.dry_run is None else int(a.dry_run),
                        a.decision,
                        a.result,
                        a.detail,
                        a.error,
                    ),
                )

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


def _action(row: sqlite3.Row) -> ActionRow:
    return ActionRow(
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        state=row["state"],
        labels=json.loads(row["labels"]),
        rule=row["rule"],
        target=row["target"],
        mode=row["mode"],
        dry_run=None if row["dry_run"] is None else bool(row["dry_run"]),
        team=row["team"],
        scope=row["scope"],
        undo_data=json.loads(row["undo_data"] or "{}"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _audit(row: sqlite3.Row) -> AuditRecord:
    return AuditRecord(
        id=row["id"],
        ts=row["ts"],
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        alert_status=row["alert_status"],
        labels=json.loads(row["labels"]),
        rule=row["rule"],
        target=row["target"],
        mode=row["mode"],
        dry_run=None if row["dry_run"] is None else bool(row["dry_run"]),
        decision=row["decision"],
        result=row["result"],
        detail=row["detail"] or "",
        error=row["error"] or "",
    )


def iter_audit(path: Path | str, since: float | None = None) -> Iterator[AuditRecord]:
    """Read the audit log of a state database (used by `aispend actuator audit`)."""
    if not Path(path).exists():
        raise FileNotFoundError(str(path))
    # as_uri() escapes the path: a "#" or "?" in it would end the file name in a URI.
    db = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        query = "SELECT * FROM audit"
        params: tuple[Any, ...] = ()
        if since is not None:
            query += " WHERE ts >= ?"
            params = (since,)
        for row in db.execute(query + " ORDER BY id", params):
            yield _audit(row)
    finally:
        db.close()
