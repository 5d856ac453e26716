"""`aispend actuator audit [--since DURATION] [--json]`: print the actuator's audit log.

Reads the state database read-only (safe while the actuator runs). Text output is one
line per decision: time (UTC), decision, result, alert, team, rule -> target/mode,
dry-run flag, then detail or error.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from datetime import UTC, datetime

from aispend.actuators.duration import parse_duration
from aispend.actuators.store import AuditRecord, iter_audit


def format_record(r: AuditRecord) -> str:
    when = datetime.fromtimestamp(r.ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    route = f"{r.rule} -> {r.target}/{r.mode}" if r.rule else "-"
    dry = " dry-run" if r.dry_run else ""
    tail = f" error: {r.error}" if r.error else (f" {r.detail}" if r.detail else "")
    return (
        f"{when} {r.decision:<6} {r.result:<24} {r.alertname or '?'}"
        f"[{r.fingerprint}] team={r.team or '-'} {route}{dry}{tail}"
    )


def print_audit(args: argparse.Namespace) -> int:
    from aispend.config import ConfigError, load_config, resolve_config_path

    since = None
    if args.since:
        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as exc:
            print(f"--since: {exc}", file=sys.stderr)
            return 2
    path = args.state_db
    if not path:
        try:
            path = load_config(resolve_config_path(args.config)).actions.state_db
        except ConfigError as exc:
            print(exc.report(), file=sys.stderr)
            return 1
    try:
        records = list(iter_audit(path, since))
    except FileNotFoundError:
        print(f"no actuator state database at {path} (has the actuator run?)", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:  # not a database, or not the actuator's
        print(f"{path}: not an actuator state database: {exc}", file=sys.stderr)
        return 1
    for r in records:
        print(json.dumps(r.as_dict(), sort_keys=True) if args.json else format_record(r))
    return 0
