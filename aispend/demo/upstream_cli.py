"""`aispend demo upstream`: run the simulated LLM provider (aispend.demo.upstream).

aispend demo upstream --listen 127.0.0.1:9190 --latency-ms 20 --output-tokens 40
"""

from __future__ import annotations

import argparse
import logging

from aispend import ports
from aispend.exporters.serve import parse_listen

log = logging.getLogger(__name__)

FAIL_MODES = ("429", "500", "timeout", "truncate", "malformed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", ports.DEMO_UPSTREAM),
        metavar="HOST:PORT",
        help=f"where to listen (default 127.0.0.1:{ports.DEMO_UPSTREAM})",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before headers")
    parser.add_argument(
        "--chunk-interval-ms", type=float, default=0.0, help="delay between stream chunks"
    )
    parser.add_argument("--output-tokens", type=int, default=40, help="output tokens per answer")
    parser.add_argument("--stream-chunks", type=int, default=8, help="content chunks per stream")
    parser.add_argument("--fail", choices=FAIL_MODES, default=None, help="fail every request")
    parser.add_argument(
        "--expect-key-env",
        metavar="VAR",
        default=None,
        help="answer 401 unless requests carry the provider key held in this variable",
    )


def run(args: argparse.Namespace) -> int:
    import os

    from aiohttp import web

    from aispend.demo.upstream import Behaviour, DemoUpstream

    expect = os.environ.get(args.expect_key_env) if args.expect_key_env else None
    if args.expect_key_env and not expect:
        log.error("--expect-key-env %s: the variable is unset or empty", args.expect_key_env)
        return 1
    behaviour = Behaviour(
        latency_ms=args.latency_ms,
        chunk_interval_ms=args.chunk_interval_ms,
        output_tokens=args.output_tokens,
        stream_chunks=args.stream_chunks,
        fail=args.fail,
        expect_key=expect,
    )
    host, port = args.listen
    log.info("demo upstream listening on http://%s:%d", host, port)
    try:
        web.run_app(
            DemoUpstream(behaviour).app(),
            host=host,
            port=port,
            access_log=None,
            print=None,
            shutdown_timeout=1,  # stalled (timeout-injected) requests must not hold exit
        )
    except OSError as exc:
        log.error("demo upstream cannot listen on %s:%d: %s", host, port, exc)
        return 2
    return 0
