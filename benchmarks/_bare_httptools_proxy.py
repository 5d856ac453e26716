"""A bare pass-through proxy on the gateway's own HTTP stack: the floor of that stack.

The same listener, upstream client and event loop as `aispend gateway`
(aispend.gateway.http_server and http_client, uvloop), with none of its work: no
attribution, throttle check, metering or header filtering. The gateway's added latency
minus this one's is what aispend's own code costs per request.

    python benchmarks/_bare_httptools_proxy.py UPSTREAM_BASE_URL PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from aispend.gateway.http_client import UpstreamClient
from aispend.gateway.http_server import HttpServer, Reply, Request


async def serve(upstream: str, port: int) -> None:
    client = UpstreamClient(connect_timeout=5.0, read_timeout=300.0)

    async def forward(request: Request, reply: Reply) -> None:
        if request.path == "/healthz":
            reply.send(200, [("Content-Type", "text/plain")], b"ok")
            return
        target = request.raw_path + (f"?{request.query}" if request.query else "")
        headers = [("Content-Type", "application/json")]
        response = await client.post(upstream, target, headers, request.body)
        try:
            content_type = response.header("Content-Type")
            out = [("Content-Type", content_type)]
            if not content_type.startswith("text/event-stream"):
                reply.send(response.status, out, await response.read(64 * 1024 * 1024))
                return
            await reply.start(response.status, out)
            while chunk := await response.readany():
                await reply.write(chunk)
            await reply.end()
        finally:
            response.release()

    server = HttpServer(forward, max_body=64 * 1024 * 1024)
    await server.listen("127.0.0.1", port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], int(sys.argv[2])))
