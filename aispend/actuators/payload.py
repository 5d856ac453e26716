"""Pydantic models of the Alertmanager webhook payload, version 4.

Alertmanager (webhook_config) POSTs one notification per alert group:

    {"version": "4", "groupKey": "{}/{action=\"throttle\"}:{alertname=\"X\"}",
     "truncatedAlerts": 0, "status": "firing", "receiver": "actuator",
     "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": "http://alertmanager:9093",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "2024-05-01T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                 "generatorURL": "http://prometheus:9090/graph?...",
                 "fingerprint": "1a30ba71cca2921f"}]}

Validation is strict (a label value must be a string, not a number) and unknown
fields are ignored, so a newer Alertmanager that adds fields still works.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from aispend.parsing import to_utc, validation_message

MAX_ALERTS = 1000
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_FINGERPRINT_RE = re.compile(r"^[0-9a-zA-Z]{1,64}$")


def _label_names(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _LABEL_RE.fullmatch(key):
            raise ValueError(f"'{key[:80]}' is not a valid label name")
    return value


def _utc_representable(value: datetime) -> datetime:
    to_utc(value)  # key() converts it later: it must have a UTC form
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_utc_representable)]

Labels = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], AfterValidator(_label_names)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class Alert(_Model):
    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: dict[str, str] = {}
    startsAt: Instant
    endsAt: Instant | None = None
    generatorURL: str = ""
    fingerprint: Annotated[str, Field(pattern=_FINGERPRINT_RE.pattern)]

    def key(self) -> tuple[str, str]:
        """The idempotency key: fingerprint and startsAt (UTC, ISO 8601)."""
        return self.fingerprint, to_utc(self.startsAt).isoformat()


class WebhookPayload(_Model):
    version: Literal["4"]
    receiver: str = ""
    status: Literal["firing", "resolved"]
    alerts: list[Alert] = Field(min_length=1, max_length=MAX_ALERTS)
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    groupKey: str = ""
    truncatedAlerts: int = Field(default=0, ge=0)


class PayloadError(ValueError):
    """The body is not a webhook v4 payload; `message` names the field."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def parse_payload(body: bytes) -> WebhookPayload:
    """Validate a request body; PayloadError naming the first bad field."""
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(body)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        if first["type"] == "json_invalid":
            raise PayloadError(f"body is not valid JSON: {first['msg']}") from None
        raise PayloadError(f"{loc}: {validation_message(first)}{more}") from None
