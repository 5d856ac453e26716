"""A bare ASGI pass-through proxy on uvicorn (httptools parser, uvloop), with the same
aiohttp client as the gateway: the floor of a different HTTP server under the same client.

Used by benchmarks/gateway_ab.py (`--uvicorn-lib`) to tell whether swapping aiohttp's
server for uvicorn would lower the gateway's added latency. uvicorn is not a project
dependency: install it apart (`pip install --target DIR uvicorn httptools`) and put DIR
on PYTHONPATH.

    PYTHONPATH=DIR python benchmarks/_bare_uvicorn_proxy.py UPSTREAM_BASE_URL PORT
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import uvicorn
from yarl import URL

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BareProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            await self.forward(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0)
                self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def forward(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert self.session is not None
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        url = URL(self.upstream + scope["raw_path"].decode(), encoded=True)
        headers = {"Content-Type": "application/json"}
        async with self.session.post(url, data=body, headers=headers) as upstream:
            content_type = upstream.headers.get("Content-Type", "")
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": [(b"content-type", content_type.encode())],
                }
            )
            if not content_type.startswith("text/event-stream"):
                await send({"type": "http.response.body", "body": await upstream.read()})
                return
            while chunk := await upstream.content.readany():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


if __name__ == "__main__":
    uvicorn.run(
        BareProxy(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), loop="uvloop",
        http="httptools", lifespan="on", access_log=False, log_level="warning",
    )  # fmt: skip
