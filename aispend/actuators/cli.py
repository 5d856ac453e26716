"""`aispend actuator`: serve the Alertmanager webhook; `aispend actuator audit`: show the log.

    aispend actuator --config aispend.yaml --listen 127.0.0.1:9180 \\
        [--token-file FILE] [--state-db FILE] [--dry-run true|false]
    aispend actuator audit [--since 1h] [--json]

The webhook token comes from --token-file, else `actions.token_file`, else the
environment variable named by `actions.token_env` ($AISPEND_ACTUATOR_TOKEN).
`--dry-run true` (or $AISPEND_ACTUATOR_DRY_RUN=1) makes every rule dry-run, those
that set `dry_run: false` too: the switch an operator turns to stop all actions.
`--dry-run false` overrides the global `actions.dry_run`; rules that set `dry_run: true`
keep it (a new rule rehearsed while the others act).
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
from typing import TYPE_CHECKING, Any

from aispend import ports
from aispend.config_cli import add_config_argument
from aispend.exporters.serve import parse_listen

if TYPE_CHECKING:
    from aispend.actuators.settings import ActionsSettings

log = logging.getLogger(__name__)

ENV_DRY_RUN = "AISPEND_ACTUATOR_DRY_RUN"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("actuator", help="Alertmanager webhook receiver that acts")
    add_config_argument(parser)
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", ports.ACTUATOR),
        metavar="HOST:PORT",
        help=f"where to serve /alerts and /metrics (default 127.0.0.1:{ports.ACTUATOR})",
    )
    parser.add_argument("--token-file", help="file holding the webhook bearer token")
    parser.add_argument("--state-db", help="SQLite state and audit database (overrides config)")
    parser.add_argument(
        "--dry-run",
        type=parse_bool,
        metavar="true|false",
        help=f"true: every rule dry-run; false: override actions.dry_run (also ${ENV_DRY_RUN})",
    )
    parser.set_defaults(func=run_server)
    actions = parser.add_subparsers(dest="actuator_command", metavar="ACTION")
    audit = actions.add_parser("audit", help="print the audit log")
    add_config_argument(audit)
    audit.add_argument("--state-db", help="SQLite state and audit database (overrides config)")
    audit.add_argument("--since", help="only records newer than this (e.g. 15m, 2h, 1d)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=run_audit)


def with_dry_run(settings: ActionsSettings, dry_run: bool) -> ActionsSettings:
    """The settings under an explicit `--dry-run`: true holds back every rule."""
    rules = settings.rules
    if dry_run:
        rules = [rule.model_copy(update={"dry_run": None}) for rule in rules]
    return settings.model_copy(update={"dry_run": dry_run, "rules": rules})


def run_server(args: argparse.Namespace) -> int:
    from aiohttp import web

    from aispend.actuators.app import build_app
    from aispend.actuators.policy import dry_run_of
    from aispend.actuators.store import Store
    from aispend.actuators.targets import preflight
    from aispend.config import ConfigError, load_config, resolve_config_path
    from aispend.config_watch import notice_sighup_without_reload
    from aispend.secrets import SecretError, require_secret

    try:
        config = load_config(resolve_config_path(args.config))
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    settings = config.actions
    dry_run = args.dry_run
    if dry_run is None and os.environ.get(ENV_DRY_RUN):
        try:
            dry_run = parse_bool(os.environ[ENV_DRY_RUN])
        except argparse.ArgumentTypeError as exc:
            print(f"${ENV_DRY_RUN}: {exc}", file=sys.stderr)
            return 2
    if dry_run is not None:
        settings = with_dry_run(settings, dry_run)
    try:
        token = require_secret(
            args.token_file or settings.token_file, settings.token_env, "actuator webhook token"
        )
    except SecretError as exc:
        print(f"aispend actuator: {exc}", file=sys.stderr)
        return 1
    problems = preflight(settings.targets)
    if problems:
        print("aispend actuator: cannot start:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    state_db = args.state_db or settings.state_db
    try:
        store = Store(state_db)
    except (sqlite3.Error, OSError) as exc:  # not a database, unwritable, a directory
        print(f"aispend actuator: cannot open the state database {state_db}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    criticality = {t.name: t.criticality for t in config.teams}
    app = build_app(settings, criticality, store, token)
    host, port = args.listen
    live = [rule.name for rule in settings.rules if not dry_run_of(rule, settings)]
    log.info(
        "actuator on http://%s:%d/alerts: %d rules, %d targets, dry_run=%s, live rules: %s,"
        " state %s",
        host,
        port,
        len(settings.rules),
        len(settings.targets),
        settings.dry_run,
        ", ".join(live) or "none",
        store.path,
    )
    notice_sighup_without_reload("the actuator")
    try:
        web.run_app(app, host=host, port=port, print=None, handle_signals=True)
    except OSError as exc:
        print(f"aispend actuator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


def run_audit(args: argparse.Namespace) -> int:
    from aispend.actuators.audit_cli import print_audit

    return print_audit(args)
