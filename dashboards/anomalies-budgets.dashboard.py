"""Anomalies and budgets: spend against its seasonal prediction, z-scores, burn rates,
what fired and what the actuator did about it."""

import attr
from grafanalib import core as g

from aispend import metrics as m
from aispend.dashboards import defaults as d
from aispend.dashboards import queries as q
from aispend.dashboards import refs as r
from aispend.dashboards.panels import Query, Row, layout, table, timeseries
from aispend.rules.promql import seconds

TEAM = q.TEAM


def _band_style() -> list[dict[str, object]]:
    """Bands dashed and unfilled; prediction dotted; actual solid."""

    def by_regex(pattern: str, props: list[dict[str, object]]) -> dict[str, object]:
        return {"matcher": {"id": "byRegexp", "options": pattern}, "properties": props}

    dash = {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
    dots = {"id": "custom.lineStyle", "value": {"fill": "dot", "dash": [2, 6]}}
    return [
        by_regex(".* [+-] .* sigma", [dash, {"id": "custom.fillOpacity", "value": 0}]),
        by_regex(".* prediction", [dots]),
    ]


def build(ctx: d.Context) -> g.Dashboard:
    money = ctx.money
    t = ctx.tunables
    k = t.anomaly_sigma
    band = q.team_actual_vs_prediction(t, TEAM)
    prediction = timeseries(
        r.SPEND_VS_PREDICTION.title,
        f"The team's spend per hour (5-minute rate) against its seasonal prediction"
        f" (median of the same time 1-3 weeks ago plus trend; 1-day or 6-hour baseline"
        f" while history is short) with +/- {k:g} sigma bands; the lower band is clamped"
        f" at 0. The band's sigma is the root of the summed per-model variances, each"
        f" model's stddev at least {t.min_stddev_ratio:.0%} of its prediction, as in the"
        f" z-score. Repeats per selected team.",
        money,
        Query(band["actual"], legend="{{team}} actual"),
        Query(band["prediction"], legend="{{team}} prediction"),
        Query(band["upper"], legend=f"{{{{team}}}} + {k:g} sigma"),
        Query(band["lower"], legend=f"{{{{team}}}} - {k:g} sigma"),
        overrides=_band_style(),
    )
    prediction = attr.evolve(prediction, repeat=g.Repeat("h", "team", 2))
    anomalies = Row("Spend vs prediction", [prediction], height=9)
    scores = Row(
        "Z-scores",
        [
            timeseries(
                r.ZSCORE_BY_TEAM_AND_MODEL.title,
                f"(5-minute spend rate - prediction) / baseline stddev; SpendAnomaly alerts"
                f" above {k:g} (guards: minimum spend, baseline variability, opt-outs).",
                d.SIGMA,
                Query(
                    q.zscores(m.REC_TEAM_MODEL_ZSCORE, m.MODEL, TEAM),
                    legend="{{team}} {{model}}",
                ),
                min_zero=False,
            ),
            timeseries(
                "Z-score, by team and agent",
                f"The same per agent; a runaway agent alerts above {t.runaway_sigma:g}.",
                d.SIGMA,
                Query(
                    q.zscores(m.REC_TEAM_AGENT_ZSCORE, m.AGENT, TEAM),
                    legend="{{team}} {{agent}}",
                ),
                min_zero=False,
            ),
        ],
    )
    burn_windows = sorted({w.long for w in t.month_burn}, key=seconds)
    day_a, day_b = q.day_vs_previous_weeks(TEAM)
    budgets = Row(
        "Budgets",
        [
            timeseries(
                "Month budget burn rate, by team",
                "Spend rate over each window / the pace that uses exactly the month budget"
                " (1x = on pace). Burn-rate alerts: 14.4x (1h), 6x (6h), 3x (1d), 1x (3d),"
                " each confirmed by a short window.",
                d.TIMES,
                *(
                    Query(q.burn_rate(w, "month", TEAM), legend=f"{{{{team}}}} {w}")
                    for w in burn_windows
                ),
            ),
            timeseries(
                "Last 24h vs the same day of previous weeks",
                "Spend of the last 24 hours against the median of the same 24 hours 1, 2"
                " and 3 weeks ago (slow leaks show as a widening gap).",
                money,
                Query(day_a, legend="{{team}} last 24h"),
                Query(day_b, legend="{{team}} previous weeks"),
            ),
            table(
                "Month budget runs out at",
                "When each team's month budget is used up at"
                f" {q.forecast_basis(t.forecast_rate_window)}"
                " (now if it already is).",
                d.TIMESTAMP,
                Query(q.budget_exhaustion(TEAM), instant=True, table=True),
                columns={"Value": "runs out at"},
                hide=("Time", "__name__", "project", "agent"),
            ),
        ],
        widths=[9, 9, 6],
    )
    actions = Row(
        "Alerts and actions",
        [
            table(
                "Firing alerts",
                "aispend alerts firing now. " + d.ALERT_ONLY,
                d.COUNT,
                Query(q.firing_alerts(), instant=True, table=True),
                hide=("Time", "Value", "__name__", "alertstate"),
            ),
            table(
                "Actuator actions (time range)",
                "What the actuator did in the time range, by target, action (apply, undo,"
                " skip) and result. " + d.ALERT_ONLY,
                d.COUNT,
                Query(q.actuator_actions(), instant=True, table=True),
                columns={"Value": "actions"},
            ),
            table(
                "Actions in force",
                "Actions in force (applied, or whose apply or undo failed, and not yet"
                " undone), by target and team. " + d.ALERT_ONLY,
                d.COUNT,
                Query(q.actuator_active_actions(), instant=True, table=True),
                columns={"Value": "active"},
            ),
        ],
    )
    return d.dashboard(
        "anomalies-budgets",
        "Spend against its seasonal prediction, z-scores, budget burn rates, firing alerts"
        " and the actuator's actions.",
        layout(anomalies, scores, budgets, actions),
        [d.spend_team_variable()],
        time_from="now-2d",
    )
