"""The `aispend` command line: one entry point, one sub-command module per part.

Each module in COMMANDS has `add_parser(subparsers)`, which adds its sub-command and
sets `func` (taking the parsed args, returning an exit status). Heavy imports happen
inside `func`, so `aispend --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from aispend import __version__

COMMANDS = (
    "aispend.config_cli",
    "aispend.docs",
    "aispend.exporters.cli",
    "aispend.stack.cli",
    "aispend.rules.cli",
    "aispend.actuators.cli",
    "aispend.backtest.cli",
    "aispend.focus_cli",
    "aispend.backfill",
    "aispend.gateway.cli",
    "aispend.demo.cli",
    "aispend.dashboards.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aispend", description="AI spend observability with guardrails that act."
    )
    parser.add_argument("--version", action="version", version=f"aispend {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
