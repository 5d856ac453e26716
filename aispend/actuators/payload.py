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
fields are ignored, so a newer Alertmanager that adds fields still works. Each alert is
validated on its own: one that is not valid (a UTF-8 label name from Prometheus 3, a
label value past 4096 characters) is refused alone (`WebhookPayload.invalid`), so the
resolves beside it in a grouped notification still undo; a notification with no valid
alert is refused whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

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


class _Envelope(_Model):
    version: Literal["4"]
    receiver: str = ""
    status: Literal["firing", "resolved"]
    alerts: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ALERTS)
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str = ""
    groupKey: str = ""
    truncatedAlerts: int = Field(default=0, ge=0)


@dataclass(frozen=True)
class WebhookPayload:
    alerts: list[Alert]
    """The valid alerts, in the notification's order."""
    invalid: list[tuple[str, str]]
    """(fingerprint as sent or "", why) of each alert refused."""


class PayloadError(ValueError):
    """The body is not a webhook v4 payload; `message` names the field."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


def parse_payload(body: bytes) -> WebhookPayload:
    """Validate a request body; PayloadError naming the first bad field when the envelope
    is bad or no alert is valid."""
    try:
        envelope = _Envelope.model_validate_json(body)
    except ValidationError as exc:
        raise PayloadError(_message(exc)) from None
    alerts: list[Alert] = []
    invalid: list[tuple[str, str]] = []
    for index, raw in enumerate(envelope.alerts):
        try:  # as JSON again: the same strict JSON rules as the envelope's
            alerts.append(Alert.model_validate_json(json.dumps(raw)))
        except ValidationError as exc:
            why = _message(exc, f"alerts.{index}")
            fingerprint = raw.get("fingerprint")
            invalid.append((fingerprint if isinstance(fingerprint, str) else "", why))
    if not alerts:
        more = f" (and {len(invalid) - 1} more alert(s))" if len(invalid) > 1 else ""
        raise PayloadError(invalid[0][1] + more)
    return WebhookPayload(alerts, invalid)


def _message(exc: ValidationError, prefix: str = "") -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    loc = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "") or "(body)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "json_invalid":
        return f"{prefix or 'body'} is not valid JSON: {first['msg']}"
    return f"{loc}: {validation_message(first)}{more}"
