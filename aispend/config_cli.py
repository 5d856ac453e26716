"""`aispend config check [FILE]`: validate aispend.yaml and summarise it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from aispend.config import (
    DEFAULT_CONFIG_FILE,
    ENV_CONFIG,
    ConfigError,
    load_config,
    resolve_config_path,
)

EXIT_INVALID = 1


def add_config_argument(
    parser: argparse.ArgumentParser, fallback: str = DEFAULT_CONFIG_FILE
) -> None:
    """The shared --config option: --config, then $AISPEND_CONFIG, then ./<fallback>
    (./aispend.yaml unless the command falls back to another file)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"aispend.yaml to use (default: ${ENV_CONFIG}, then ./{fallback})",
    )


def add_parser(sub: Any) -> None:
    config = sub.add_parser("config", help="work with aispend.yaml")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate the config file")
    check.add_argument("file", nargs="?", help="config file (overrides --config)")
    add_config_argument(check)
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.file or args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_INVALID
    periods = sorted({b.period for b in config.budgets})
    print(
        f"{path}: ok: {len(config.teams)} teams, {len(config.budgets)} budgets"
        f" ({', '.join(periods) or 'none'}), {len(config.api_keys)} api keys,"
        f" currency {config.currency}"
    )
    return 0
