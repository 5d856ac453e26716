"""Retry policy for the Cost Management Query API (an azure-core pipeline policy).

azure-core's default RetryPolicy does not retry the Query POST on a 429 unless
`Retry-After` is present, and it ignores Cost Management's own throttling headers.
This policy replaces it (`retry_policy=` of the client):

- 429: wait what the service asks, the longest of
  `x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after` (and the entity, tenant
  and client variants) and `Retry-After`; without any of them, back off. A wait longer
  than `max_wait` is not slept: the 429 is returned and the refresh fails (the
  exporter keeps serving its last good data and tries again at the next refresh);
- 500, 502, 503, 504 and connection errors: exponential backoff, `backoff * 2**n`
  capped at `max_backoff` (a `Retry-After` on a 503 is honoured);
- at most `max_retries` retries, then the last response (or error) goes through.

`sleep` is injected so that tests can record the waits instead of sleeping.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

log = logging.getLogger(__name__)

QPU_RETRY_AFTER = "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after"
THROTTLE_HEADERS = (
    QPU_RETRY_AFTER,
    "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-client-retry-after",
    "Retry-After",
)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _seconds(value: str, now: float) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def requested_wait(headers: Any, now: float) -> float | None:
    """The longest wait any throttling header asks for, in seconds (None: no header)."""
    waits = []
    for name in THROTTLE_HEADERS:
        value = headers.get(name)
        if value:
            seconds = _seconds(str(value), now)
            if seconds is not None:
                waits.append(seconds)
    return max(waits) if waits else None


class CostManagementRetryPolicy(HTTPPolicy[Any, Any]):
    def __init__(
        self,
        max_retries: int = 4,
        backoff: float = 2.0,
        max_backoff: float = 60.0,
        max_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        on_throttled: Callable[[], None] | None = None,
    ):
        super().__init__()
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock
        self._on_throttled = on_throttled

    def _backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * (2**attempt)))

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        attempt = 0
        while True:
            try:
                response = self.next.send(request)
            except (ServiceRequestError, ServiceResponseError) as exc:
                if attempt >= self.max_retries:
                    raise
                wait = self._backoff(attempt)
                log.warning("cost management: %s; retrying in %.1fs", type(exc).__name__, wait)
                self._sleep(wait)
                attempt += 1
                continue
            status = response.http_response.status_code
            if status not in RETRY_STATUSES:
                return response
            if status == 429 and self._on_throttled:
                self._on_throttled()
            if attempt >= self.max_retries:
                log.warning("cost management: HTTP %d after %d retries; giving up", status, attempt)
                return response
            asked = requested_wait(response.http_response.headers, self._clock())
            wait = asked if asked is not None else self._backoff(attempt)
            if wait > self.max_wait:
                log.warning(
                    "cost management: HTTP %d asks to wait %.0fs (> max %.0fs); giving up",
                    status,
                    wait,
                    self.max_wait,
                )
                return response
            log.info("cost management: HTTP %d; retrying in %.1fs", status, wait)
            self._sleep(wait)
            attempt += 1
