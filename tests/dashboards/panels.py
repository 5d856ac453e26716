"""Read the generated dashboards: panels, their queries, and queries made concrete.

Grafana fills in `$team`, `${team:regex}`, `$__interval`, `$__rate_interval`, `$__range`
before it sends a query; `concrete()` does the same with fixed values so promtool and
Prometheus can run it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aispend.dashboards.docs import is_alert_only, panels
from aispend.rules.promql import seconds
from tests.conftest import REPO

DASHBOARDS = REPO / "dashboards"

DEFAULT_VALUES = {
    "team": ".*",
    "project": ".*",
    "model": ".*",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool
    alert_only: bool
    time_from: str | None

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def all_queries() -> Iterator[PanelQuery]:
    for path in dashboard_files():
        data = load(path)
        for panel in panels(data):
            for target in panel.get("targets", []):
                yield PanelQuery(
                    data["title"],
                    panel["title"],
                    target["refId"],
                    target["expr"],
                    bool(target.get("instant")),
                    is_alert_only(panel),
                    panel.get("timeFrom"),
                )


_VAR_RE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def grafana_regex_escape(value: str) -> str:
    """Grafana's `regex` variable format (`${var:regex}`) on one value: escapeRegex of
    @grafana/data, a backslash before each of \\ ^ $ * + ? . ( ) | [ ] { } /."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda found: "\\" + found[0], value)


FORMATS = {"regex": grafana_regex_escape}
"""Grafana variable formats that the dashboards use, as Grafana applies them."""


def concrete(expr: str, values: dict[str, str] | None = None) -> str:
    """`expr` with every Grafana variable replaced; an unknown variable or format is an
    error. `$var` and `${var}` get the value as it is, as Grafana's Prometheus
    datasource sends the value of a single-value variable (it escapes backslashes and
    quotes only; no test value has one), All (`.*`), or a value without regex
    metacharacters of a multi-value variable.
    `${var:regex}` gets the value regex-escaped, as Grafana does. `$__range_s` follows a
    `$__range` given without it, as in Grafana."""
    table = {**DEFAULT_VALUES, **(values or {})}
    if values and "__range" in values and "__range_s" not in values:
        table["__range_s"] = str(seconds(values["__range"]))

    def sub(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        if name not in table:
            raise KeyError(f"no test value for Grafana variable ${name} in: {expr}")
        if match[2] is None:
            return table[name]
        if match[2] not in FORMATS:
            raise KeyError(f"no test formatter for Grafana format {match[0]} in: {expr}")
        return FORMATS[match[2]](table[name])

    return _VAR_RE.sub(sub, expr)
