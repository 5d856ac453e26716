"""Azure APIM target against a local HTTPS server speaking the ARM wire format.

Simulated: Azure Resource Manager (no Azure here). The fake serves
`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/
{svc}/subscriptions/{sid}` GET and PATCH (Subscription_Get / Subscription_Update,
api-version 2022-08-01), requires `api-version`, `If-Match` on PATCH and the bearer
token, and answers with the documented SubscriptionContract shape. TLS is real
(trustme); the token comes from a static TokenCredential (azure-core's AccessToken),
standing in for the azure-identity credential used in production.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from azure.core.credentials import AccessToken

from aispend.actuators.settings import AzureApimTargetSettings
from aispend.actuators.targets.azure_apim import AzureApimTarget
from aispend.actuators.targets.base import Action, TargetError
from tests.actuator.fakes import Seen, ThreadedServer, _seen

ARM_TOKEN = "arm-token-eyJ0eXAi.test"
PATH = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-ai"
    "/providers/Microsoft.ApiManagement/service/apim-ai/subscriptions/search-rerank-agent"
)


class StaticCredential:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(ARM_TOKEN, int(time.time()) + 3600)


class FakeArm:
    def __init__(self) -> None:
        self.state = "active"
        self.seen: list[Seen] = []
        self.fail_with: int | None = None
        self.garbage: bytes | None = None
        """When set, an authorised request is answered 200 with this body."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route(
            "*",
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/"
            "Microsoft.ApiManagement/service/{svc}/subscriptions/{sid}",
            self.handle,
        )
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(await _seen(request))
        if request.headers.get("Authorization") != f"Bearer {ARM_TOKEN}":
            return web.json_response({"error": {"code": "AuthenticationFailed"}}, status=401)
        if request.query.get("api-version") != "2022-08-01":
            return web.json_response({"error": {"code": "MissingApiVersionParameter"}}, status=400)
        if self.fail_with:
            return web.json_response({"error": {"code": "ServerBusy"}}, status=self.fail_with)
        if self.garbage is not None:
            return web.Response(body=self.garbage, content_type="application/json")
        if request.match_info["sid"] != "search-rerank-agent":
            return web.json_response({"error": {"code": "ResourceNotFound"}}, status=404)
        if request.method == "PATCH":
            if request.headers.get("If-Match") != "*":
                return web.json_response({"error": {"code": "PreconditionRequired"}}, status=428)
            self.state = self.seen[-1].body["properties"]["state"]
        return web.json_response(
            {
                "id": request.path,
                "type": "Microsoft.ApiManagement/service/subscriptions",
                "name": request.match_info["sid"],
                "properties": {
                    "displayName": "rerank-agent",
                    "scope": "/apis",
                    "state": self.state,
                },
            }
        )


@pytest.fixture
def arm() -> Iterator[tuple[FakeArm, ThreadedServer, ssl.SSLContext]]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    fake = FakeArm()
    server = ThreadedServer(fake.app(), ssl_context=server_ctx).start()
    try:
        yield fake, server, client_ctx
    finally:
        server.stop()


ACTION = Action(
    "f00d",
    "2024-05-01T10:00:00+00:00",
    {"team": "search", "agent": "rerank-agent"},
    {},
    "pause-apim",
    "pause",
)


def target(server: ThreadedServer, ctx: ssl.SSLContext, cred: StaticCredential) -> AzureApimTarget:
    settings = AzureApimTargetSettings(
        type="azure_apim",
        subscription_id="00000000-0000-0000-0000-000000000000",
        resource_group="rg-ai",
        service_name="apim-ai",
        sid="${team}-${agent}",
        endpoint=server.url,
    )
    return AzureApimTarget("apim", settings, None, credential=cred, ssl_context=ctx)  # type: ignore[arg-type]


def cycle(t: AzureApimTarget, do_undo: bool = True) -> tuple[dict[str, Any], str, str]:
    async def go() -> tuple[dict[str, Any], str, str]:
        async with aiohttp.ClientSession() as session:
            t._session = session
            data = await t.prepare(ACTION)
            applied = await t.apply(ACTION, data)
            undone = await t.undo(ACTION, data) if do_undo else ""
            return data, applied, undone

    return asyncio.run(go())


def test_suspend_then_reactivate(arm):
    fake, server, ctx = arm
    cred = StaticCredential()
    data, applied, _ = cycle(target(server, ctx, cred), do_undo=False)
    assert data == {"sid": "search-rerank-agent", "state": "active"}
    assert applied == "APIM subscription search-rerank-agent suspended (was active)"
    assert fake.state == "suspended"
    get, patch = fake.seen
    assert (get.method, get.path, get.query) == ("GET", PATH, {"api-version": "2022-08-01"})
    assert (patch.method, patch.path, patch.query) == ("PATCH", PATH, {"api-version": "2022-08-01"})
    assert patch.headers["If-Match"] == "*"
    assert patch.headers["Content-Type"] == "application/json"
    assert patch.body == {"properties": {"state": "suspended"}}
    assert cred.scopes[0] == (f"{server.url}/.default",)

    data, _, undone = cycle(target(server, ctx, cred))
    # Already suspended when this second cycle started: undo restores "suspended".
    assert data["state"] == "suspended" and fake.state == "suspended"
    fake.state = "active"
    fake.seen.clear()
    data, _, undone = cycle(target(server, ctx, cred))
    assert undone == "APIM subscription search-rerank-agent back to active"
    assert fake.seen[-1].body == {"properties": {"state": "active"}}
    assert fake.state == "active"


def test_errors_are_classified(arm):
    fake, server, ctx = arm
    fake.fail_with = 503
    with pytest.raises(TargetError, match="HTTP 503") as err:
        cycle(target(server, ctx, StaticCredential()))
    assert err.value.retryable is True
    fake.fail_with = None
    t = target(server, ctx, StaticCredential())
    bad = Action("f00d", "x", {"team": "search", "agent": "other"}, {}, "r", "pause")

    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            t._session = session
            await t.prepare(bad)

    with pytest.raises(TargetError, match="HTTP 404") as err:
        asyncio.run(go())
    assert err.value.retryable is False


@pytest.mark.parametrize("body", [b"<html>gateway timeout</html>", b"[" * 100_000])
def test_answer_that_is_not_json_is_a_retryable_error(arm, body):
    fake, server, ctx = arm
    fake.garbage = body
    with pytest.raises(TargetError) as err:
        cycle(target(server, ctx, StaticCredential()))
    assert err.value.retryable is True
    assert fake.state == "active"


def test_untrusted_certificate_is_refused(arm):
    _, server, _ = arm
    with pytest.raises(TargetError, match=r"(?i)certificate") as err:
        cycle(target(server, ssl.create_default_context(), StaticCredential()))
    assert err.value.retryable is True


def test_undo_leaves_a_subscription_reactivated_by_hand(arm):
    fake, server, ctx = arm
    t = target(server, ctx, StaticCredential())

    async def go() -> str:
        async with aiohttp.ClientSession() as session:
            t._session = session
            data = await t.prepare(ACTION)
            await t.apply(ACTION, data)
            fake.state = "active"  # on-call re-activated it while the alert still fired
            fake.seen.clear()
            return await t.undo(ACTION, data)

    assert asyncio.run(go()) == (
        "APIM subscription search-rerank-agent is active, not suspended: left as it is"
    )
    assert [s.method for s in fake.seen] == ["GET"]


@pytest.mark.parametrize("sid", [".", "..", "..."])
def test_subscription_id_of_dots_is_refused(arm, sid):
    # yarl would resolve "." and ".." in the URL path to the APIM service itself.
    fake, server, ctx = arm
    t = target(server, ctx, StaticCredential())
    bad = Action("f00d", "x", {"team": sid, "agent": ""}, {}, "r", "pause")
    t.settings = t.settings.model_copy(update={"sid": "${team}"})
    with pytest.raises(TargetError, match="is not valid") as err:
        asyncio.run(t.prepare(bad))
    assert err.value.retryable is False
    assert fake.seen == []


def test_two_alerts_suspending_one_subscription(arm, tmp_path):
    """Two alerts map to one subscription: it stays suspended until both resolved, then
    gets back "active" (not the "suspended" the second alert's prepare read)."""
    from aispend.actuators.engine import Engine
    from aispend.actuators.payload import Alert
    from aispend.actuators.settings import ActionsSettings
    from aispend.actuators.store import Store

    fake, server, ctx = arm
    settings = ActionsSettings.model_validate(
        {
            "dry_run": False,
            "rules": [
                {"name": "p", "match": {"action": "pause"}, "target": "apim", "mode": "pause"}
            ],
            "targets": {
                "apim": {
                    "type": "azure_apim",
                    "subscription_id": "00000000-0000-0000-0000-000000000000",
                    "resource_group": "rg-ai",
                    "service_name": "apim-ai",
                    "sid": "${team}-${agent}",
                    "endpoint": server.url,
                }
            },
        }
    )

    def alert(fp: str, status: str) -> Alert:
        labels = {
            "alertname": f"A{fp}",
            "team": "search",
            "agent": "rerank-agent",
            "action": "pause",
        }
        return Alert.model_validate(
            {
                "status": status,
                "labels": labels,
                "startsAt": "2024-05-01T10:00:00Z",
                "fingerprint": fp,
            },
            strict=False,
        )

    async def go() -> list[str]:
        async with aiohttp.ClientSession() as session:
            t = AzureApimTarget(
                "apim",
                settings.targets["apim"],
                session,
                credential=StaticCredential(),
                ssl_context=ctx,
            )  # type: ignore[arg-type]
            engine = Engine(settings, {}, Store(tmp_path / "s.db"), {"apim": t})
            states = []
            for a in (
                alert("aa", "firing"),
                alert("bb", "firing"),
                alert("aa", "resolved"),
                alert("bb", "resolved"),
            ):
                outcome = await engine.handle(a)
                assert outcome.result == "ok", outcome
                states.append(fake.state)
            return states

    assert asyncio.run(go()) == ["suspended", "suspended", "suspended", "active"]


def test_the_objects_scope_is_the_apim_service(
    arm: tuple[FakeArm, ThreadedServer, ssl.SSLContext],
) -> None:
    """Two targets on one APIM service share holds on its subscriptions (ARM ids are
    case-insensitive); another service does not."""
    _, server, ctx = arm
    one = target(server, ctx, StaticCredential())
    other = AzureApimTarget(
        "apim2",
        one.settings.model_copy(update={"service_name": "APIM-AI", "sid": "x"}),
        None,  # type: ignore[arg-type]
        credential=StaticCredential(),
    )
    third = AzureApimTarget(
        "apim3",
        one.settings.model_copy(update={"service_name": "apim-other"}),
        None,  # type: ignore[arg-type]
        credential=StaticCredential(),
    )
    assert one.objects_scope == other.objects_scope != third.objects_scope
    assert one.objects_scope.endswith("/providers/microsoft.apimanagement/service/apim-ai")


def test_a_subscription_deleted_since_the_suspend_has_nothing_to_restore(
    arm: tuple[FakeArm, ThreadedServer, ssl.SSLContext],
) -> None:
    """The suspended subscription was deleted: undo has nothing to restore, and says so
    (a 404 used to fail the undo for good). Other errors still fail it."""
    fake, server, ctx = arm
    t = target(server, ctx, StaticCredential())
    gone = {"sid": "deleted-sub", "state": "active"}

    async def undo(data: dict[str, Any]) -> str:
        async with aiohttp.ClientSession() as session:
            t._session = session
            return await t.undo(ACTION, data)

    assert asyncio.run(undo(gone)) == (
        "APIM subscription deleted-sub was deleted since: nothing to restore"
    )
    fake.fail_with = 403
    with pytest.raises(TargetError, match="HTTP 403"):
        asyncio.run(undo(gone))


def test_only_a_suspended_subscription_is_as_the_suspend_left_it(arm):
    """What a second alert's prepare reads: "suspended" is the first alert's suspend (it
    takes over the original state); anything else was set by hand since (it keeps it)."""
    _, server, ctx = arm
    t = target(server, ctx, StaticCredential())
    assert t.as_applied("suspended")
    assert not any(t.as_applied(state) for state in ("active", "submitted", "cancelled"))
