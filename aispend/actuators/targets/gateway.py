"""Gateway target: throttle rules through the aispend gateway admin API.

apply: `PUT /admin/throttles/am-<fingerprint>` on every configured replica, scoped to
the alert's team (+ project, agent, model where the alert carries them); mode `pause`
blocks, mode `throttle` rate-limits. undo: `DELETE` on every replica (404 = already
gone). Both are idempotent, so a redelivery after a crash simply repeats them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from aispend import metrics
from aispend.actuators.settings import GatewayTargetSettings
from aispend.actuators.targets.base import Action, TargetError, status_retryable
from aispend.secrets import require_secret


def rule_id(fingerprint: str) -> str:
    return f"{metrics.ACTUATOR_RULE_PREFIX}{fingerprint}"


class GatewayTarget:
    type = "gateway"

    def __init__(self, name: str, settings: GatewayTargetSettings, session: aiohttp.ClientSession):
        self.name = name
        self.settings = settings
        self._session = session
        self._token = require_secret(
            settings.admin_token_file, settings.admin_token_env, f"target {name}: admin token"
        )

    def body(self, action: Action) -> dict[str, Any]:
        labels = action.labels
        team = labels.get("team")
        if not team:
            raise TargetError("the alert has no team label; cannot scope a throttle", False)
        # A rule that sets a limit sets the pair: one that limits tokens only gets no
        # request limit (the target's default, 6/min, would all but block small calls).
        rpm, tpm = action.requests_per_minute, action.tokens_per_minute
        if rpm is None and tpm is None:
            rpm, tpm = self.settings.requests_per_minute, self.settings.tokens_per_minute
        block = action.mode == "pause"
        return {
            "team": team,
            "project": labels.get("project") or None,
            "agent": labels.get("agent") or None,
            "model": labels.get("model") or None,
            "mode": "block" if block else "rate",
            "requests_per_minute": None if block else rpm,
            "tokens_per_minute": None if block else tpm,
            "reason": action.reason[:1024],  # the admin API caps reason at 1024 characters
            "alert_fingerprint": action.fingerprint,
            "expires_at": None,
        }

    async def prepare(self, action: Action) -> dict[str, Any]:
        return {"rule_id": rule_id(action.fingerprint), "urls": list(self.settings.urls)}

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        body = self.body(action)
        rid = undo_data.get("rule_id") or rule_id(action.fingerprint)
        # Where undo will delete it: the replicas recorded with the intent, even when a
        # resumed apply runs after the replica list changed.
        urls = undo_data.get("urls") or list(self.settings.urls)
        await self._each("PUT", rid, body, ok=(200, 201), urls=urls)
        scope = "/".join(
            str(body[k]) for k in ("team", "project", "agent", "model") if body[k] is not None
        )
        return f"{body['mode']} rule {rid} on {scope} at {len(urls)} gateway(s)"

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        rid = undo_data.get("rule_id") or rule_id(action.fingerprint)
        # Undo where it was applied, even if the replica list changed since.
        urls = undo_data.get("urls") or list(self.settings.urls)
        await self._each("DELETE", rid, None, ok=(200, 204, 404), urls=urls)
        return f"deleted rule {rid} at {len(urls)} gateway(s)"

    async def _each(
        self,
        method: str,
        rid: str,
        body: dict[str, Any] | None,
        ok: tuple[int, ...],
        urls: list[str] | None = None,
    ) -> None:
        targets = urls or list(self.settings.urls)
        results = await asyncio.gather(
            *(
                self._one(method, f"{u.rstrip('/')}/admin/throttles/{rid}", body, ok)
                for u in targets
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            retryable = any(getattr(e, "retryable", True) for e in errors)
            msg = "; ".join(str(e) for e in errors)
            raise TargetError(msg, retryable=retryable)

    async def _one(
        self, method: str, url: str, body: dict[str, Any] | None, ok: tuple[int, ...]
    ) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._session.request(
                method, url, json=body, headers=headers, timeout=timeout
            ) as resp:
                if resp.status in ok:
                    return
                text = (await resp.text(errors="replace"))[:300]
                raise TargetError(
                    f"{method} {url}: HTTP {resp.status}: {text}", status_retryable(resp.status)
                )
        except TargetError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TargetError(f"{method} {url}: {type(exc).__name__}: {exc}", True) from exc
        except ValueError as exc:  # a header aiohttp refuses: sending again cannot help
            raise TargetError(
                f"{method} {url}: request refused by the client: {exc}", False
            ) from exc
