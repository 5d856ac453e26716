"""What every target shares: the action it is asked to carry out, its errors, helpers.

Errors (one hierarchy):
    TargetError            the target could not act; `retryable` says whether a later
                           redelivery by Alertmanager could succeed (target down, 5xx)
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Action:
    """One alert instance that a rule maps to a target and a mode."""

    fingerprint: str
    starts_at: str
    labels: dict[str, str]
    annotations: dict[str, str]
    rule: str
    mode: str  # throttle | pause | notify
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        name = self.labels.get("alertname", "alert")
        summary = self.annotations.get("summary", "")
        return f"{name}: {summary}" if summary else name


class TargetError(Exception):
    """A target could not act. `retryable`: a redelivery may succeed (5xx, unreachable).
    `status`: the HTTP status that refused, where there was one."""

    def __init__(self, message: str, retryable: bool, status: int | None = None):
        self.retryable = retryable
        self.status = status
        super().__init__(message)


class Target(Protocol):
    name: str
    type: str

    async def prepare(self, action: Action) -> dict[str, Any]:
        """Read what undo will need (e.g. current replicas), before anything changes."""
        ...

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        """Carry out the action; idempotent (it may run again after a crash). Returns detail."""
        ...

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        """Reverse exactly what apply did; already-undone is success."""
        ...


@runtime_checkable
class HoldsObjects(Protocol):
    """A target whose actions change named objects that two alerts can share (a
    Deployment paused for each of its idle GPUs, one APIM subscription). The engine uses
    these to restore an object only when the last action holding it is undone, and to the
    state it had before the first. Targets of one type with the same `objects_scope` (an
    API server, an APIM service) reach the same objects under the same keys."""

    type: str
    objects_scope: str

    def originals(self, undo_data: dict[str, Any]) -> dict[str, Any]:
        """Object key -> the state undo restores it to."""
        ...

    def with_originals(
        self, undo_data: dict[str, Any], originals: dict[str, Any]
    ) -> dict[str, Any]:
        """`undo_data` for only the objects keyed in `originals` (one or more), with
        those states."""
        ...

    def as_applied(self, state: Any) -> bool:
        """Whether an object's state (as `originals` gives it) is what apply leaves."""
        ...


def render(template: str, labels: dict[str, str]) -> str:
    """Fill `${label}` placeholders; TargetError (not retryable) for a missing label."""
    try:
        return string.Template(template).substitute(labels)
    except KeyError as exc:
        raise TargetError(
            f"the alert has no label {exc.args[0]!r} needed by {template!r}", retryable=False
        ) from None
    except ValueError as exc:
        raise TargetError(f"bad template {template!r}: {exc}", retryable=False) from None


def status_retryable(status: int) -> bool:
    """Whether an upstream HTTP status means a later retry may succeed."""
    return status >= 500 or status in (408, 409, 429)
