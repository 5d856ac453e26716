"""Overview: what AI costs today and this month, against budget, and what is firing."""

from grafanalib import core as g

from aispend import metrics as m
from aispend.dashboards import defaults as d
from aispend.dashboards import queries as q
from aispend.dashboards import refs as r
from aispend.dashboards.panels import (
    BUDGET_STEPS,
    ZERO,
    Query,
    Row,
    bargauge,
    layout,
    piechart,
    stat,
    table,
    timeseries,
)

TEAM = q.TEAM


def build(ctx: d.Context) -> g.Dashboard:
    money = ctx.money
    basis = q.forecast_basis(ctx.tunables.forecast_rate_window)
    spend = Row(
        "Spend",
        [
            stat(
                "Spend today",
                "Estimated AI spend (LLM tokens priced per model, plus GPU time) since 00:00"
                " UTC, for the selected teams.",
                money,
                Query(q.spend_today(TEAM), instant=True),
                no_value=ZERO,
            ),
            stat(
                "Month to date",
                "Estimated AI spend since the 1st of this month (UTC).",
                money,
                Query(q.spend_month(TEAM), instant=True),
                no_value=ZERO,
            ),
            stat(
                "Forecast month end",
                f"Month to date plus {basis}, until the end of the month.",
                money,
                Query(q.forecast_month_end(TEAM), instant=True),
                no_value=ZERO,
            ),
            stat(
                "Forecast vs month budget",
                "Forecast month-end spend of the teams with a month budget, as a share of"
                " those budgets (above 100 % means an overrun at the current pace).",
                d.RATIO,
                Query(q.forecast_vs_budget_total(TEAM), instant=True),
                thresholds=BUDGET_STEPS,
                no_value="no budget",
            ),
            stat(
                "Spend rate now",
                "Current spend per hour (5-minute rate).",
                money,
                Query(q.total_spend_rate(TEAM), instant=True),
                decimals=2,
                no_value=ZERO,
            ),
        ],
        height=5,
        widths=[5, 5, 5, 5, 4],
    )
    budgets = Row(
        "Budgets",
        [
            bargauge(
                "Month budget used, by team",
                "Spend this month as a share of each team's month budget (orange at 80 %,"
                " red at 100 %).",
                d.RATIO,
                Query(q.budget_used("month", TEAM), legend="{{team}}", instant=True),
                max_value=1.2,
            ),
            bargauge(
                "Day budget used, by team",
                "Spend today as a share of the day budget, for teams that have one.",
                d.RATIO,
                Query(q.budget_used("day", TEAM), legend="{{team}}", instant=True),
                max_value=1.2,
            ),
            bargauge(
                "Forecast vs month budget, by team",
                "Forecast month-end spend as a share of each team's month budget.",
                d.RATIO,
                Query(q.forecast_vs_budget(TEAM), legend="{{team}}", instant=True),
                max_value=2.0,
            ),
        ],
        height=8,
    )
    where = Row(
        "Where the money goes",
        [
            timeseries(
                r.SPEND_BY_TEAM.title,
                "Spend rate per team (per hour, averaged over each step of the graph), stacked.",
                money,
                Query(q.team_spend_rate(TEAM), legend="{{team}}"),
                stacked=True,
            ),
            piechart(
                "Spend by model (time range)",
                "LLM spend over the dashboard's time range, by model.",
                money,
                Query(q.llm_spend_in_range((m.MODEL,), TEAM), legend="{{model}}", instant=True),
            ),
            piechart(
                r.SPEND_BY_SOURCE.title,
                "Spend over the time range by where it was measured: gateway, tokens exporter"
                " (APIM, Azure OpenAI), GPU exporter, dcgm-exporter.",
                money,
                Query(q.source_spend_in_range(TEAM), legend="{{source}}", instant=True),
            ),
        ],
        height=9,
        widths=[12, 6, 6],
    )
    guardrails = Row(
        "Guardrails",
        [
            table(
                "Firing alerts",
                "aispend alerts firing now, with their labels. " + d.ALERT_ONLY,
                d.COUNT,
                Query(q.firing_alerts(), instant=True, table=True),
                hide=("Time", "Value", "__name__", "alertstate"),
            ),
            table(
                "Active throttles",
                "Throttle rules in force in the gateway (written by the actuator or an"
                " operator). " + d.ALERT_ONLY,
                d.COUNT,
                Query(q.active_throttles(), instant=True, table=True),
                hide=("Time", "Value", "__name__"),
            ),
        ],
        height=8,
    )
    return d.dashboard(
        "overview",
        "AI spend at a glance: today, month to date, forecast against budget, where it"
        " goes, and which guardrails are active.",
        layout(spend, budgets, where, guardrails),
        [d.team_variable()],
    )
