"""`aispend stack up`: run the local stack in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from aispend import ports
from aispend.config_cli import add_config_argument


def add_parser(sub: Any) -> None:
    from aispend.stack.components import COMPONENTS, CORE

    stack = sub.add_parser("stack", help="run the local stack without Docker")
    stack_sub = stack.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    up = stack_sub.add_parser(
        "up",
        help="start Prometheus, Alertmanager and aispend processes (--components)",
        description="Start the stack on loopback ports and keep it up until Ctrl-C. By"
        f" default: {', '.join(CORE)}; add the gateway and actuator with"
        " --components +gateway,actuator.",
    )
    add_config_argument(up)
    up.add_argument("--run-dir", default=".run", help="where configs, data and logs go")
    up.add_argument(
        "--port-base",
        type=ports.port_base,
        default=9090,
        help="Prometheus port; every other port shifts with it (default 9090)",
    )
    up.add_argument(
        "--components",
        default=",".join(CORE),
        help=f"comma list, or +list to add to the default {','.join(CORE)} (known:"
        f" {', '.join(COMPONENTS)})",
    )
    up.set_defaults(func=run_up)


class StopRequested(BaseException):
    """SIGINT or SIGTERM while the stack was starting (a BaseException, as
    KeyboardInterrupt, so that no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _install(handler: Any) -> None:
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_up(args: argparse.Namespace) -> int:
    from aispend.config import ConfigError, load_config, resolve_config_path
    from aispend.procs import ChildFailed
    from aispend.stack.components import MissingCheckout, StackError
    from aispend.stack.supervisor import Stack, StackOptions, parse_components

    config_path = resolve_config_path(args.config)
    try:
        load_config(config_path)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    try:
        stack = Stack(
            StackOptions(
                config=config_path,
                run_dir=Path(args.run_dir),
                port_base=args.port_base,
                components=parse_components(args.components),
            )
        )
    except ValueError as exc:
        print(f"aispend stack up: {exc}", file=sys.stderr)
        return 2
    except MissingCheckout as exc:
        print(f"aispend stack up: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def interrupt_start(signum: int, frame: FrameType | None) -> None:
        # While starting, a signal must cut a wait for a slow child (up to its ready
        # timeout): Stack.start stops what it started. A second signal only sets `stop`.
        _install(handler)
        raise StopRequested(signum)

    _install(interrupt_start)
    try:
        stack.start()
        _install(handler)
    except StopRequested as exc:
        stack.stop()  # Stack.start stopped its children; this covers a signal just after
        print("aispend stack up: stopped while starting; nothing is left running", file=sys.stderr)
        return 128 + exc.signum
    except (ChildFailed, StackError) as exc:
        print(f"aispend stack up: {exc}", file=sys.stderr)
        return 1
    print("aispend stack is up:")
    for name, url in stack.urls().items():
        print(f"  {name:18s} {url}")
    print(f"logs in {stack.ctx.run_dir / 'logs'}; Ctrl-C stops everything.", flush=True)
    status = 0
    try:
        while not stop.wait(1.0):
            stack.check()
    except ChildFailed as exc:
        print(f"aispend stack: {exc}", file=sys.stderr)
        status = 1
    finally:
        stack.stop()
        print("aispend stack stopped.", flush=True)
    return status
