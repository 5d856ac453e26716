"""Wires the gateway together from a loaded Config: one handler for its HTTP listener.

Paths: GET /metrics, GET /healthz, /admin/throttles (admin API), and every other
path goes to the proxy (which answers 404 for paths it does not meter). Everything
is validated and resolved here before the first request. A reloaded config is applied
with `gateway.proxy.reconfigure(proxy_parts(config))`: API keys, prices, upstreams
and their keys, Azure deployments, allow_unattributed and header refinement. The
listener, the throttle database, the admin token and the timeouts need a restart.
`Gateway.shutdown` winds down on SIGTERM without losing the last metered usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aispend.config import Config
from aispend.gateway import admin
from aispend.gateway.attribution import Attributor
from aispend.gateway.http_server import HttpServer, Reply, Request, json_answer
from aispend.gateway.metrics import GatewayMetrics
from aispend.gateway.proxy import Proxy, ProxyParts, UpstreamTarget, error_response
from aispend.gateway.settings import GatewaySettings, admin_token
from aispend.gateway.throttle import ThrottleStore, ThrottleTable
from aispend.pricing import Pricer
from aispend.secrets import find_secret

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 5.0
MAX_REQUEST_BYTES = 64 * 1024 * 1024

# How each provider takes its key.
_AUTH_HEADER = {
    "openai": ("Authorization", "Bearer {}"),
    "azure": ("api-key", "{}"),
    "anthropic": ("x-api-key", "{}"),
}


@dataclass
class Gateway:
    table: ThrottleTable
    metrics: GatewayMetrics
    store: ThrottleStore
    proxy: Proxy
    admin: admin.AdminApi
    shutdown_scrape_wait_s: float = 0.0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _server: HttpServer | None = None
    _scraped: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while /metrics has been answered since the last proxied request ended."""
    _ever_scraped: bool = False

    def __post_init__(self) -> None:
        self._scraped.set()  # nothing recorded yet

    @property
    def stopping(self) -> bool:
        return self._server is not None and self._server.stopping

    async def handle(self, request: Request, reply: Reply) -> None:
        """Every request of the listener: the proxy, /metrics, /healthz or the admin API.
        While stopping, /metrics is answered as ever, /healthz says 503 "stopping" and
        proxied requests get 503 (`Connection: close`: retry elsewhere)."""
        path = request.path
        if path == "/metrics" or path == "/healthz":
            if request.method not in ("GET", "HEAD"):
                reply.send(*json_answer(405, {"error": f"{path} takes GET"}, [("Allow", "GET")]))
            elif path == "/metrics":
                body = generate_latest(self.metrics.registry)
                reply.send(200, [("Content-Type", CONTENT_TYPE_LATEST)], body)
                self._ever_scraped = True
                self._scraped.set()
            elif self.stopping:
                reply.send(*json_answer(503, {"status": "stopping"}))
            else:
                reply.send(*json_answer(200, {"status": "ok"}))
        elif path.startswith(admin.PREFIX):
            reply.send(*self.admin.handle(request))
        elif self.stopping:
            reply.send(
                *error_response(
                    503,
                    "the aispend gateway is shutting down: retry the request"
                    " (a new connection reaches a running gateway)",
                    "api_error",
                    "gateway_stopping",
                )
            )
        else:
            try:
                await self.proxy.handle(request, reply)
            finally:
                self._scraped.clear()  # recorded: the next scrape exports it

    async def serve(self, host: str, port: int) -> HttpServer:
        """Listen on host:port (OSError when it cannot) and start the background work."""
        server = HttpServer(self.handle, max_body=MAX_REQUEST_BYTES)
        await server.listen(host, port)
        self._server = server
        self._tasks.append(asyncio.create_task(_purge_loop(self.table)))
        return server

    async def shutdown(self, drain_s: float) -> None:
        """Stop serving without losing what was metered: still listening, refuse new
        proxied requests, give those in flight `drain_s` seconds, then, when usage was
        recorded after the last /metrics answer and something has scraped this gateway,
        wait up to `shutdown_scrape_wait_s` for one more scrape; then stop listening."""
        server = self._server
        if server is None:
            return
        await server.drain(drain_s)
        wait_s = self.shutdown_scrape_wait_s
        if wait_s > 0 and self._ever_scraped and not self._scraped.is_set():
            log.info("waiting up to %g s for a last scrape of /metrics", wait_s)
            try:
                await asyncio.wait_for(self._scraped.wait(), wait_s)
            except TimeoutError:
                log.warning(
                    "no scrape of /metrics in %g s (sources.gateway.shutdown_scrape_wait_s):"
                    " usage recorded since the last scrape is not exported",
                    wait_s,
                )
        server.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.proxy.close()
        self.store.close()


def settings_of(config: Config) -> GatewaySettings:
    return config.sources.gateway or GatewaySettings()


def _upstreams(settings: GatewaySettings) -> dict[str, UpstreamTarget]:
    upstreams: dict[str, UpstreamTarget] = {}
    for provider, upstream in settings.upstreams.items():
        key = find_secret(
            upstream.api_key_file,
            upstream.api_key_env,
            f"sources.gateway.upstreams.{provider}",
        )
        auth: tuple[tuple[str, str], ...] = ()
        if key is None:
            log.warning(
                "no provider key for %s (set api_key_env or api_key_file): "
                "requests are forwarded without provider auth",
                provider,
            )
        else:
            header, template = _AUTH_HEADER[provider]
            auth = ((header, template.format(key)),)
        upstreams[provider] = UpstreamTarget(upstream.base_url, auth)
    return upstreams


def proxy_parts(config: Config) -> ProxyParts:
    """The parts of the proxy a config reload may change; raises SecretError when a
    configured provider key is unreadable."""
    settings = settings_of(config)
    return ProxyParts(
        upstreams=_upstreams(settings),
        azure_deployments=dict(settings.azure_deployments),
        allow_unattributed=settings.allow_unattributed,
        pricer=Pricer(config.prices),
        attributor=Attributor(config, settings.header_refinement, settings.max_agents_per_team),
    )


def build_gateway(config: Config, throttle_db: Path | None = None) -> Gateway:
    """The application for `config`; raises SecretError when a configured secret is unreadable."""
    settings = settings_of(config)
    parts = proxy_parts(config)
    token = admin_token(settings)
    if token is None:
        log.warning("no admin token configured: the throttle admin API answers 403")

    store = ThrottleStore(throttle_db or Path(settings.throttle_db))
    table = ThrottleTable(store)
    metrics = GatewayMetrics(table, config.currency)
    proxy = Proxy(
        parts,
        table=table,
        metrics=metrics,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
    )

    admin_api = admin.AdminApi(table, token, proxy.projects_by_team, proxy.model_labels)
    return Gateway(
        table,
        metrics,
        store,
        proxy,
        admin_api,
        shutdown_scrape_wait_s=settings.shutdown_scrape_wait_s,
    )


async def _purge_loop(table: ThrottleTable) -> None:
    while True:
        await asyncio.sleep(PURGE_INTERVAL_S)
        try:
            for rule_id in table.purge_expired():
                log.info("throttle %s expired", rule_id)
        except Exception:  # keep serving; the next round retries
            log.exception("purging expired throttles failed")
