"""What every aispend dashboard shares: datasource, variables, uids, units and links.

Dashboards are provisioned read-only (deploy/grafana/, `allowUiUpdates: false`), so each
has a stable uid (links and alert annotations point at `/d/<uid>`), the `aispend` tag
(the dashboard links list every dashboard with it), and the `$datasource` variable so
one JSON works against any Prometheus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from grafanalib import core as g

from aispend import metrics as m
from aispend.rules.tunables import Tunables

TAG = "aispend"
SCHEMA_VERSION = 39  # Grafana 10.4 / 11
DATASOURCE_VAR = "datasource"
DATASOURCE = {"type": "prometheus", "uid": f"${{{DATASOURCE_VAR}}}"}
"""Panel and target datasource reference: whatever `$datasource` is set to."""

ALERT_ONLY = (
    "Alert-only: empty while nothing is firing or throttled; an empty panel is the good state."
)
"""Sentence that marks a panel as alert-only (docs list them; the live test allows empty)."""

UIDS = {
    "overview": "aispend-overview",
    "team-showback": "aispend-team-showback",
    "llm-token-economics": "aispend-llm-tokens",
    "gpu-fleet": "aispend-gpu-fleet",
    "anomalies-budgets": "aispend-anomalies",
    "stack-health": "aispend-stack-health",
}
"""Stable dashboard uids, by dashboard file stem (dashboards/<stem>.dashboard.py)."""

TITLES = {
    "overview": "aispend / Overview",
    "team-showback": "aispend / Team showback",
    "llm-token-economics": "aispend / LLM token economics",
    "gpu-fleet": "aispend / GPU fleet",
    "anomalies-budgets": "aispend / Anomalies and budgets",
    "stack-health": "aispend / Stack health",
}
"""Dashboard titles, by stem (the runbooks cite dashboards by title)."""

# Grafana unit ids for everything that is not money.
RATIO = "percentunit"
COUNT = "short"
REQ_PER_SEC = "reqps"
TOKENS_PER_SEC = "short"
SECONDS = "s"
BYTES = "bytes"
WATTS = "watt"
BOOL = "bool_on_off"
TIMESTAMP = "dateTimeAsIso"
TIMES = "suffix:x"
"""A multiple (burn rates: 1x = on budget pace)."""
SIGMA = "suffix: sigma"
"""Standard deviations (z-scores)."""

_GRAFANA_CURRENCIES = {
    # Only ids in Grafana's currency list (packages/grafana-data/src/valueFormats/
    # categories.ts): an unknown id is printed as a suffix ("12 currencyCAD"). Others
    # (CAD, AUD, CNY, ...) take the `suffix: CODE` fallback of Context.money.
    "USD": "currencyUSD",
    "EUR": "currencyEUR",
    "GBP": "currencyGBP",
    "JPY": "currencyJPY",
    "CHF": "currencyCHF",
    "INR": "currencyINR",
    "SEK": "currencySEK",
    "NOK": "currencyNOK",
    "DKK": "currencyDKK",
    "BRL": "currencyBRL",
}


@dataclass(frozen=True)
class Context:
    """Settings a dashboard is built for (passed to each dashboard's `build`)."""

    currency: str = "USD"
    tunables: Tunables = field(default_factory=Tunables)
    """The rules' tunables: panel thresholds, windows and titles (the runbooks cite the
    idle-GPU table by a title built from them) follow the rules the dashboards sit beside."""

    @property
    def money(self) -> str:
        """Grafana unit for an amount in the reporting currency."""
        return _GRAFANA_CURRENCIES.get(self.currency, f"suffix: {self.currency}")


def datasource_variable() -> g.Template:
    return g.Template(
        name=DATASOURCE_VAR,
        label="Prometheus",
        query="prometheus",
        type="datasource",
        default="Prometheus",
    )


def label_variable(
    name: str,
    label: str,
    *series: m.MetricSpec | m.RecordedSeries,
    matchers: str = "",
    multi: bool = True,
    title: str | None = None,
) -> g.Template:
    """A query variable over the values of `label` on any of `series` (All = any value).

    More than one series becomes one selector on `__name__`, so the list is their union.
    """
    if len(series) == 1:
        selector = f"{series[0].name}{{{matchers}}}" if matchers else series[0].name
    else:
        names = "|".join(s.name for s in series)
        selector = f'{{__name__=~"{names}"{", " + matchers if matchers else ""}}}'
    return g.Template(
        name=name,
        label=title or name.capitalize(),
        query=f"label_values({selector}, {label})",
        dataSource=DATASOURCE,
        includeAll=multi,
        multi=multi,
        allValue=".*" if multi else None,
        default="All" if multi else None,
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
    )


TEAM_SOURCES = (m.REC_TEAM_COST_RATE5M, m.CLOUD_COST_MONTH_TO_DATE, m.TEAM_INFO)
"""Where the team list comes from: spend (LLM, aispend and dcgm GPUs), the bill, and the
configured teams, so a team with GPU spend only, a bill only, or no spend yet is listed."""


def team_variable(*, multi: bool = True) -> g.Template:
    return label_variable("team", m.TEAM, *TEAM_SOURCES, multi=multi)


def project_variable(team: str) -> g.Template:
    """Projects with spend of any kind (a GPU-only project too) in the chosen teams
    (`team`: the dashboard's team matcher, as its panels use it)."""
    return label_variable("project", m.PROJECT, m.REC_TEAM_PROJECT_COST_RATE5M, matchers=team)


def spend_team_variable() -> g.Template:
    """Teams with spend (LLM or GPU), for panels repeated per team over spend series:
    a team with a bill or a config entry only would repeat as an empty panel."""
    return label_variable("team", m.TEAM, m.REC_TEAM_COST_RATE5M)


def llm_team_variable() -> g.Template:
    """Teams with LLM spend, for dashboards about tokens and models."""
    return label_variable("team", m.TEAM, m.LLM_COST)


def model_variable() -> g.Template:
    return label_variable("model", m.MODEL, m.LLM_COST, matchers=f'{m.TEAM}=~"$team"')


def links() -> list[g.DashboardLink]:
    """A dropdown of every aispend dashboard, keeping time range and variables."""
    return [
        g.DashboardLink(
            title="aispend dashboards",
            type="dashboards",
            tags=[TAG],
            asDropdown=True,
            includeVars=True,
            keepTime=True,
        )
    ]


def dashboard_url(stem: str) -> str:
    """Relative Grafana URL of another aispend dashboard (for panel links)."""
    return f"/d/{UIDS[stem]}"


def dashboard(
    stem: str,
    description: str,
    panels: Sequence[g.Panel],
    variables: Sequence[g.Template] = (),
    *,
    time_from: str = "now-24h",
) -> g.Dashboard:
    """A dashboard with the shared settings and the title `TITLES[stem]`; panel ids are
    assigned in order."""
    return g.Dashboard(
        title=TITLES[stem],
        uid=UIDS[stem],
        description=description,
        tags=[TAG],
        editable=False,
        timezone="utc",
        refresh="1m",
        schemaVersion=SCHEMA_VERSION,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        time=g.Time(time_from, "now"),
        links=links(),
        templating=g.Templating(list=[datasource_variable(), *variables]),
        panels=list(panels),
    ).auto_panel_ids()
