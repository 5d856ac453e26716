"""`aispend dashboards generate [--config FILE | --currency CODE] [--tunables FILE]`:
dashboards/*.json and docs/dashboards.md from the grafanalib sources in
dashboards/*.dashboard.py. Money panels show the currency of aispend.yaml (--config)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    dash = sub.add_parser("dashboards", help="Grafana dashboards as code")
    dash_sub = dash.add_subparsers(dest="dashboards_command", metavar="ACTION", required=True)
    gen = dash_sub.add_parser(
        "generate",
        help="write dashboards/*.json and docs/dashboards.md",
        description="Build each dashboards/*.dashboard.py into dashboards/<name>.json"
        " (sorted, stable JSON) and render docs/dashboards.md.",
    )
    gen.add_argument("--root", default=".", help="repository root (default: .)")
    currency = gen.add_mutually_exclusive_group()
    currency.add_argument(
        "--config",
        help="aispend.yaml whose `currency` the money panels show (a config that does not"
        " pass `aispend config check` writes nothing)",
    )
    currency.add_argument(
        "--currency",
        help="reporting currency for money units, without a config (default USD, as"
        " aispend.example.yaml)",
    )
    gen.add_argument(
        "--tunables",
        help="the YAML tunables file the rules were generated from (`aispend rules generate"
        " --tunables`), so panel thresholds, windows and the titles the runbooks cite match"
        " the rules (default: built-ins)",
    )
    gen.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    import sys

    from aispend.config import ConfigError, load_config
    from aispend.dashboards.defaults import Context
    from aispend.dashboards.docs import render
    from aispend.dashboards.generate import DashboardError, build_all, write_all
    from aispend.rules.tunables import TunablesError, load_tunables

    root = Path(args.root)
    directory = root / "dashboards"
    try:
        tunables = load_tunables(Path(args.tunables) if args.tunables else None)
    except TunablesError as exc:  # exit 2, as `aispend rules generate` for the same file
        print(f"aispend dashboards generate: {exc}", file=sys.stderr)
        return 2
    currency = args.currency or "USD"
    if args.config:
        try:
            currency = load_config(args.config).currency
        except ConfigError as exc:  # exit 2, as a bad --tunables file
            print(f"aispend dashboards generate: {exc.report()}", file=sys.stderr)
            return 2
    ctx = Context(currency=currency, tunables=tunables)
    try:
        built = build_all(directory, ctx)
        docs = root / "docs" / "dashboards.md"
        docs.parent.mkdir(parents=True, exist_ok=True)
        written = write_all(directory, built, also={docs: render(built)})
    except DashboardError as exc:
        print(f"aispend dashboards generate: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = exc.filename or directory
        print(
            f"aispend dashboards generate: cannot write {where}: {exc.strerror or exc}"
            " (every file left as it was)",
            file=sys.stderr,
        )
        return 1
    for path in [*written, docs]:
        print(f"wrote {path}")
    return 0
