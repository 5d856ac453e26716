"""`aispend demo chat-sink`: stands in for chat and pager endpoints in the demo.

Alertmanager's chat/pager receivers point here in the local stack. Every POST is
recorded (path, time, JSON body) and listed by `GET /notifications`, which is how
the demo and its e2e test see that a notification was delivered.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from aispend.parsing import loads_json

if TYPE_CHECKING:
    from aiohttp import web  # imported in make_app: building the CLI parser must not load it

MAX_KEPT = 1000


def make_app() -> web.Application:
    """The sink: POST anywhere records, GET /notifications lists, GET /healthz."""
    from aiohttp import web

    notifications: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT)

    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = loads_json(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        notifications.append({"path": request.path, "received_at": time.time(), "body": body})
        return web.json_response({"ok": True})

    async def list_notifications(request: web.Request) -> web.Response:
        return web.json_response(list(notifications))

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application(client_max_size=1024**2)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/notifications", list_notifications)
    app.router.add_post("/{tail:.*}", receive)
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aispend.exporters.serve import parse_listen

    parser.add_argument(
        "--listen", type=parse_listen, default=("127.0.0.1", 9195), metavar="HOST:PORT"
    )


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    host, port = args.listen
    web.run_app(make_app(), host=host, port=port, print=None, access_log=None)
    return 0
