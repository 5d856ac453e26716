"""`aispend gateway`: run the metering gateway.

    aispend gateway --config aispend.yaml --listen 127.0.0.1:9120

Serves the proxied provider paths, /metrics, /healthz and /admin/throttles on one
listener. The config is validated and secrets are read before it listens; a bad config
exits with status 1 and every problem listed. It is reloaded on SIGHUP or when the file
changes (API keys, prices, upstreams; see aispend.gateway.app); a bad edit keeps the
last good config and sets aispend_config_last_reload_success to 0.

Runs on uvloop where it is installed (a dependency on Linux); `--event-loop asyncio`
runs on the standard loop. On the gateway's own HTTP stack (aispend.gateway.http_server
and http_client) the two were within run-to-run noise in the latest benchmark
(docs/benchmarks.md: +0.81 and +0.83 ms added p50, JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from aispend.config_cli import add_config_argument
from aispend.exporters.serve import parse_listen

if TYPE_CHECKING:
    from aispend.gateway.app import Gateway

log = logging.getLogger(__name__)

EXIT_BAD_CONFIG = 1
EXIT_CANNOT_LISTEN = 2
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
SHUTDOWN_TIMEOUT_S = 5.0
"""On SIGTERM, how long in-flight requests (streams) get to finish; the wait for a last
scrape (sources.gateway.shutdown_scrape_wait_s) comes after it."""


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
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="auto: uvloop when installed, else asyncio (default: auto)",
    )
    parser.set_defaults(func=run)


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """The loop the gateway runs on: uvloop unless asked for asyncio or not installed."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
            log.info("uvloop is not installed: running on the asyncio event loop")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(args: argparse.Namespace) -> int:
    import sqlite3
    from pathlib import Path

    from aispend.config import Config, ConfigError, resolve_config_path
    from aispend.config_watch import ConfigApplyError, ConfigWatcher
    from aispend.gateway.app import build_gateway, proxy_parts, settings_of
    from aispend.secrets import SecretError

    path = resolve_config_path(args.config)
    try:
        watcher = ConfigWatcher(path)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_BAD_CONFIG
    config = watcher.config
    settings = settings_of(config)
    host, port = args.listen or parse_listen(settings.listen)
    throttle_db = Path(args.throttle_db or settings.throttle_db)
    try:
        gateway = build_gateway(config, throttle_db)
    except SecretError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except (sqlite3.Error, OSError) as exc:  # not a database, unwritable, a directory
        print(f"cannot open the throttle database {throttle_db}: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    loop = new_event_loop(args.event_loop)

    def apply(new: Config) -> None:  # in the watcher's thread
        try:
            parts = proxy_parts(new)
        except SecretError as exc:
            raise ConfigApplyError(f"{path}: {exc}") from exc
        loop.call_soon_threadsafe(gateway.proxy.reconfigure, parts)

    watcher.on_reload = apply
    gateway.metrics.registry.register(watcher)
    watcher.install_sighup()
    watcher.start_polling()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(gateway, host, port))
    finally:
        loop.close()


async def _serve(gateway: Gateway, host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT, then shut down without losing metered usage
    (`Gateway.shutdown`): still listening, refuse new proxied requests with 503, let
    those in flight finish (up to SHUTDOWN_TIMEOUT_S), wait for a last scrape of
    /metrics (up to sources.gateway.shutdown_scrape_wait_s) and close."""
    try:
        await gateway.serve(host, port)
    except OSError as exc:
        log.error("gateway cannot listen on %s:%d: %s", host, port, exc)
        await gateway.close()
        return EXIT_CANNOT_LISTEN
    loop = asyncio.get_running_loop()
    log.info(
        "aispend gateway listening on http://%s:%d (%s event loop)",
        host, port, type(loop).__module__.split(".")[0],
    )  # fmt: skip
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.shutdown(SHUTDOWN_TIMEOUT_S)
        await gateway.close()
    log.info("aispend gateway stopped")
    return 0
