"""Test helpers: aiohttp servers in a background thread, fake upstream APIs, payloads.

The fakes speak the documented wire formats of what the actuator calls:
- FakeGatewayAdmin: the gateway throttle admin API of aispend/gateway/admin.py (PUT/DELETE/GET
  /admin/throttles, bearer token), used before and beside the real gateway;
- FakeKubernetes: the apps/v1 scale subresource and batch/v1 CronJob endpoints;
- FakeArm: the ARM API Management subscription GET/PATCH (served over HTTPS).
Each records every request (method, path, query, headers, JSON body) for assertions.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.conftest import free_port

TOKEN = "test-actuator-token-5f2c"
ADMIN_TOKEN = "test-gateway-admin-token-91ab"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class ThreadedServer:
    """Run an aiohttp Application on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app: web.Application, ssl_context: ssl.SSLContext | None = None):
        self.app = app
        self.port = free_port()
        self._ssl = ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner = web.AppRunner(app)

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ssl)
        await site.start()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop thread (to read state the handlers write)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()


async def _seen(request: web.Request) -> Seen:
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    return Seen(request.method, request.path, dict(request.query), dict(request.headers), body)


@dataclass
class FakeGatewayAdmin:
    """The gateway throttle admin API (aispend/gateway/admin.py), state in memory."""

    token: str = ADMIN_TOKEN
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    fail_with: int | None = None  # answer every call with this status
    on_put: Callable[[], None] | None = None  # called after storing a PUT, before answering

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/admin/throttles/{id}", self._put)
        app.router.add_delete("/admin/throttles/{id}", self._delete)
        app.router.add_get("/admin/throttles", self._list)
        return app

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": {"message": "unauthorized"}}, status=401)
        if self.fail_with:
            return web.json_response({"error": {"message": "failing"}}, status=self.fail_with)
        return None

    async def _put(self, request: web.Request) -> web.Response:
        self.seen.append(await _seen(request))
        denied = self._denied(request)
        if denied:
            return denied
        rule = dict(self.seen[-1].body, id=request.match_info["id"])
        self.rules[request.match_info["id"]] = rule
        if self.on_put:
            self.on_put()
        return web.json_response(rule)

    async def _delete(self, request: web.Request) -> web.Response:
        self.seen.append(await _seen(request))
        denied = self._denied(request)
        if denied:
            return denied
        if self.rules.pop(request.match_info["id"], None) is None:
            return web.json_response({"error": {"message": "no such rule"}}, status=404)
        return web.json_response({"deleted": request.match_info["id"]})

    async def _list(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        return denied or web.json_response({"throttles": list(self.rules.values())})

    def calls(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]


def alert(
    fingerprint: str = "a1b2c3d4e5f60718",
    status: str = "firing",
    starts_at: str = "2024-05-01T10:00:00Z",
    **labels: str,
) -> dict[str, Any]:
    base = {
        "alertname": "AISpendRunawaySpend",
        "severity": "critical",
        "team": "search",
        "agent": "rerank-agent",
        "action": "throttle",
    }
    base.update(labels)
    return {
        "status": status,
        "labels": base,
        "annotations": {"summary": "rerank-agent spends 9.1x its usual rate"},
        "startsAt": starts_at,
        "endsAt": "2024-05-01T10:30:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """A webhook v4 notification shaped like Alertmanager 0.25 sends it."""
    group_status = status or (
        "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    )
    return {
        "receiver": "actuator",
        "status": group_status,
        "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}/{action="throttle"}:{alertname="AISpendRunawaySpend"}',
        "truncatedAlerts": 0,
    }
