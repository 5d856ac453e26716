"""The actuator's HTTP server (aiohttp): POST /alerts, GET /metrics, GET /healthz.

POST /alerts answers:
- 401 without the bearer token or with a wrong one (compared in constant time);
- 400 for a body that is not JSON, 422 for a payload that is not webhook v4 or holds
  no valid alert (the message names the field); nothing is recorded or done for either.
  An invalid alert beside valid ones is refused alone (decision `refused`, the reason
  as its result) and the others are decided as usual;
- 200 once every alert's decision is committed to the store (fsynced);
- 202 likewise, when an apply failed in a way a retry may fix after its intent was
  recorded (result `error: will retry`): the actuator retries it itself in the
  background (Engine.retry_applies, started with the app) until it succeeds or the
  alert resolves. Alertmanager must see the firing delivered: it sends a resolve only
  to a receiver that got the firing, so a 503 kept up until the alert resolved would
  leave what the apply changed in force for good;
- 503 when a redelivery may fix a failure and the actuator cannot retry it itself: a
  target that could not be read before anything was recorded, or an undo that failed
  (Alertmanager redelivers the resolve until the undo succeeds; the engine resumes
  idempotently). Alertmanager retries a delivery only while the alert's state is
  unchanged. Also when the sender left before the answer (targets slower than
  Alertmanager's notify timeout): the applies the 202 would have left to the retry
  loop are left to Alertmanager's redelivery instead, since it counts the firing as
  undelivered and would send no resolve. An apply that finished in that time stays
  applied; keep the targets' timeouts well under the route's group_interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from aispend import metrics as m
from aispend.actuators.engine import RETRY_FIRST_S, RETRY_MOST_S, Engine
from aispend.actuators.payload import Alert, PayloadError, parse_payload
from aispend.actuators.settings import ActionsSettings
from aispend.actuators.store import Store
from aispend.actuators.targets import build_targets
from aispend.actuators.targets.base import Target

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024
TargetsFactory = Callable[[aiohttp.ClientSession], Mapping[str, Target]]

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)


class ActiveActionsCollector:
    """aispend_actuator_active_actions{target,team}, read from the store per scrape."""

    def __init__(self, store: Store):
        self._store = store

    def describe(self) -> Iterable[Metric]:
        return [m.ACTUATOR_ACTIVE_ACTIONS.gauge()]

    def collect(self) -> Iterable[Metric]:
        family = m.ACTUATOR_ACTIVE_ACTIONS.gauge()
        for (target, team), count in sorted(self._store.active_counts().items()):
            family.add_metric([target, team], count)
        yield family


def build_app(
    settings: ActionsSettings,
    criticality: Mapping[str, str],
    store: Store,
    token: str,
    targets_factory: TargetsFactory | None = None,
    registry: CollectorRegistry | None = None,
    retry_backoff: tuple[float, float] = (RETRY_FIRST_S, RETRY_MOST_S),
) -> web.Application:
    """`retry_backoff`: the retry loop's first and longest wait, in seconds."""
    if not token.strip():  # an empty token would let `Authorization: Bearer` through
        raise ValueError("the actuator's bearer token is empty")
    registry = registry or CollectorRegistry(auto_describe=True)
    actions = Counter(
        m.ACTUATOR_ACTIONS.family_name,
        m.ACTUATOR_ACTIONS.full_help,
        list(m.ACTUATOR_ACTIONS.labels),
        registry=registry,
    )
    requests = Counter(
        m.ACTUATOR_WEBHOOK_REQUESTS.family_name,
        m.ACTUATOR_WEBHOOK_REQUESTS.full_help,
        list(m.ACTUATOR_WEBHOOK_REQUESTS.labels),
        registry=registry,
    )
    # Zero series for each target's failures, so that the first failure is an increase
    # (AISpendActuatorFailing reads increase(); a series born at 1 shows none).
    for target in settings.targets:
        for action in ("apply", "undo"):
            actions.labels(target, action, "error")
    registry.register(ActiveActionsCollector(store))
    expected = token.encode("utf-8")
    factory = targets_factory or (
        lambda session: build_targets(settings.targets, session, [settings.token_env])
    )

    def count(target: str, action: str, result: str) -> None:
        actions.labels(target, action, result).inc()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            engine = Engine(settings, criticality, store, factory(session), count)
            app[ENGINE] = engine
            retries = asyncio.create_task(engine.retry_applies(*retry_backoff))
            try:
                yield
            finally:
                retries.cancel()  # an apply left to it stays applying: retried at start-up
                with contextlib.suppress(asyncio.CancelledError):
                    await retries

    def answer(status: int, body: dict[str, Any]) -> web.Response:
        requests.labels(str(status)).inc()
        headers = {"WWW-Authenticate": 'Bearer realm="aispend-actuator"'} if status == 401 else {}
        return web.json_response(body, status=status, headers=headers)

    async def post_alerts(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        scheme, _, presented = auth.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode("utf-8", "replace"), expected
        ):
            return answer(401, {"error": "missing or wrong bearer token"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return answer(413, {"error": f"body larger than {MAX_BODY} bytes"})
        except RequestPayloadError as exc:  # e.g. Content-Encoding: gzip on a plain body
            return answer(400, {"error": f"body cannot be read: {exc}"})
        except ConnectionResetError:  # the client left mid-body: nothing to decide on
            return answer(400, {"error": "the client closed the connection mid-body"})
        try:
            payload = parse_payload(body)
        except PayloadError as exc:
            status = 400 if exc.message.startswith("body is not valid JSON") else 422
            return answer(status, {"error": exc.message})
        engine = request.app[ENGINE]
        results: list[dict[str, str]] = []
        for fingerprint, why in payload.invalid:  # nothing recorded: nothing to undo
            log.warning("alert %r refused: %r", fingerprint, why)  # %r: no forged lines
            results.append({"fingerprint": fingerprint, "decision": "refused", "result": why})
        retry = False
        later: list[Alert] = []  # applies left to the retry loop, if the answer is 2xx

        async def hand_back() -> None:
            # Not 2xx after all: Alertmanager did not get these firings either, so it
            # sends no resolve if they end before a redelivery gets through.
            for each in later:
                with contextlib.suppress(Exception):  # the store failing: logged by it
                    await engine.hand_back(each)

        for alert in payload.alerts:
            try:
                outcome = await engine.handle(alert)
            except Exception:  # the store failed (disk full...): a retry may help
                log.exception("cannot record the decision for alert %s", alert.fingerprint)
                await hand_back()
                return answer(500, {"error": "cannot record the decision; retry"})
            retry = retry or outcome.retry
            if outcome.later:
                later.append(alert)
            results.append(
                {
                    "fingerprint": outcome.fingerprint,
                    "decision": outcome.decision,
                    "result": outcome.result,
                }
            )
            log.info(
                "alert %r %s (%s): %s %s",  # %r: an alertname cannot forge log lines
                alert.labels.get("alertname", "?"),
                alert.fingerprint,
                alert.status,
                outcome.decision,
                outcome.result,
            )
        if retry:
            await hand_back()
            return answer(503, {"error": "a target is unavailable; retry", "alerts": results})
        if later and (request.transport is None or request.transport.is_closing()):
            # Alertmanager stopped waiting (its notify timeout, max(group_interval, 10s))
            # before the targets answered: the firing counts as undelivered there, so it
            # sends no resolve if the alert ends before a redelivery gets through. The
            # retry loop must not apply what nothing would undo.
            log.warning(
                "the sender left before the answer (a target took longer than"
                " Alertmanager's notify timeout): %d apply(s) left to its redelivery",
                len(later),
            )
            await hand_back()
            return answer(503, {"error": "answered after the sender left", "alerts": results})
        return answer(202 if later else 200, {"alerts": results})

    async def get_metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application(client_max_size=MAX_BODY)
    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/alerts", post_alerts)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    return app
