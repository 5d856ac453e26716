"""`aispend gateway`: run the metering gateway.

    aispend gateway --config aispend.yaml --listen 127.0.0.1:9120

Serves the proxied provider paths, /metrics, /healthz and /admin/throttles on one
listener. The config is validated and secrets are read before it listens; a bad
config exits with status 1 and every problem listed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from aispend.config_cli import add_config_argument
from aispend.exporters.serve import parse_listen

log = logging.getLogger(__name__)

EXIT_BAD_CONFIG = 1
EXIT_CANNOT_LISTEN = 2
SHUTDOWN_TIMEOUT_S = 5.0
"""On SIGTERM, how long in-flight requests (streams) get to finish."""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("gateway", help="run the metering gateway (LLM proxy)")
    add_config_argument(parser)
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=None,
        metavar="HOST:PORT",
        help="where to listen (default: sources.gateway.listen, else 127.0.0.1:9120)",
    )
    parser.add_argument(
        "--throttle-db",
        metavar="FILE",
        default=None,
        help="SQLite file of the throttle table (default: sources.gateway.throttle_db)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aiohttp import web

    from aispend.config import ConfigError, load_config, resolve_config_path
    from aispend.gateway.app import build_gateway, settings_of
    from aispend.gateway.settings import SecretError

    path = resolve_config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_BAD_CONFIG
    settings = settings_of(config)
    host, port = args.listen or parse_listen(settings.listen)
    try:
        gateway = build_gateway(config, Path(args.throttle_db) if args.throttle_db else None)
    except SecretError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    log.info("aispend gateway listening on http://%s:%d", host, port)
    try:
        web.run_app(
            gateway.app, host=host, port=port, access_log=None, print=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )  # fmt: skip
    except OSError as exc:
        log.error("gateway cannot listen on %s:%d: %s", host, port, exc)
        return EXIT_CANNOT_LISTEN
    return 0
