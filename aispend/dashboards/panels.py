"""Panel builders: grafanalib panels with a description, a unit and queries, always.

Every builder takes the title, a description (shown as the panel's info tooltip and in
docs/dashboards.md), a Grafana unit and one or more `Query`s. grafanalib 0.7 writes
Grafana 6-era JSON for gauge, bar gauge and heatmap panels; `extraJson` adds the
current `fieldConfig` / `options` layout so Grafana 10+ renders them as intended.
`layout` places rows of panels on the 24-column grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import attr
from grafanalib import core as g

from aispend.dashboards.defaults import DATASOURCE

REF_IDS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel: expression, legend, and how Grafana runs it."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _targets(queries: Sequence[Query]) -> list[g.Target]:
    if not queries:
        raise ValueError("a panel needs at least one query")
    return [
        g.Target(
            expr=q.expr,
            legendFormat=q.legend,
            refId=REF_IDS[i],
            instant=q.instant,
            format="table" if q.table else "time_series",
            intervalFactor=1,
            datasource=DATASOURCE,
        )
        for i, q in enumerate(queries)
    ]


def _common(
    title: str, description: str, queries: Sequence[Query], time_from: str | None
) -> dict[str, Any]:
    if not description:
        raise ValueError(f"panel {title!r} needs a description")
    return {
        "title": title,
        "description": description,
        "targets": _targets(queries),
        "dataSource": DATASOURCE,
        "timeFrom": time_from,
    }


def _steps(thresholds: Sequence[tuple[str, float | None]]) -> list[dict[str, Any]]:
    return [{"color": color, "value": value} for color, value in thresholds]


MIN_STEP = "1m"
"""Min interval of a graph whose queries average over its step (`$__interval`): at least
the rule evaluation interval (15s in deploy/prometheus.yml, Prometheus' default 1m), so
that every step holds a sample (Grafana's own minimum, 15s, would leave three steps in
four empty under 1m rule evaluation)."""

ZERO = "0"
NO_DATA = "-"
"""What a stat shows without data: ZERO only where no series means none (no spend, no
GPU); otherwise a dash, or a few words on what is missing, for a 0 would read as a fact."""

GREEN = "green"
BUDGET_STEPS: tuple[tuple[str, float | None], ...] = ((GREEN, None), ("orange", 0.8), ("red", 1.0))
"""Thresholds of budget ratios: warn at 80 %, red at 100 %."""


def timeseries(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    stacked: bool = False,
    bars: bool = False,
    time_from: str | None = None,
    overrides: Sequence[dict[str, Any]] = (),
    min_zero: bool = True,
) -> g.TimeSeries:
    over_step = any("$__interval" in q.expr for q in queries)
    return g.TimeSeries(
        **_common(title, description, queries, time_from),
        interval=MIN_STEP if over_step else None,
        unit=unit,
        stacking={"mode": "normal", "group": "A"} if stacked else {},
        fillOpacity=30 if stacked else 10,
        drawStyle="bars" if bars else "line",
        legendDisplayMode="table",
        legendPlacement="right",
        legendCalcs=["mean", "max", "lastNotNull"],
        tooltipMode="multi",
        tooltipSort="desc",
        valueMin=0 if min_zero else None,
        overrides=list(overrides),
        maxDataPoints=500,
    )


def stat(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    time_from: str | None = None,
    thresholds: Sequence[tuple[str, float | None]] = ((GREEN, None),),
    decimals: int | None = None,
    no_value: str = NO_DATA,
) -> g.Stat:
    return g.Stat(
        **_common(title, description, queries, time_from),
        format=unit,
        reduceCalc="lastNotNull",
        graphMode="none",
        decimals=decimals,
        thresholds=_steps(thresholds),
        noValue=no_value,
    )


def gauge(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    time_from: str | None = None,
    max_value: float = 1.0,
    thresholds: Sequence[tuple[str, float | None]] = BUDGET_STEPS,
) -> g.GaugePanel:
    return g.GaugePanel(
        **_common(title, description, queries, time_from),
        format=unit,
        min=0,
        max=max_value,
        extraJson={
            "fieldConfig": {
                "defaults": {"unit": unit, "min": 0, "max": max_value},
            },
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showThresholdLabels": False,
                "showThresholdMarkers": True,
            },
        },
        thresholds=_steps(thresholds),
    )


def bargauge(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    time_from: str | None = None,
    max_value: float | None = 1.0,
    thresholds: Sequence[tuple[str, float | None]] = BUDGET_STEPS,
) -> g.BarGauge:
    return g.BarGauge(
        **_common(title, description, queries, time_from),
        format=unit,
        min=0,
        max=max_value,
        displayMode=g.GAUGE_DISPLAY_MODE_GRADIENT,
        extraJson={
            "fieldConfig": {"defaults": {"unit": unit, "min": 0, "max": max_value}},
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
        },
        thresholds=_steps(thresholds),
    )


def piechart(
    title: str, description: str, unit: str, *queries: Query, time_from: str | None = None
) -> g.PieChartv2:
    return g.PieChartv2(
        **_common(title, description, queries, time_from),
        unit=unit,
        pieType="donut",
        legendDisplayMode="table",
        legendPlacement="right",
        legendValues=["value", "percent"],
        reduceOptionsCalcs=["lastNotNull"],
    )


def table(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    time_from: str | None = None,
    columns: dict[str, str] | None = None,
    units: dict[str, str] | None = None,
    hide: Sequence[str] = ("Time",),
) -> g.Table:
    """Instant queries merged into one table; `columns` renames, `units` per column."""
    overrides = [
        {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": u}]}
        for name, u in (units or {}).items()
    ]
    return g.Table(
        **_common(title, description, queries, time_from),
        unit=unit,
        overrides=overrides,
        filterable=True,
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": dict.fromkeys(hide, True),
                    "renameByName": dict(columns or {}),
                },
            },
        ],
    )


def heatmap(
    title: str, description: str, unit: str, *queries: Query, time_from: str | None = None
) -> g.Heatmap:
    """One row per series (e.g. per GPU), coloured by value; no bucketing."""
    return g.Heatmap(
        **_common(title, description, queries, time_from),
        extraJson={
            "fieldConfig": {"defaults": {"unit": unit}},
            "options": {
                "calculate": False,
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64, "min": 0, "max": 1},
                "yAxis": {"axisPlacement": "left", "unit": unit},
                "rowsFrame": {"layout": "auto"},
                "legend": {"show": True},
                "tooltip": {"show": True, "yHistogram": False},
                "cellValues": {"unit": unit},
            },
        },
    )


@dataclass(frozen=True)
class Row:
    """A horizontal band of panels; widths default to an even split of 24 columns."""

    title: str | None
    panels: Sequence[g.Panel]
    height: int = 8
    widths: Sequence[int] | None = None


def layout(*rows: Row) -> list[g.Panel]:
    """Panels with grid positions, a collapsible row header before each titled row."""
    out: list[g.Panel] = []
    y = 0
    for row in rows:
        if row.title:
            out.append(g.RowPanel(title=row.title, gridPos=g.GridPos(h=1, w=24, x=0, y=y)))
            y += 1
        widths = list(row.widths or [24 // len(row.panels)] * len(row.panels))
        if len(widths) != len(row.panels) or sum(widths) > 24:
            raise ValueError(f"row {row.title!r}: widths {widths} do not fit its panels")
        x = 0
        for panel, w in zip(row.panels, widths, strict=True):
            out.append(attr.evolve(panel, gridPos=g.GridPos(h=row.height, w=w, x=x, y=y)))
            x += w
        y += row.height
    return out
