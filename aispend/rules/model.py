"""Plain dataclasses for generated rules: recording rules, alerts, groups."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Runbook:
    """The docs/runbooks.md section of an alert."""

    meaning: str
    check: str
    action: str


@dataclass(frozen=True)
class Alert:
    alert: str
    expr: str
    for_: str
    labels: dict[str, str]
    summary: str
    description: str
    dashboard: str
    """uid of the Grafana dashboard whose panels show the alert's data
    (`aispend.dashboards.defaults.UIDS`)."""
    runbook: Runbook | None = None
    """Set on the first rule of an alert name; later rules (other severities) share it."""


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Recording, ...] | tuple[Alert, ...]
    interval: str | None = None
