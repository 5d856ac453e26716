"""Azure API Management target: suspend / re-activate an APIM subscription (ARM REST).

    GET   {endpoint}/subscriptions/{sub}/resourceGroups/{rg}/providers/
          Microsoft.ApiManagement/service/{svc}/subscriptions/{sid}?api-version=2022-08-01
    PATCH (same URL), If-Match: *, {"properties": {"state": "suspended"}}

prepare remembers `properties.state`; apply suspends; undo PATCHes the remembered
state back (normally `active`) if the subscription is still suspended. The bearer
token comes from an azure-identity credential for `{endpoint}/.default`
(DefaultAzureCredential unless configured).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any
from urllib.parse import quote

import aiohttp

from aispend.actuators.settings import AzureApimTargetSettings
from aispend.actuators.targets.base import Action, TargetError, render, status_retryable
from aispend.parsing import loads_json

_SID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,256}$")


def make_credential(kind: str) -> Any:
    """An azure-identity credential by name (imported lazily: it is a heavy import)."""
    import azure.identity as identity

    if kind == "managed_identity":
        return identity.ManagedIdentityCredential()
    if kind == "workload_identity":
        return identity.WorkloadIdentityCredential()
    if kind == "azure_cli":
        return identity.AzureCliCredential()
    return identity.DefaultAzureCredential()


class AzureApimTarget:
    type = "azure_apim"

    def __init__(
        self,
        name: str,
        settings: AzureApimTargetSettings,
        session: aiohttp.ClientSession,
        credential: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.name = name
        self.settings = settings
        self._session = session
        self._credential = credential or make_credential(settings.credential)
        self._ssl = ssl_context
        self._scope = settings.endpoint.rstrip("/") + "/.default"
        self.objects_scope = self.url("").rsplit("/subscriptions/", 1)[0].lower()  # ARM ids

    def url(self, sid: str) -> str:
        s = self.settings
        return (
            f"{s.endpoint.rstrip('/')}/subscriptions/{quote(s.subscription_id, safe='')}"
            f"/resourceGroups/{quote(s.resource_group, safe='')}"
            f"/providers/Microsoft.ApiManagement/service/{quote(s.service_name, safe='')}"
            f"/subscriptions/{quote(sid, safe='')}"
        )

    def _sid(self, action: Action) -> str:
        sid = render(self.settings.sid, action.labels)
        if not _SID_RE.fullmatch(sid) or not sid.strip("."):  # "." and ".." are path steps
            raise TargetError(f"APIM subscription id {sid[:100]!r} is not valid", False)
        return sid

    async def prepare(self, action: Action) -> dict[str, Any]:
        sid = self._sid(action)
        current = await self._request("GET", sid)
        state = (current.get("properties") or {}).get("state")
        if not isinstance(state, str):
            raise TargetError(f"APIM subscription {sid}: response has no properties.state", True)
        return {"sid": sid, "state": state}

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        sid = undo_data["sid"]
        await self._request("PATCH", sid, {"properties": {"state": "suspended"}})
        return f"APIM subscription {sid} suspended (was {undo_data['state']})"

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        sid, state = undo_data["sid"], undo_data["state"]
        try:
            now = ((await self._request("GET", sid)).get("properties") or {}).get("state")
        except TargetError as exc:
            if exc.status != 404:
                raise
            return f"APIM subscription {sid} was deleted since: nothing to restore"
        if not self.as_applied(now):  # changed since (re-activated by hand): leave it
            return f"APIM subscription {sid} is {now}, not suspended: left as it is"
        await self._request("PATCH", sid, {"properties": {"state": state}})
        return f"APIM subscription {sid} back to {state}"

    def originals(self, undo_data: dict[str, Any]) -> dict[str, Any]:
        return {_key(undo_data): undo_data["state"]}

    def with_originals(
        self, undo_data: dict[str, Any], originals: dict[str, Any]
    ) -> dict[str, Any]:
        return {**undo_data, "state": originals[_key(undo_data)]}

    def as_applied(self, state: Any) -> bool:
        return bool(state == "suspended")

    async def _token(self) -> str:
        try:
            token = await asyncio.to_thread(self._credential.get_token, self._scope)
        except Exception as exc:  # azure-identity raises several types; none is fatal here
            raise TargetError(f"cannot get an Azure token: {type(exc).__name__}", True) from exc
        return str(token.token)

    async def _request(
        self, method: str, sid: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {await self._token()}", "Accept": "application/json"}
        if method == "PATCH":
            headers["If-Match"] = "*"
        url = self.url(sid)
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._session.request(
                method,
                url,
                params={"api-version": self.settings.api_version},
                json=body,
                headers=headers,
                timeout=timeout,
                ssl=self._ssl if self._ssl is not None else True,
            ) as resp:
                if resp.status >= 300:
                    text = (await resp.text(errors="replace"))[:300]
                    raise TargetError(
                        f"{method} APIM subscription {sid}: HTTP {resp.status}: {text}",
                        status_retryable(resp.status),
                        resp.status,
                    )
                if resp.status == 204:
                    return {}
                data = await resp.json(content_type=None, loads=loads_json)
        except TargetError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise TargetError(
                f"{method} APIM subscription {sid}: {type(exc).__name__}: {exc}", True
            ) from exc
        return data if isinstance(data, dict) else {}


def _key(undo_data: dict[str, Any]) -> str:
    """The subscription, as HoldsObjects keys it."""
    return f"subscription {undo_data['sid']}"
