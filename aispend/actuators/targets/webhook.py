"""Webhook target: POST a JSON summary of the decision to a URL (chat, CI pipeline).

Body: {"action": "apply"|"undo", "mode", "rule", "alertname", "team", "labels",
"annotations", "fingerprint", "starts_at"}. 2xx is success; 5xx/429/unreachable are
retryable; other statuses are not.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from aispend.actuators.settings import WebhookTargetSettings
from aispend.actuators.targets.base import Action, TargetError, status_retryable
from aispend.secrets import require_secret


class WebhookTarget:
    type = "webhook"

    def __init__(self, name: str, settings: WebhookTargetSettings, session: aiohttp.ClientSession):
        self.name = name
        self.settings = settings
        self._session = session
        self._token = (
            require_secret(settings.token_file, None, f"target {name}: token")
            if settings.token_file
            else None
        )

    async def prepare(self, action: Action) -> dict[str, Any]:
        return {}

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        return await self._post(action, "apply")

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        if not self.settings.send_undo:
            return "undo not sent (send_undo: false)"
        return await self._post(action, "undo")

    async def _post(self, action: Action, which: str) -> str:
        body = {
            "action": which,
            "mode": action.mode,
            "rule": action.rule,
            "alertname": action.labels.get("alertname"),
            "team": action.labels.get("team"),
            "labels": action.labels,
            "annotations": action.annotations,
            "fingerprint": action.fingerprint,
            "starts_at": action.starts_at,
        }
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._session.post(
                self.settings.url, json=body, headers=headers, timeout=timeout
            ) as resp:
                if 200 <= resp.status < 300:
                    return f"posted {which} to webhook: HTTP {resp.status}"
                raise TargetError(
                    f"POST webhook: HTTP {resp.status}", status_retryable(resp.status)
                )
        except TargetError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TargetError(f"POST webhook: {type(exc).__name__}: {exc}", True) from exc
        except ValueError as exc:  # a header aiohttp refuses: sending again cannot help
            raise TargetError(f"POST webhook: request refused by the client: {exc}", False) from exc
