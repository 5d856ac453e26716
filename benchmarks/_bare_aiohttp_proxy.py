"""A bare aiohttp pass-through proxy: the HTTP-stack floor of the gateway benchmark.

The same server, client and event loop as `aispend gateway` (aiohttp server, one
aiohttp ClientSession, uvloop), with none of its work: no attribution, throttle
check, metering or header filtering. The gateway's added latency minus this one's is
what aispend's own code costs per request.

    python benchmarks/_bare_aiohttp_proxy.py UPSTREAM_BASE_URL PORT
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import uvloop
from aiohttp import web
from yarl import URL


async def serve(upstream: str, port: int) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {"Content-Type": "application/json"}
        url = URL(upstream + request.raw_path, encoded=True)
        async with session.post(url, data=body, headers=headers) as upstream_response:
            content_type = upstream_response.headers.get("Content-Type", "")
            if not content_type.startswith("text/event-stream"):
                payload = await upstream_response.read()
                return web.Response(
                    status=upstream_response.status,
                    body=payload,
                    headers={"Content-Type": content_type},
                )
            response = web.StreamResponse(
                status=upstream_response.status, headers={"Content-Type": content_type}
            )
            await response.prepare(request)
            while chunk := await upstream_response.content.readany():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()
        await runner.cleanup()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], int(sys.argv[2])))
