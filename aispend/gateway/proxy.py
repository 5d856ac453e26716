"""The forwarding handler: attribute, check throttles, forward, meter, answer.

Status codes the gateway itself produces (all with an OpenAI-style JSON error):
  400 request body is not a JSON object, or   404 path not metered / no upstream
      the target is an absolute URL          429 throttled (Retry-After, rule id)
  401 unknown client key
  502 upstream unreachable, truncated body, a 2xx body that is not JSON, or a body
      larger than MAX_RESPONSE_BYTES
  504 upstream did not connect within connect_timeout_s or answer within read_timeout_s
Upstream 4xx/5xx pass through with their status and body. A stream that breaks
after its headers were sent cannot change status: the client connection is closed
so the client sees the break, and the request is counted as usage unknown. So is a
stream the client leaves before the provider's closing usage count (Anthropic's first
count is provisional; a chat/completions stream left after its finish_reason is read on
for up to CLOSING_USAGE_WAIT_S to get the count), a non-streamed request the client
leaves before its answer (the upstream connection is closed: status 499), and a stream
the provider ends with its error event (`upstream_errors{reason="stream_error"}`;
usage counted when the event carries it).

Every request is recorded exactly once (`_Outcome.record`), tokens only when the
usage was read, `aispend_llm_usage_unknown_total` otherwise.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from aispend.gateway import http_client, routes
from aispend.gateway.attribution import UNATTRIBUTED, Attribution, Attributor
from aispend.gateway.http_server import Answer, ClientGone, Reply, Request, json_answer
from aispend.gateway.metrics import GatewayMetrics
from aispend.gateway.throttle import ThrottleTable
from aispend.gateway.usage import MAX_RESPONSE_BYTES, EventTooLarge, SSEUsageReader, parse_body
from aispend.metrics import OTHER
from aispend.parsing import loads_json
from aispend.pricing import Pricer, TokenUsage

# Never forwarded upstream: hop-by-hop headers, the client's key, our own headers.
_DROP_REQUEST = frozenset(
    {
        "host", "authorization", "api-key", "x-api-key", "content-length", "connection",
        "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-connection", "accept-encoding", "cookie", "x-aispend-agent", "x-aispend-project",
    }
)  # fmt: skip
_DROP_RESPONSE = frozenset(
    {
        "content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive",
        "server", "date", "set-cookie", "trailer", "upgrade",
    }
)  # fmt: skip
_STREAM_KINDS_WITH_USAGE_OPTION = frozenset({"chat", "completions"})
# Azure OpenAI answers 400 "Unknown parameter: 'stream_options'" before this api-version.
_AZURE_STREAM_OPTIONS_SINCE = "2024-08-01"
_API_VERSION_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(-preview)?")
CLOSING_USAGE_WAIT_S = 5.0
"""How long a stream whose client left after its finish_reason is read on for its usage
count (the provider sends it right after the last choice)."""
MAX_SERVED_DEPLOYMENTS = 1000
"""Azure deployments whose served model the gateway remembers for throttle matching."""


@dataclass(frozen=True)
class UpstreamTarget:
    base_url: str
    auth_headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ProxyParts:
    """The parts of the proxy a config reload may swap (`app.proxy_parts` builds them)."""

    upstreams: dict[str, UpstreamTarget]
    azure_deployments: dict[str, str]
    allow_unattributed: bool
    pricer: Pricer
    attributor: Attributor


async def _read_closing_usage(
    reply: Reply, upstream: http_client.UpstreamResponse, reader: SSEUsageReader
) -> None:
    """Read on to the usage count of a stream whose client left after its finish_reason.

    The generation is over (a request for one choice), so reading costs nothing more at
    the provider, and the count it bills by comes next (`stream_options.include_usage`):
    an SDK loop that breaks at finish_reason would otherwise leave the request unbilled.
    At most CLOSING_USAGE_WAIT_S; anything else that ends the read leaves the usage
    unknown."""
    reply.on_client_gone(None)  # a close noticed late must not end this read too
    upstream.clear_interrupt()
    try:
        async with asyncio.timeout(CLOSING_USAGE_WAIT_S):
            while not (reader.usage_final or reader.done):
                chunk = await upstream.readany()
                if not chunk:
                    return
                reader.feed(chunk)
    except (TimeoutError, http_client.UpstreamError, EventTooLarge, ClientGone):
        return


def error_response(
    status: int, message: str, type_: str, code: str, headers: dict[str, str] | None = None,
    **extra: str,
) -> Answer:  # fmt: skip
    body = {"error": {"message": message, "type": type_, "code": code, **extra}}
    return json_answer(status, body, (headers or {}).items())


class _Outcome:
    """Collects one request's facts and records them exactly once."""

    __slots__ = (
        "attribution",
        "match_models",
        "model",
        "recorded",
        "route",
        "service_tier",
        "status",
        "upstream_s",
    )

    def __init__(self, route: routes.Route, attribution: Attribution) -> None:
        self.route = route
        self.attribution = attribution
        self.model = OTHER
        self.service_tier: str | None = None
        self.match_models: tuple[str, ...] = ()
        self.status = 0
        self.upstream_s = 0.0
        self.recorded = False


class Proxy:
    def __init__(
        self,
        parts: ProxyParts,
        *,
        table: ThrottleTable,
        metrics: GatewayMetrics,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        self._attributor = parts.attributor
        self.reconfigure(parts)
        # Azure deployment -> label of the model it last served: a throttle on that model
        # then stops the deployment too, as its spend is labelled with that model.
        self._served_by_deployment: dict[str, str] = {}
        self._table = table
        self._metrics = metrics
        self._client = http_client.UpstreamClient(
            connect_timeout=connect_timeout_s, read_timeout=read_timeout_s
        )

    def reconfigure(self, parts: ProxyParts) -> None:
        """Swap in a reloaded config's parts (called on the event loop, between requests
        of this thread: a request in flight keeps the objects it already read)."""
        self._upstreams = parts.upstreams
        self._azure_deployments = parts.azure_deployments
        self._allow_unattributed = parts.allow_unattributed
        self._pricer = parts.pricer
        if parts.attributor is not self._attributor:
            parts.attributor.keep_agent_labels(self._attributor)
        self._attributor = parts.attributor

    def projects_by_team(self) -> dict[str, frozenset[str]]:
        """The teams and projects of the config now applied (a reload changes them)."""
        return self._attributor.projects_by_team

    def model_labels(self, model: str) -> frozenset[str]:
        """The model labels the spend of a request naming `model` gets, one per provider
        (from the prices of the config now applied)."""
        return frozenset(
            self._pricer.label(provider, model, log_unknown=False)
            for provider in routes.OTEL_PROVIDER
        )

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------ entry point

    async def handle(self, request: Request, reply: Reply) -> None:
        answer = await self._answer(request, reply)
        if answer is not None:
            reply.send(*answer)

    async def _answer(self, request: Request, reply: Reply) -> Answer | None:
        """The whole response, or None when it was streamed to `reply` already."""
        started = time.perf_counter()
        route = routes.match(request.path)
        if route is None:
            return error_response(
                404,
                f"aispend gateway does not meter {request.path}; supported paths: "
                + ", ".join(routes.SUPPORTED),
                "invalid_request_error",
                "unknown_path",
            )
        if request.method != "POST":
            return error_response(
                405, f"{request.path} takes POST", "invalid_request_error", "method_not_allowed"
            )
        attribution = self._attributor.attribute(request.headers, self._table.agents_named)
        if attribution is None:
            if not self._allow_unattributed:
                outcome = _Outcome(route, UNATTRIBUTED)
                outcome.status = 401
                self._finish(outcome, started, None, operation_ran=False)
                return error_response(
                    401,
                    "unknown API key: use a key listed under api_keys in aispend.yaml",
                    "invalid_request_error",
                    "invalid_api_key",
                )
            attribution = UNATTRIBUTED
        outcome = _Outcome(route, attribution)
        try:
            return await self._forward(request, reply, route, outcome, started)
        finally:
            if not outcome.recorded:  # cancelled or an unexpected error
                outcome.status = outcome.status or 499
                self._finish(outcome, started, None, operation_ran=False)

    # ------------------------------------------------------------ forwarding

    async def _forward(
        self,
        request: Request,
        reply: Reply,
        route: routes.Route,
        outcome: _Outcome,
        started: float,
    ) -> Answer | None:
        if not request.target.startswith("/"):  # absolute form: POST http://host/path
            outcome.status = 400
            self._finish(outcome, started, None, operation_ran=False)
            return error_response(
                400,
                "request target must be a path (/v1/...), not an absolute URL: "
                "use the gateway's URL as the SDK's base URL, not as a proxy",
                "invalid_request_error",
                "invalid_request_target",
            )
        target = self._upstreams.get(route.provider)
        body = request.body
        try:
            data = loads_json(body)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            outcome.status = 400
            self._finish(outcome, started, None, operation_ran=False)
            return error_response(
                400, "request body must be a JSON object", "invalid_request_error", "invalid_json"
            )
        requested = self._requested_model(route, data)
        outcome.model = self._pricer.label(route.provider, requested)
        att = outcome.attribution
        models: tuple[str, ...] = (requested.lower(), outcome.model)
        served = self._served_by_deployment.get(route.deployment or "")
        if served is not None:
            models = (*models, served)
        outcome.match_models = models
        refusal = self._table.check(att.team, att.project, att.agent, models)
        if refusal is not None:
            rule = refusal.rule
            outcome.status = 429
            self._metrics.inc(self._metrics.throttled, (att.team, att.project, att.agent, rule.id))
            self._finish(outcome, started, None, operation_ran=False)
            return error_response(
                429,
                f"throttled by aispend rule {rule.id}: {rule.reason}",
                "rate_limit_exceeded",
                "aispend_throttled",
                headers={"Retry-After": str(refusal.retry_after)},
                rule=rule.id,
                reason=rule.reason,
            )
        if target is None:
            outcome.status = 404
            self._finish(outcome, started, None, operation_ran=False)
            return error_response(
                404,
                f"this gateway has no upstream for {route.provider} "
                f"(set sources.gateway.upstreams.{route.provider})",
                "invalid_request_error",
                "no_upstream",
            )
        stream = data.get("stream") is True
        drop_usage_chunk = False
        if stream and _takes_usage_option(route, request.query):
            options = data.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                options = dict(options) if isinstance(options, dict) else {}
                options["include_usage"] = True
                data["stream_options"] = options
                body = json.dumps(data).encode()
                drop_usage_chunk = True
        headers = self._upstream_headers(request, target)
        # Path and query as the client encoded them; never its scheme, host or fragment.
        query = f"?{request.query}" if request.query else ""
        t_up = time.perf_counter()

        # Until the answer ends, a client that leaves interrupts the wait for the upstream
        # (its head, its body, each stream read).
        def stop_when_client_leaves(response: http_client.UpstreamResponse) -> None:
            reply.on_client_gone(lambda: response.interrupt(ClientGone()))

        try:
            upstream = await self._client.post(
                target.base_url, request.raw_path + query, headers, body, stop_when_client_leaves
            )
        except ClientGone:
            outcome.upstream_s += time.perf_counter() - t_up
            self._client_left(outcome, started)
            return None
        except http_client.UpstreamError as exc:
            outcome.upstream_s += time.perf_counter() - t_up
            return self._upstream_failed(route, outcome, started, exc)
        except http_client.HeaderError as exc:
            outcome.status = 400
            self._finish(outcome, started, None, operation_ran=False)
            return error_response(400, str(exc), "invalid_request_error", "invalid_header")
        outcome.upstream_s += time.perf_counter() - t_up
        try:
            content_type = upstream.header("Content-Type")
            if upstream.status == 200 and content_type.lower().startswith("text/event-stream"):
                one_choice = data.get("n") in (None, 1)
                await self._relay_stream(
                    reply, route, outcome, started, upstream, drop_usage_chunk, one_choice
                )
                return None
            return await self._relay_body(route, outcome, started, upstream)
        except ClientGone:
            self._client_left(outcome, started)
            return None
        finally:
            upstream.release()

    def _client_left(self, outcome: _Outcome, started: float) -> None:
        """The client closed its connection before the answer: the upstream connection is
        closed (the provider stops generating; an SDK that timed out and retries would
        otherwise leave every attempt running), and the usage is unknown."""
        outcome.status = 499
        self._finish(
            outcome, started, None, operation_ran=True, unknown_reason="client_disconnected"
        )

    async def _relay_body(
        self,
        route: routes.Route,
        outcome: _Outcome,
        started: float,
        upstream: http_client.UpstreamResponse,
    ) -> Answer:
        t_up = time.perf_counter()
        try:
            payload = await upstream.read(MAX_RESPONSE_BYTES)  # ClientGone: _forward
        except (http_client.UpstreamError, http_client.BodyTooLarge) as exc:
            outcome.upstream_s += time.perf_counter() - t_up
            return self._upstream_failed(route, outcome, started, exc)
        outcome.upstream_s += time.perf_counter() - t_up
        status = upstream.status
        headers = _response_headers(upstream)
        if status >= 300:
            outcome.status = status
            self._finish(outcome, started, None, operation_ran=True, unknown_reason=None)
            return status, headers, payload
        parsed = parse_body(route.kind, payload)
        if parsed.malformed:
            outcome.status = 502
            self._metrics.inc(self._metrics.upstream_errors, (route.provider, "malformed_response"))
            self._finish(outcome, started, None, operation_ran=True, unknown_reason="malformed")
            return error_response(
                502,
                f"the {route.provider} upstream answered {status} with a body that is not JSON",
                "api_error",
                "bad_upstream_response",
            )
        outcome.status = status
        self._set_response_model(route, outcome, parsed.model)
        outcome.service_tier = parsed.service_tier
        self._finish(outcome, started, parsed.usage, operation_ran=True)
        return status, headers, payload

    async def _relay_stream(
        self,
        reply: Reply,
        route: routes.Route,
        outcome: _Outcome,
        started: float,
        upstream: http_client.UpstreamResponse,
        drop_usage_chunk: bool,
        one_choice: bool,
    ) -> None:
        """`one_choice`: the request asked for one choice (`n` unset or 1), so the first
        finish_reason ends the generation (with more, the others may still generate)."""
        outcome.status = upstream.status
        reader = SSEUsageReader(route.kind, drop_usage_chunk)
        broken: str | None = None
        client_gone = False
        write_s = 0.0
        t_w = time.perf_counter()
        try:
            await reply.start(upstream.status, _response_headers(upstream))
        except ClientGone:  # gone while the upstream was thinking: it ran all the same
            client_gone = True
        write_s += time.perf_counter() - t_w
        # A client that leaves while the upstream is silent (a reasoning model thinking)
        # ends the wait at once (`_forward`'s interrupt): the upstream is closed (the
        # provider stops generating) and the request is a disconnect, not an upstream
        # timeout minutes later.
        while not client_gone:
            t_up = time.perf_counter()
            try:
                chunk = await upstream.readany()
            except ClientGone:
                outcome.upstream_s += time.perf_counter() - t_up
                client_gone = True
                break
            except http_client.UpstreamError as exc:
                outcome.upstream_s += time.perf_counter() - t_up
                broken = "timeout" if isinstance(exc, http_client.UpstreamTimeout) else "truncated"
                break
            outcome.upstream_s += time.perf_counter() - t_up
            if not chunk:
                break
            try:
                events = reader.feed(chunk)
            except EventTooLarge:
                broken = "too_large"
                break
            out = chunk if not drop_usage_chunk else b"".join(events)
            if not out:
                continue
            t_w = time.perf_counter()
            try:
                await reply.write(out)
            except ClientGone:
                client_gone = True
                break
            write_s += time.perf_counter() - t_w
        outcome.upstream_s += write_s  # time waiting on the client is not gateway overhead
        generated = reader.generated and one_choice
        if client_gone and broken is None and generated and not reader.usage_final:
            t_up = time.perf_counter()
            await _read_closing_usage(reply, upstream, reader)
            outcome.upstream_s += time.perf_counter() - t_up
        usage = reader.usage if reader.usage_final else None  # not a provisional count
        if broken is None and not client_gone and not reader.done and usage is None:
            broken = "truncated"
        if broken is not None:
            self._metrics.inc(self._metrics.upstream_errors, (route.provider, broken))
        elif reader.failed:
            self._metrics.inc(self._metrics.upstream_errors, (route.provider, "stream_error"))
        self._set_response_model(route, outcome, reader.model)
        outcome.service_tier = reader.service_tier
        if usage is not None:
            self._finish(outcome, started, usage, operation_ran=True)
        else:
            failed = "upstream_error" if reader.failed else "missing_usage"
            reason = "client_disconnected" if client_gone else (broken or failed)
            self._finish(outcome, started, None, operation_ran=True, unknown_reason=reason)
        if client_gone or broken is not None:
            # The status line is gone already: close the connection so the client sees
            # the break instead of a clean end of stream.
            reply.abort()
            return
        if drop_usage_chunk and reader.pending():
            await reply.write(reader.pending())
        await reply.end()

    # ------------------------------------------------------------ helpers

    def _upstream_failed(
        self, route: routes.Route, outcome: _Outcome, started: float, exc: BaseException
    ) -> Answer:
        if isinstance(exc, http_client.ConnectFailed) and exc.timed_out:
            status, reason, code = 504, "connect", "upstream_timeout"
            message = f"the {route.provider} upstream did not accept a connection in time"
        elif isinstance(exc, http_client.UpstreamTimeout):
            status, reason, code = 504, "timeout", "upstream_timeout"
            message = f"the {route.provider} upstream did not answer in time"
        elif isinstance(exc, http_client.BodyTooLarge):
            status, reason, code = 502, "too_large", "upstream_too_large"
            message = (
                f"the {route.provider} upstream's response is larger than"
                f" {MAX_RESPONSE_BYTES} bytes"
            )
        elif isinstance(exc, http_client.ConnectionBroken) and exc.mid_body:
            status, reason, code = 502, "truncated", "upstream_truncated"
            message = f"the {route.provider} upstream closed the connection mid-response"
        elif isinstance(exc, http_client.ConnectFailed):
            status, reason, code = 502, "connect", "upstream_unreachable"
            message = f"cannot connect to the {route.provider} upstream"
        else:
            status, reason, code = 502, "connection", "upstream_unreachable"
            message = f"the {route.provider} upstream connection failed: {exc}"
        outcome.status = status
        self._metrics.inc(self._metrics.upstream_errors, (route.provider, reason))
        # A request that reached the upstream may have been billed: its usage is unknown.
        unknown = None if reason == "connect" else reason
        self._finish(outcome, started, None, operation_ran=True, unknown_reason=unknown)
        return error_response(status, message, "api_error", code)

    def _requested_model(self, route: routes.Route, data: dict[str, Any]) -> str:
        if route.deployment is not None:
            return self._azure_deployments.get(route.deployment, route.deployment)
        model = data.get("model")
        return model if isinstance(model, str) and model else OTHER

    def _set_response_model(
        self, route: routes.Route, outcome: _Outcome, response_model: str | None
    ) -> None:
        if not response_model:
            return
        label = self._pricer.label(route.provider, response_model, log_unknown=False)
        if label == OTHER and outcome.model != OTHER:
            # A snapshot the price table does not know yet (a provider's new release):
            # priced as the model asked for, not at 0 under "other".
            self._pricer.log_priced_as(route.provider, response_model, outcome.model)
            return
        outcome.model = response_model  # priced (and folded) in _finish
        served = self._served_by_deployment
        if route.deployment is not None and (
            route.deployment in served or len(served) < MAX_SERVED_DEPLOYMENTS
        ):
            served[route.deployment] = label

    def _upstream_headers(self, request: Request, target: UpstreamTarget) -> list[tuple[str, str]]:
        # The provider's auth header names and Accept-Encoding are in _DROP_REQUEST, so
        # the client's copies are gone before ours are added.
        headers = [
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _DROP_REQUEST
        ]
        headers.extend(target.auth_headers)
        headers.append(("Accept-Encoding", "identity"))
        return headers

    def _finish(
        self,
        outcome: _Outcome,
        started: float,
        usage: TokenUsage | None,
        *,
        operation_ran: bool,
        unknown_reason: str | None = "missing_usage",
    ) -> None:
        """Record the request: tokens and cost when usage is known, else why not."""
        if outcome.recorded:
            return
        outcome.recorded = True
        m = self._metrics
        route = outcome.route
        att = outcome.attribution
        provider = route.provider
        model = outcome.model
        if usage is not None:
            priced = self._pricer.price(provider, model, usage, outcome.service_tier)
            model = priced.model
            if not priced.priced:
                m.inc(m.unpriced, (provider, OTHER))
            m.record_usage(
                att.team, att.project, att.agent, provider, model, route.operation,
                routes.OTEL_PROVIDER[provider], usage, priced.total,
            )  # fmt: skip
            self._table.charge_tokens(
                att.team, att.project, att.agent, (*outcome.match_models, model),
                usage.input + usage.cached_input + usage.output,
            )  # fmt: skip
        else:
            model = self._pricer.label(provider, model)
            if operation_ran and unknown_reason is not None:
                m.inc(m.usage_unknown, (att.team, provider, model, unknown_reason))
        m.inc(m.requests, (att.team, att.project, att.agent, provider, model, str(outcome.status)))
        total = time.perf_counter() - started
        if operation_ran:
            m.observe(
                m.duration,
                (route.operation, routes.OTEL_PROVIDER[provider], model, att.team),
                total,
            )
        m.observe(m.overhead, (provider,), max(0.0, total - outcome.upstream_s))


def _takes_usage_option(route: routes.Route, query: str) -> bool:
    """Whether the upstream accepts `stream_options.include_usage` on this request."""
    if route.kind not in _STREAM_KINDS_WITH_USAGE_OPTION:
        return False
    if route.provider != "azure":
        return True
    versions = urllib.parse.parse_qs(query).get("api-version", [])
    found = _API_VERSION_DATE.fullmatch(versions[0]) if len(versions) == 1 else None
    return found is not None and found.group(1) >= _AZURE_STREAM_OPTIONS_SINCE


def _response_headers(upstream: http_client.UpstreamResponse) -> list[tuple[str, str]]:
    return [(name, value) for name, value in upstream.headers if name.lower() not in _DROP_RESPONSE]
