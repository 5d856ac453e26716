"""What every exporter command shares: --listen, --once, serving and shutdown.

`--once` prints one scrape's exposition to stdout and exits, which is how tests pipe
an exporter's output through `promtool check metrics`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterable
from types import FrameType

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.registry import Collector

from aispend.config_watch import notice_sighup_without_reload

log = logging.getLogger(__name__)


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, meaning loopback) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def add_exporter_args(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", default_port),
        metavar="HOST:PORT",
        help=f"where to serve /metrics (default 127.0.0.1:{default_port})",
    )
    parser.add_argument("--once", action="store_true", help="print one scrape to stdout and exit")


def build_registry(collectors: Iterable[Collector]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    return registry


def serve(registry: CollectorRegistry, listen: tuple[str, int], once: bool, name: str) -> int:
    """Print once, or serve /metrics until SIGTERM/SIGINT. Without a config watcher's
    SIGHUP handler (`ConfigWatcher.install_sighup`), SIGHUP logs that a restart applies
    an edit rather than ending the process."""
    if once:
        sys.stdout.write(generate_latest(registry).decode("utf-8"))
        sys.stdout.flush()
        return 0
    host, port = listen
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    notice_sighup_without_reload(f"the {name} exporter")  # billing, tokens: not stopped
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("%s exporter cannot listen on %s:%d: %s", name, host, port, exc)
        return 1
    log.info("%s exporter serving http://%s:%d/metrics", name, host, port)
    # Python runs signal handlers (SIGTERM here, SIGHUP for config reloads) in the main
    # thread only, and a signal the kernel hands to another thread does not wake a main
    # thread blocked in an untimed wait: wake up regularly instead.
    while not stop.wait(0.5):
        pass
    server.shutdown()
    thread.join(timeout=5)
    return 0
