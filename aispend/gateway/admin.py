"""The throttle admin API, served under /admin/ on the gateway's listener.

    PUT    /admin/throttles/{id}   upsert one rule (idempotent), 200 + the stored rule
    DELETE /admin/throttles/{id}   200 when deleted, 404 when absent
    GET    /admin/throttles        {"throttles": [rule, ...]}

Every call needs `Authorization: Bearer <token>` (sources.gateway.admin_token_file
or $AISPEND_GATEWAY_ADMIN_TOKEN); without a configured token the API answers 403.
Bad bodies get 400 (not JSON) or 422 (naming the field); nothing is stored then.
Team, project and agent are label names as the gateway writes them (lowercase a-z 0-9
_ . -), the team must be one the gateway attributes to (aispend.yaml's teams or
unattributed) and the project one of that team's (or `other`): any other rule would
match no request. The model is stored as the spend labels it: a name the prices know
under another label (a dated `gpt-4o-2024-08-06`, labelled `gpt-4o`) is refused with
the label to use, as the rule would miss requests for that label; a name they do not
know (spend labelled `other`) matches requests that name it. A PUT or DELETE the
throttle database refuses (locked by another process, disk full) gets 503 with
Retry-After; nothing changed then, in memory or on disk.
"""

from __future__ import annotations

import hmac
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aispend.configbase import Name
from aispend.gateway.http_server import Answer, Request, json_answer
from aispend.gateway.throttle import ThrottleRule, ThrottleTable, now_rfc3339
from aispend.metrics import OTHER
from aispend.parsing import loads_json, to_utc, validation_message

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
PREFIX = "/admin/"
_THROTTLES = "/admin/throttles"

ShortText = Annotated[str, Field(min_length=1, max_length=128)]


class ThrottleBody(BaseModel):
    """The PUT body (README, "Throttling by hand")."""

    model_config = ConfigDict(extra="forbid")

    team: Name
    project: Name | None = None
    agent: Name | None = None
    model: ShortText | None = None
    mode: Literal["block", "rate"]
    requests_per_minute: Annotated[int, Field(strict=True, gt=0, le=10_000_000)] | None = None
    tokens_per_minute: Annotated[int, Field(strict=True, gt=0, le=10_000_000_000)] | None = None
    reason: Annotated[str, Field(max_length=1024)] = ""
    alert_fingerprint: Annotated[str, Field(max_length=256)] | None = None
    expires_at: datetime | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value  # " gpt-4o" matched nothing

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must be RFC 3339 with a time zone, e.g. 2025-01-31T12:00:00Z")
        return to_utc(value)  # 9999-12-31T23:59:59-14:00 is past year 9999 in UTC

    @model_validator(mode="after")
    def _limits(self) -> ThrottleBody:
        if self.mode == "rate" and not (self.requests_per_minute or self.tokens_per_minute):
            raise ValueError("rate mode needs requests_per_minute or tokens_per_minute")
        return self


def _error(
    status: int, message: str, headers: tuple[tuple[str, str], ...] = (), **extra: object
) -> Answer:
    body = {"error": {"message": message, "type": "invalid_request_error", **extra}}
    return json_answer(status, body, headers)


def _store_error(exc: sqlite3.Error) -> Answer:
    """503 for a write the throttle database refused (locked by another process, disk
    full): nothing changed, in memory or on disk; the caller may try again."""
    log.error("throttle database write failed: %s", exc)
    return _error(
        503,
        f"the throttle database cannot be written now ({exc}): nothing changed, try again",
        (("Retry-After", "5"),),
        type="server_error",
        code="throttle_store_unavailable",
    )


def _bad_id(rule_id: str) -> Answer | None:
    if _ID_RE.fullmatch(rule_id):
        return None
    return _error(400, "throttle id must be 1-128 characters of A-Z a-z 0-9 . _ -")


class AdminApi:
    def __init__(
        self,
        table: ThrottleTable,
        token: str | None,
        projects_by_team: Callable[[], Mapping[str, Collection[str]]],
        model_labels: Callable[[str], Collection[str]],
    ) -> None:
        """`projects_by_team` gives the teams requests are attributed to now, with the
        projects they carry; `model_labels` the model labels of the spend of a request
        naming a model, one per provider (both follow config reloads)."""
        self._table = table
        self._token = token.encode() if token else None
        self._projects_by_team = projects_by_team
        self._model_labels = model_labels

    def handle(self, request: Request) -> Answer:
        """Answer a request for a path under PREFIX."""
        path = request.path
        if path == _THROTTLES:
            if request.method != "GET":
                return _error(405, f"{path} takes GET", (("Allow", "GET"),))
            return self.list(request)
        rule_id = path.removeprefix(_THROTTLES + "/")
        if rule_id == path or not rule_id or "/" in rule_id:
            return _error(404, f"no admin API at {path}", code="not_found")
        if request.method == "PUT":
            return self.put(request, rule_id)
        if request.method == "DELETE":
            return self.delete(request, rule_id)
        return _error(405, f"{path} takes PUT or DELETE", (("Allow", "PUT, DELETE"),))

    def _denied(self, request: Request) -> Answer | None:
        if self._token is None:
            return _error(
                403,
                "admin API disabled: set sources.gateway.admin_token_file or "
                "$AISPEND_GATEWAY_ADMIN_TOKEN",
            )
        scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
        # Non-ASCII header bytes arrive as surrogates: "replace" makes them a wrong token.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode("utf-8", "replace"), self._token
        ):
            return _error(401, "missing or wrong bearer token")
        return None

    def list(self, request: Request) -> Answer:
        denied = self._denied(request)
        if denied:
            return denied
        return json_answer(200, {"throttles": [r.to_json() for r in self._table.rules()]})

    def put(self, request: Request, rule_id: str) -> Answer:
        denied = self._denied(request)
        if denied:
            return denied
        bad_id = _bad_id(rule_id)
        if bad_id:
            return bad_id
        try:
            data = loads_json(request.body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body must be a JSON object")
        try:
            body = ThrottleBody.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(body)"
            return _error(422, f"{field}: {validation_message(first)}", field=field)
        unmatched = self._unmatched(body)
        if unmatched is not None:
            return unmatched
        model, refused = self._model(body.model)
        if refused is not None:
            return refused
        now = now_rfc3339()
        expires = None
        if body.expires_at is not None:
            expires = body.expires_at.isoformat().replace("+00:00", "Z")  # UTC already
            if body.expires_at.timestamp() <= time.time():
                # Stored, it was purged at once: a 200 for a throttle that never acted.
                return _error(
                    422,
                    f"expires_at: {expires} has already passed (now {now})",
                    field="expires_at",
                )
        rule = ThrottleRule(
            id=rule_id,
            team=body.team,
            project=body.project,
            agent=body.agent,
            model=model,
            mode=body.mode,
            requests_per_minute=body.requests_per_minute if body.mode == "rate" else None,
            tokens_per_minute=body.tokens_per_minute if body.mode == "rate" else None,
            reason=body.reason,
            alert_fingerprint=body.alert_fingerprint,
            expires_at=expires,
            created_at=now,
            updated_at=now,
        )
        try:
            stored = self._table.upsert(rule)
        except sqlite3.Error as exc:
            return _store_error(exc)
        log.info("throttle %s set: team=%s mode=%s", rule_id, body.team, body.mode)
        return json_answer(200, stored.to_json())

    def _unmatched(self, body: ThrottleBody) -> Answer | None:
        """A 422 for a team or project no request is attributed to, else None."""
        projects_by_team = self._projects_by_team()
        projects = projects_by_team.get(body.team)
        if projects is None:
            known = ", ".join(sorted(projects_by_team))
            return _error(
                422,
                f"team: {body.team!r} is not a team of this gateway ({known}):"
                " a throttle for it would match no request",
                field="team",
            )
        if body.project is not None and body.project not in projects:
            known = ", ".join(sorted(projects)) or "none"
            return _error(
                422,
                f"project: team {body.team!r} has no project {body.project!r} ({known}):"
                " a throttle for it would match no request",
                field="project",
            )
        return None

    def _model(self, model: str | None) -> tuple[str | None, Answer | None]:
        """The rule's model as the spend labels it, or a 422 naming the label to use."""
        if model is None:
            return None, None
        model = model.lower()
        named = {label for label in self._model_labels(model) if label != OTHER}
        if not named:
            return model, None  # "other", or a name the prices do not know: matched as asked
        for label in named:
            if label.lower() == model:
                return label, None  # an override's label keeps its case in the spend
        use = " or ".join(repr(label) for label in sorted(named))
        return None, _error(
            422,
            f"model: the gateway labels the spend of {model!r} as {use}, and a rule"
            f" matches that label (a rule on {model!r} misses requests for {use}): use {use}",
            field="model",
        )

    def delete(self, request: Request, rule_id: str) -> Answer:
        denied = self._denied(request)
        if denied:
            return denied
        bad_id = _bad_id(rule_id)  # no such rule can exist (and SQLite refuses surrogates)
        if bad_id:
            return bad_id
        try:
            deleted = self._table.delete(rule_id)
        except sqlite3.Error as exc:
            return _store_error(exc)
        if not deleted:
            return _error(404, f"no throttle {rule_id!r}", code="not_found")
        log.info("throttle %s deleted", rule_id)
        return json_answer(200, {"deleted": rule_id})
