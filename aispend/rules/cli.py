"""`aispend rules generate [--out DIR] [--tunables FILE]`: write the rule files.
(`aispend rules backfill`: aispend/rules/backfill.py.)

Writes `alert-rules/aispend.rules.yml` (recording), `alert-rules/aispend.alerts.yml`
(alerting) and `docs/runbooks.md` under DIR (default: the current directory, i.e. the
repository root). CI regenerates them and fails on a difference.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Any

from aispend.files import write_all_or_none
from aispend.rules import backfill

RULES_FILE = Path("alert-rules/aispend.rules.yml")
ALERTS_FILE = Path("alert-rules/aispend.alerts.yml")
RUNBOOKS_FILE = Path("docs/runbooks.md")


def render_all(tunables: Any) -> dict[Path, str]:
    """Path (relative to the output root) -> file content."""
    from aispend.rules import alerts, anomaly, spend
    from aispend.rules.render import render_groups, render_runbooks

    recording = spend.groups(tunables) + anomaly.groups(tunables)
    alerting = alerts.groups(tunables)
    return {
        RULES_FILE: render_groups(recording, tunables),
        ALERTS_FILE: render_groups(alerting, tunables),
        RUNBOOKS_FILE: render_runbooks(alerting, tunables),
    }


def generate(out: Path, tunables_path: Path | None = None) -> list[Path]:
    from aispend.rules.tunables import load_tunables

    files = {out / rel: text for rel, text in render_all(load_tunables(tunables_path)).items()}
    # Every folder first, then the files: a path that cannot be written leaves none of
    # them half-updated (rules from these tunables with runbooks from others).
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    write_all_or_none(files)  # a full disk leaves every file as it was, none cut
    return list(files)


def _run(args: argparse.Namespace) -> int:
    from aispend.rules.tunables import TunablesError

    try:
        paths = generate(Path(args.out), Path(args.tunables) if args.tunables else None)
    except TunablesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = exc.filename or args.out
        print(f"error: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("rules", help="Prometheus recording and alerting rules")
    rules_sub = parser.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    gen = rules_sub.add_parser("generate", help="write alert-rules/*.yml and docs/runbooks.md")
    gen.add_argument("--out", default=".", help="output root (default: current directory)")
    gen.add_argument("--tunables", help="YAML file overriding tunables (default: built-ins)")
    gen.set_defaults(func=_run)
    backfill.add_parser(rules_sub)
