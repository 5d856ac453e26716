"""Team showback: one team's spend by project, agent and model, its budgets, and a
chargeback table for the month."""

from grafanalib import core as g

from aispend import metrics as m
from aispend.dashboards import defaults as d
from aispend.dashboards import queries as q
from aispend.dashboards import refs as r
from aispend.dashboards.panels import (
    GREEN,
    ZERO,
    Query,
    Row,
    bargauge,
    gauge,
    layout,
    piechart,
    stat,
    table,
    timeseries,
)
from aispend.rules.promql import seconds

TEAM = q.ONE_TEAM  # $team is single-value: see queries.ONE_TEAM
PROJECT = q.PROJECT
NO_BILL = "no bill data"
BILL_MONTH = (
    "The month is the one the bill data has reached: until the bill has a day of this"
    " month (its first day or two), the previous month's whole bill (see Bill data up to)."
)


def build(ctx: d.Context) -> g.Dashboard:
    money = ctx.money
    basis = q.forecast_basis(ctx.tunables.forecast_rate_window)
    tunables = ctx.tunables
    diff = tunables.reconcile_max_diff
    burn_windows = sorted({w.long for w in tunables.month_burn}, key=seconds)
    summary = Row(
        "$team",
        [
            stat(
                "Spend today",
                "The team's estimated AI spend since 00:00 UTC.",
                money,
                Query(q.spend_today(TEAM), instant=True),
                no_value=ZERO,
            ),
            stat(
                "Month to date",
                "The team's estimated AI spend since the 1st of the month (UTC).",
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
            gauge(
                r.TEAM_MONTH_BUDGET_USED.title,
                "Spend this month as a share of the team's month budget.",
                d.RATIO,
                Query(q.budget_used("month", TEAM), instant=True),
                max_value=1.2,
            ),
            gauge(
                r.TEAM_DAY_BUDGET_USED.title,
                "Spend today as a share of the team's day budget (empty for a team without one).",
                d.RATIO,
                Query(q.budget_used("day", TEAM), instant=True),
                max_value=1.2,
            ),
            stat(
                "Cost per request (1h)",
                "LLM spend per request over the last hour. " + q.COST_PER_REQUEST_SCOPE,
                money,
                Query(q.cost_per_request((), TEAM, window="1h"), instant=True),
                decimals=4,
            ),
        ],
        height=5,
    )
    spend = Row(
        "Spend",
        [
            timeseries(
                "Spend per hour, by project",
                "The team's spend rate by project, averaged over each step of the graph"
                " (agents without a project show as an empty project).",
                money,
                Query(
                    q.spend_rate_by(m.REC_TEAM_PROJECT_COST_RATE5M, m.PROJECT, TEAM, PROJECT),
                    legend="{{project}}",
                ),
                stacked=True,
            ),
            timeseries(
                r.TEAM_SPEND_BY_AGENT.title,
                "The team's spend rate by agent, averaged over each step of the graph: a"
                " runaway agent shows here first.",
                money,
                Query(
                    q.spend_rate_by(m.REC_COST_RATE5M, m.AGENT, TEAM, PROJECT),
                    legend="{{agent}}",
                ),
                stacked=True,
            ),
            piechart(
                "Spend by model (time range)",
                "The team's LLM spend over the time range, by model.",
                money,
                Query(
                    q.llm_spend_in_range((m.MODEL,), TEAM, PROJECT),
                    legend="{{model}}",
                    instant=True,
                ),
            ),
        ],
        height=9,
        widths=[9, 9, 6],
    )
    usage = Row(
        "Budget burn and usage",
        [
            timeseries(
                "Month budget burn rate",
                "Spend rate over each window divided by the pace that uses exactly the"
                " month budget (1 = on budget). The burn-rate alerts fire when both a long"
                " and a short window exceed 14.4, 6, 3 or 1.",
                d.TIMES,
                *(Query(q.burn_rate(w, "month", TEAM), legend=f"{w} window") for w in burn_windows),
            ),
            timeseries(
                "Tokens per second, by type",
                "LLM tokens per second by token type (input, cached input, output, and"
                " reasoning, which is the part of output spent on reasoning: not stacked).",
                d.TOKENS_PER_SEC,
                Query(q.tokens_per_second((m.TOKEN_TYPE,), TEAM, PROJECT), legend="{{token_type}}"),
            ),
            timeseries(
                "Cost per request, by project",
                "LLM spend divided by requests, per project. " + q.COST_PER_REQUEST_SCOPE,
                money,
                Query(q.cost_per_request((m.PROJECT,), TEAM, PROJECT), legend="{{project}}"),
            ),
        ],
        height=8,
    )
    chargeback = Row(
        "Chargeback",
        [
            timeseries(
                "Throttled requests",
                "Requests the gateway refused with 429 because of a throttle rule, by agent"
                " and rule. " + d.ALERT_ONLY,
                d.REQ_PER_SEC,
                Query(
                    q.throttled_per_second((m.AGENT, m.RULE), TEAM, PROJECT),
                    legend="{{agent}} ({{rule}})",
                ),
            ),
            table(
                "Chargeback this month",
                "Spend, tokens and requests this month (UTC) by project and agent, with the"
                " team's cost centre, for chargeback (a team without one, e.g. unattributed,"
                " is listed without it). Spend includes GPUs, dcgm-exporter's too (from their"
                " recorded cost rate). Tokens: input, cached input and output (reasoning is"
                " part of output, not added again).",
                d.COUNT,
                Query(q.chargeback("spend", TEAM, PROJECT), instant=True, table=True),
                Query(q.chargeback("tokens", TEAM, PROJECT), instant=True, table=True),
                Query(q.chargeback("requests", TEAM, PROJECT), instant=True, table=True),
                time_from="now/M",
                columns={"Value #A": "spend", "Value #B": "tokens", "Value #C": "requests"},
                units={"Value #A": money, "Value #B": d.COUNT, "Value #C": d.COUNT},
            ),
        ],
        height=9,
        widths=[10, 14],
    )
    bill = Row(
        "The bill",
        [
            stat(
                "Billed this month",
                "The team's cloud bill this month so far, from Azure Cost Management or"
                " FOCUS exports (the billing exporter's cost column), all services of its"
                " tagged resources. It lags hours to days; the spend above is the real-time"
                " estimate. " + BILL_MONTH + ' "no bill data" without the billing exporter.',
                money,
                Query(q.bill_month((), TEAM), instant=True),
                no_value=NO_BILL,
            ),
            bargauge(
                r.TEAM_BILL_BY_CATEGORY.title,
                "The team's bill this month by FOCUS ServiceCategory: AI spend next to the"
                " rest of its cloud bill. " + BILL_MONTH,
                money,
                Query(q.bill_month((m.SERVICE_CATEGORY,), TEAM), legend="{{service_category}}"),
                max_value=None,
                thresholds=((GREEN, None),),
            ),
            timeseries(
                r.TEAM_ESTIMATE_VS_BILL.title,
                "The real-time estimate divided by the bill for the newest complete day in"
                f" the bill data (1 = they agree). Outside {1 - diff:g}-{1 + diff:g},"
                " AISpendEstimateBillMismatch (info) fires: look for a source missing from"
                " the estimate or a price override that is off. 0: a bill and no estimate"
                " (traffic bypassing the gateway). Empty: no bill data; billing sources"
                " disagree on their newest complete day; aispend did not meter all of that"
                " day (just installed, or an outage); or the team has no bill row for"
                " the services the estimate covers (billed outside the cloud, or its rows"
                " untagged: see team untagged).",
                d.TIMES,
                Query(q.estimate_vs_bill(TEAM), legend="{{team}}"),
            ),
            stat(
                "Bill data up to",
                "End of the newest charge period in the bill data.",
                d.TIMESTAMP,
                Query(q.bill_data_end(), instant=True),
                no_value=NO_BILL,
            ),
        ],
        height=7,
        widths=[4, 8, 8, 4],
    )
    return d.dashboard(
        "team-showback",
        "One team's AI spend: by project, agent and model, budget burn, tokens, cost per"
        " request, throttles, the month's chargeback table, and the bill next to the"
        " estimate.",
        layout(summary, spend, usage, chargeback, bill),
        [d.team_variable(multi=False), d.project_variable(TEAM)],
        time_from="now-7d",
    )
