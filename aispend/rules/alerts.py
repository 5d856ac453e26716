"""Alerting rules, one function per domain, each alert with its runbook text.

Labels: `severity` (critical | warning | info), `team` where there is one, and `action`
(throttle | pause | notify) where an actuator should act. Teams whose
`aispend_team_info{criticality="critical"}` never get throttle or pause: the same alert
is a second rule for them, with `action=notify`. `runbook_url` and `dashboard_url` are
added in one pass by `render`.

Detection latency of RunawaySpend: derived from the tunables in `latency.py` (the
runbooks' "Detection latency of RunawaySpend" section).
"""

from __future__ import annotations

from dataclasses import replace
from textwrap import indent

from aispend import metrics as m
from aispend.dashboards import refs
from aispend.dashboards.defaults import UIDS
from aispend.dashboards.queries import (
    AISPEND_RULE_GROUPS,
    ALERTS,
    AM_NOTIFICATIONS_FAILED,
    RULE_EVAL_FAILURES,
    RULE_GROUP_MISSED,
)
from aispend.dashboards.refs import cite
from aispend.rules.anomaly import BASELINES
from aispend.rules.anomaly import name as anomaly_name
from aispend.rules.model import Alert, Group, Runbook
from aispend.rules.promql import num, seconds, set_label, string
from aispend.rules.spend import SCOPE, budget
from aispend.rules.tunables import BurnWindow, Tunables

SCOPE_TEXT = (
    "team {{ $labels.team }}{{ if $labels.project }} project {{ $labels.project }}{{ end }}"
    "{{ if $labels.agent }} agent {{ $labels.agent }}{{ end }}"
)
_PAST = {"throttle": "throttled", "pause": "paused"}
# Where each alert's dashboard_url points: the dashboard whose panels show its data.
OVERVIEW = UIDS["overview"]
TEAM_SHOWBACK = UIDS["team-showback"]
LLM = UIDS["llm-token-economics"]
GPU = UIDS["gpu-fleet"]
ANOMALIES = UIDS["anomalies-budgets"]
STACK = UIDS["stack-health"]
CRITICAL_TEAMS = f'{m.TEAM_INFO.name}{{{m.CRITICALITY}="critical"}}'
BILLING_JOB = 'job="aispend-billing"'
"""The billing exporter's scrape job (deploy/prometheus.yml, the stack's Prometheus)."""


def _with_action(alert: Alert, action: str, expr: str, description: str | None = None) -> Alert:
    """A rule of `alert` with label action=<action>; the runbook goes with the acting
    rule only (a notify twin shares it)."""
    return replace(
        alert,
        expr=expr,
        labels={**alert.labels, "action": action},
        description=alert.description if description is None else description,
        runbook=alert.runbook if action != "notify" else None,
    )


def query(expr: str, args: str, fmt: str) -> str:
    """A template that shows the first value of `expr` (printf-formatted with `args`),
    formatted by the template function `fmt`. No default: money must not go through
    `humanize`, whose SI suffixes turn a budget of 0.50 into "500m"."""
    return (
        f"{{{{ with printf `{expr}` {args} | query }}}}"
        f"{{{{ . | first | value | {fmt} }}}}{{{{ end }}}}"
    )


CURRENCY = (
    f'{{{{ with query "count by ({m.CURRENCY}) ({m.INFO.name})" }}}}'
    f'{{{{ if eq (len .) 1 }}}} {{{{ . | first | label "{m.CURRENCY}" }}}}{{{{ end }}}}'
    "{{ end }}"
)
"""` USD` after an amount: the reporting currency of `aispend_info`, where every aispend
process reports the same one; nothing where none (or more than one) is reported."""


def money(expr: str, args: str, digits: int = 2) -> str:
    """An amount in the reporting currency: fixed decimals, then the currency."""
    return query(expr, args, f'printf "%.{digits}f"') + CURRENCY


def per_hour(expr: str, args: str) -> str:
    return money(f"({expr}) * 3600", args)


def _by_criticality(alert: Alert, acting: str) -> list[Alert]:
    """The alert with action=<acting>, and the same alert with action=notify for
    critical teams."""
    act = _with_action(alert, acting, f"(\n{alert.expr}\n)\nunless on({m.TEAM}) {CRITICAL_TEAMS}")
    notify = _with_action(
        alert,
        "notify",
        f"(\n{alert.expr}\n)\nand on({m.TEAM}) {CRITICAL_TEAMS}",
        alert.description + f" The team is critical: not {_PAST[acting]}, notified only.",
    )
    return [act, notify]


def budget_alerts(t: Tunables) -> list[Alert]:
    used = m.REC_BUDGET_USED.name
    amount = money(
        f'max({m.BUDGET.name}{{team="%s",project="%s",agent="%s",period="%s"}})',
        "$labels.team $labels.project $labels.agent $labels.period",
    )
    exceeded_runbook = Runbook(
        meaning="Spend so far this UTC day or calendar month has reached the budget "
        "(critical) or its soft threshold `soft_ratio` (warning).",
        check="On the "
        + cite(refs.TEAM_MONTH_BUDGET_USED, refs.TEAM_DAY_BUDGET_USED, refs.TEAM_SPEND_BY_AGENT)
        + " for the team (the alert's dashboard link); `team_project_agent:aispend_cost:"
        "increase_today` / `..._month` per scope; which agent or model grew "
        "(`team_agent:aispend_cost:rate5m`).",
        action="Agree with the team owner (aispend_team_info owner) whether to raise the "
        "budget in aispend.yaml or to stop the workload; a runaway agent is throttled "
        "by AISpendRunawaySpend automatically.",
    )
    alerts = [
        Alert(
            "AISpendBudgetExceeded",
            f"{used} >= 1",
            t.budget_exceeded_for,
            {"severity": "critical"},
            f"Budget exceeded: {SCOPE_TEXT} ({{{{ $labels.period }}}})",
            f"{SCOPE_TEXT} has spent {{{{ $value | humanizePercentage }}}} of its "
            f"{{{{ $labels.period }}}} budget of {amount}.",
            TEAM_SHOWBACK,
            exceeded_runbook,
        ),
        Alert(
            "AISpendBudgetExceeded",
            f"{used} >= on({SCOPE}, {m.PERIOD}) group_left()\n"
            f"  max by ({SCOPE}, {m.PERIOD}) ({m.BUDGET_SOFT_RATIO.name})\n"
            f"and {used} < 1",
            t.budget_exceeded_for,
            {"severity": "warning"},
            f"Budget soft limit reached: {SCOPE_TEXT} ({{{{ $labels.period }}}})",
            f"{SCOPE_TEXT} has spent {{{{ $value | humanizePercentage }}}} of its "
            f"{{{{ $labels.period }}}} budget of {amount}.",
            TEAM_SHOWBACK,
        ),
    ]

    def burn(windows: list[tuple[str, BurnWindow]]) -> str:
        parts = []
        for period, w in windows:
            long_ = f'{m.REC_BURN_PREFIX}{w.long}{{{m.PERIOD}="{period}"}}'
            short = f'{m.REC_BURN_PREFIX}{w.short}{{{m.PERIOD}="{period}"}}'
            parts.append(f"({long_} > {num(w.factor)}\n and {short} > {num(w.factor)})")
        # A breached budget ends its own burn alerts here, in the rule, so that
        # Alertmanager sends their resolve: an inhibited alert's resolve is dropped, and
        # the pager incident of the burn would stay open for good.
        burning = "\nor\n".join(parts)
        return f"(\n{burning}\n)\nunless on({SCOPE}, {m.PERIOD}) {used} >= 1"

    all_windows = [("month", w) for w in t.month_burn] + [("day", w) for w in t.day_burn]
    for alertname, severity, for_, runbook in (
        (
            "AISpendBudgetBurnFast",
            "critical",
            t.burn_fast_for,
            Runbook(
                meaning="Spend is running so fast that a large share of the budget goes "
                "within hours (month budgets: 14.4x over 1h and 5m, or 6x over 6h and 30m; "
                "day budgets: 14.4x over 10m and 5m, or 6x over 1h and 5m). Burn 1 means "
                "exactly on budget. It ends once its budget is spent: AISpendBudgetExceeded "
                "takes over.",
                check="`team_project_agent_period:aispend_budget_burn:ratio_rate5m` and the "
                "long window; which agent/model drives it (`team_agent:aispend_cost:rate5m`, "
                "`team_model:aispend_cost:rate5m`).",
                action="Find the workload; if it is a runaway, throttle it (the actuator does "
                "so for AISpendRunawaySpend); otherwise agree a budget change.",
            ),
        ),
        (
            "AISpendBudgetBurnSlow",
            "warning",
            t.burn_slow_for,
            Runbook(
                meaning="Spend runs steadily above budget pace (month budgets: 3x over 1d "
                "and 2h, or 1x over 3d and 6h; day budgets: 3x over 4h and 20m, or 1x over "
                "12h and 1h): the budget will run out before the period ends. It ends once "
                "its budget is spent: AISpendBudgetExceeded takes over.",
                check="The forecast (`team_project_agent:aispend_cost:forecast_month_end`) "
                "and the exhaustion time; growth per model and agent over days.",
                action="Ticket for the team: reduce usage (cheaper model, caching) or "
                "raise the budget.",
            ),
        ),
    ):
        windows = [(p, w) for p, w in all_windows if w.severity == severity]
        alerts.append(
            Alert(
                alertname,
                burn(windows),
                for_,
                {"severity": severity},
                f"{SCOPE_TEXT} burns its {{{{ $labels.period }}}} budget "
                f'{{{{ $value | printf "%.1f" }}}}x too fast',
                f'{SCOPE_TEXT} spends at {{{{ $value | printf "%.1f" }}}}x the pace of '
                f"its {{{{ $labels.period }}}} budget of {amount}.",
                ANOMALIES,
                runbook,
            )
        )
    month_budget = budget("month", SCOPE)
    alerts.append(
        Alert(
            "AISpendForecastOverrun",
            f"{m.REC_FORECAST_MONTH_END.name} > on({SCOPE}) {month_budget}\n"
            f"unless on({SCOPE}) {m.REC_SCOPE_COST_MONTH.name} >= on({SCOPE}) {month_budget}",
            t.forecast_for,
            {"severity": "warning"},
            f"{SCOPE_TEXT} will overrun its monthly budget",
            f'{SCOPE_TEXT} is projected to spend {{{{ $value | printf "%.2f" }}}}{CURRENCY} '
            "by the end of the month (budget "
            + money(
                f'max({m.BUDGET.name}{{team="%s",project="%s",agent="%s",period="month"}})',
                "$labels.team $labels.project $labels.agent",
            )
            + "); at the recent rate the budget runs out at "
            + query(
                f'{m.REC_BUDGET_EXHAUSTION.name}{{team="%s",project="%s",agent="%s"}}',
                "$labels.team $labels.project $labels.agent",
                "humanizeTimestamp",
            )
            + ".",
            TEAM_SHOWBACK,
            Runbook(
                meaning="Month-to-date spend plus the last "
                f"{t.forecast_rate_window} rate (over the hours there are, for a scope with "
                "less history) times the time left exceeds the monthly budget.",
                check="`team_project_agent:aispend_cost:forecast_month_end` and "
                "`team_project_agent:aispend_budget:exhaustion_timestamp_seconds`; was "
                "there a one-off spike (then the forecast drops within a day)?",
                action="Plan with the team owner: trim usage or raise the budget before "
                "the exhaustion date.",
            ),
        )
    )
    return alerts


def runaway_burn(agent_rate: str) -> str:
    """An agent's spend rate over the tightest budget pace that binds it: its own
    budgets' and its team's, one series per agent (the larger ratio where it has both).
    A team with only agent budgets is watched through them."""
    own = f"{agent_rate} / on({m.TEAM}, {m.AGENT}) group_left() {m.REC_AGENT_BUDGET_PACE_MIN.name}"
    team = f"{agent_rate} / on({m.TEAM}) group_left() {m.REC_TEAM_BUDGET_PACE_MIN.name}"
    return (
        f"max by ({m.TEAM}, {m.AGENT}) ({set_label(own, m.BUDGET_OF, 'agent')}"
        f" or {set_label(team, m.BUDGET_OF, 'team')})"
    )


def runaway_zscore(t: Tunables) -> str:
    """The agent z-score RunawaySpend reads (on its short-window rate)."""
    return anomaly_name("team_agent", f"zscore_rate{t.runaway_rate_window}")


def runaway_rate(t: Tunables) -> str:
    """The agent spend rate RunawaySpend reads (runaway_rate_window)."""
    return anomaly_name("team_agent", f"rate{t.runaway_rate_window}")


def runaway_condition(t: Tunables) -> str:
    """RunawaySpend's condition: the agents it pages for (and throttles).

    One agent's short-window z-score over runaway_sigma, its spend at least
    min_hourly_spend, and its spend alone at least runaway_burn_factor x the tightest
    budget pace that binds it (`runaway_burn`). RunawaySpend is this or
    `runaway_held` (`runaway_active`); TeamRunaway leaves a team to RunawaySpend where
    that holds for one of its agents; both read it from here, so the two cannot drift
    apart."""
    za, agent_rate = runaway_zscore(t), runaway_rate(t)
    return (
        f'{za}{{{m.AGENT}!=""}} > {num(t.runaway_sigma)}\n'
        f"and on({m.TEAM}, {m.AGENT}) {agent_rate} >= {num(t.min_hourly_spend / 3600)}\n"
        f"and on({m.TEAM}, {m.AGENT}) (\n"
        f"  {runaway_burn(agent_rate)} >= {num(t.runaway_burn_factor)}\n)"
    )


RUNAWAY = "AISpendRunawaySpend"


def runaway_held(t: Tunables) -> str:
    """What keeps a firing RunawaySpend firing once the actuator throttles its agent.

    The throttle brings the agent's spend under the burn guard while the loop goes on;
    without this the alert resolved within minutes, the throttle was lifted, and the
    loop fired it anew: a page and an apply/undo pair every few minutes. So while the
    actuator's gateway throttle (rule `am-<fingerprint>`) holds the agent and its
    z-score stays over runaway_sigma, the alert stays firing; it resolves once the
    agent's spend is back near its prediction. It cannot start the alert (ALERTS must
    show it firing), and without the gateway's throttle table in the data (a replay of
    a spend history, an action=notify team) it never holds. It lasts about an hour
    (HOLD_OUT): then the loop is in the baseline's stddev and the z-score falls."""
    za = runaway_zscore(t)
    return (
        f'{za}{{{m.AGENT}!=""}} > {num(t.runaway_sigma)}\n'
        f"and on({m.TEAM}, {m.AGENT}) "
        f'{ALERTS}{{alertname="{RUNAWAY}", alertstate="firing"}}\n'
        f"and on({m.TEAM}, {m.AGENT}) "
        f'{m.GATEWAY_THROTTLE_ACTIVE.name}{{{m.RULE}=~"{m.ACTUATOR_RULE_PREFIX}.+"}}'
    )


def runaway_active(t: Tunables) -> str:
    """RunawaySpend's whole expression: its condition, or held by its throttle. Without
    the z-score's `baseline` label: when an agent's history reaches a day (6h -> 1d) or
    a week (1d -> 1w), the alert would end and a new one start, and the actuator would
    lift the throttle in between (and the hold, which needs a firing alert, not hold
    the new one)."""
    either = f"(\n{indent(runaway_condition(t), '  ')}\n)\nor (\n{indent(runaway_held(t), '  ')}\n)"
    return f"max without ({m.BASELINE}) (\n{indent(either, '  ')}\n)"


def anomaly_alerts(t: Tunables) -> list[Alert]:
    min_rate = num(t.min_hourly_spend / 3600)
    z = anomaly_name("team_model", "zscore")
    opt_out = "".join(
        f"\nunless on({m.TEAM}, {m.MODEL}) {z}{{"
        + ", ".join(f"{k}={string(v)}" for k, v in sorted(entry.items()))
        + "}"
        for entry in t.zscore_opt_out  # labels team and/or model: checked in Tunables
    )
    # The baseline's stddev at most max_cv x its mean, multiplied out: as a ratio, a flat
    # zero baseline (a model idle for the whole window) is 0/0, and NaN <= x is false, so
    # a jump from nothing could never fire.
    cv = "team_model:aispend_cost:rate1h:stddev <= team_model:aispend_cost:rate1h:avg"
    baselines = [b for b in BASELINES if b in t.anomaly_baselines]
    z_used = (
        z if len(baselines) == len(BASELINES) else f'{z}{{{m.BASELINE}=~"{"|".join(baselines)}"}}'
    )
    spend_anomaly = Alert(
        "AISpendSpendAnomaly",
        f"{z_used} > {num(t.anomaly_sigma)}\n"
        f"and on({m.TEAM}, {m.MODEL}) team_model:aispend_cost:rate5m >= {min_rate}\n"
        f"and on({m.TEAM}, {m.MODEL}, {m.BASELINE}) (\n"
        f"  {cv} * {num(t.max_cv)}\n)" + opt_out,
        t.anomaly_for,
        {"severity": "warning"},
        "Unusual spend: team {{ $labels.team }} on {{ $labels.model }}",
        "Team {{ $labels.team }} spends "
        + per_hour(
            'team_model:aispend_cost:rate5m{team="%s",model="%s"}', "$labels.team $labels.model"
        )
        + "/h on {{ $labels.model }} against a predicted "
        + per_hour(
            'team_model:aispend_cost:rate1h:prediction{team="%s",model="%s"}',
            "$labels.team $labels.model",
        )
        + '/h ({{ $labels.baseline }} baseline): z-score {{ $value | printf "%.1f" }}.',
        ANOMALIES,
        Runbook(
            meaning="Spend per team and model departs from its seasonal prediction by more "
            f"than {num(t.anomaly_sigma)} standard deviations for {t.anomaly_for} "
            "(label baseline: 1w = weekly seasonality, 1d = daily, 6h = last hours while "
            "history is short). Also fires (baseline same_weekday) when every hour for "
            f"{t.leak_for} costs more than {num(t.leak_ratio)}x the same hour on the same "
            "weekday of each of the previous three weeks: slow leaks and always-on floors.",
            check="On the "
            + cite(refs.SPEND_VS_PREDICTION, refs.ZSCORE_BY_TEAM_AND_MODEL)
            + ": current rate, prediction and stddev (`team_model:aispend_cost:rate1h:*`); "
            "a new agent or prompt change? A GPU left running ("
            + cite(refs.idle_gpus(t.gpu_idle_threshold, t.gpu_idle_for))
            + ")?",
            action="If expected (launch, batch job), note it; if a series is always "
            "bursty, opt it out with the `zscore_opt_out` tunable. Otherwise find and stop "
            "the workload.",
        ),
    )
    day = m.REC_TEAM_COST_1D.name
    rate1h = m.REC_TEAM_COST_RATE1H.name
    # Hour by hour, not the last 24h: a 24h sum carries a short runaway or burst for a
    # day after it ended, and on the labelled spend traces the 24h version's false alarms
    # were such echoes; a leak or an always-on floor raises every hour.
    leak = Alert(
        "AISpendSpendAnomaly",
        f"{rate1h} / on({m.TEAM}) {m.REC_TEAM_COST_RATE1H_WEEKS.name} > {num(t.leak_ratio)}\n"
        f"and on({m.TEAM}) {rate1h} >= {min_rate}\n"
        f"and on({m.TEAM}) {day} >= {num(t.min_daily_spend)}",
        t.leak_for,
        {"severity": "warning", m.BASELINE: "same_weekday"},
        "Team {{ $labels.team }} spends more than at this hour on the same weekday before",
        "Team {{ $labels.team }} spends "
        + per_hour(f'{rate1h}{{team="%s"}}', "$labels.team")
        + '/h, {{ $value | printf "%.2f" }}x the highest of the same hour 1, 2 and 3 '
        f"weeks ago, for {t.leak_for} or more (a slow leak, or an always-on floor such as "
        "an idle GPU?).",
        ANOMALIES,
    )
    agent_rate, za = runaway_rate(t), runaway_zscore(t)
    burn = runaway_burn(f'{agent_rate}{{team="%s",agent="%s"}}')
    burn_args = "$labels.team $labels.agent $labels.team $labels.agent"  # the rate twice
    runaway = Alert(
        RUNAWAY,
        runaway_active(t),
        t.runaway_for,
        {"severity": "critical"},
        "Runaway spend: agent {{ $labels.agent }} of team {{ $labels.team }}",
        "Agent {{ $labels.agent }} of team {{ $labels.team }} spends "
        + per_hour(f'{agent_rate}{{team="%s",agent="%s"}}', "$labels.team $labels.agent")
        + "/h against a predicted "
        + per_hour(
            'team_agent:aispend_cost:rate1h:prediction{team="%s",agent="%s"}',
            "$labels.team $labels.agent",
        )
        + "/h ("
        + f'{{{{ with printf `{za}{{team="%s",agent="%s"}}` $labels.team $labels.agent'
        + ' | query }}{{ . | first | label "baseline" }} {{ end }}baseline, '
        + 'z-score {{ $value | printf "%.1f" }}) '
        "and alone burns its budget "
        + query(burn, burn_args, 'printf "%.1f"')
        + "x too fast."
        # Held (`runaway_held`): the throttle keeps its spend under the burn guard.
        + f"{{{{ with printf `{burn}` {burn_args} | query }}}}"
        f"{{{{ if lt (. | first | value) {float(t.runaway_burn_factor)!r} }}}}"
        " The actuator's throttle holds it under the budget pace: the alert fires until "
        "its spend is back near the prediction.{{ end }}{{ end }}",
        ANOMALIES,
        Runbook(
            meaning=f"One agent's {t.runaway_rate_window} spend rate is more than "
            f"{num(t.runaway_sigma)} standard "
            "deviations above its prediction AND the agent alone spends at least "
            f"{num(t.runaway_burn_factor)}x the tightest budget pace that binds it: its own "
            "budgets' (agent budgets) and its team's. A team with only project budgets is "
            "not watched by this alert (the burn alerts still are). The actuator "
            "throttles exactly that agent (action=throttle); critical teams get "
            "action=notify and are never throttled. Once throttled, the agent's spend "
            "falls under the budget pace while its loop goes on, so the alert stays "
            "firing (and the throttle on) for as long as the actuator's throttle holds "
            f"the agent and its z-score stays above {num(t.runaway_sigma)}: it resolves "
            "when the agent's spend is back near its prediction, not at the first minute "
            "the throttle has it under budget. Limits of that hold: it reads the throttled "
            "spend, so a throttle under the agent's usual pace ends it; and it lasts about "
            "the loop's first hour, since baselines end an hour ago: after that the "
            "loop's own spend is in the baseline's stddev, the z-score falls, and a loop "
            "still running is throttled on and off again (the budget burn alerts keep "
            "paging). A Prometheus down for more than 5 minutes also ends it.",
            check="Audit log of the actuator; the gateway's throttle table "
            "(`aispend_gateway_throttle_active`); the agent's requests and tokens.",
            action="Fix the agent (loop, retry storm, prompt bloat). The throttle is undone "
            "when the alert resolves. To lift it sooner, delete it at the gateway "
            '(`DELETE /admin/throttles/am-<fingerprint>`, README "Throttling by hand"). '
            "Do not silence the alert: Alertmanager sends no resolve for a silenced alert, "
            "so the actuator would never undo the throttle.",
        ),
    )
    zt = anomaly_name("team_model", "zscore")
    team_rate = anomaly_name("team_model", "rate5m")
    team_runaway = Alert(
        "AISpendTeamRunaway",
        f"{zt} > {num(t.team_runaway_sigma)}\n"
        f"and on({m.TEAM}, {m.MODEL}) {team_rate} >= {min_rate}\n"
        f"and on({m.TEAM}, {m.MODEL}) (\n"
        f"  {team_rate} / on({m.TEAM}) group_left() {m.REC_TEAM_BUDGET_PACE_MIN.name}"
        f" >= {num(t.team_runaway_burn_factor)}\n)\n"
        # SpendAnomaly's normality guard: on a bursty series (stddev above the mean) a
        # z-score says little, and this alert pages; the budget burn alerts still watch.
        f"and on({m.TEAM}, {m.MODEL}, {m.BASELINE}) (\n"
        f"  {cv} * {num(t.max_cv)}\n)\n"
        # An agent already caught by RunawaySpend (throttled) is not paged twice: its
        # whole expression, so that an agent its guards ignore silences nothing.
        f"unless on({m.TEAM}) (\n{indent(runaway_active(t), '  ')}\n)",
        t.team_runaway_for,
        {"severity": "critical", "action": "notify"},
        "Runaway spend: team {{ $labels.team }} on {{ $labels.model }}",
        "Team {{ $labels.team }} spends "
        + per_hour(f'{team_rate}{{team="%s",model="%s"}}', "$labels.team $labels.model")
        + "/h on {{ $labels.model }} against a predicted "
        + per_hour(
            'team_model:aispend_cost:rate1h:prediction{team="%s",model="%s"}',
            "$labels.team $labels.model",
        )
        + '/h ({{ $labels.baseline }} baseline, z-score {{ $value | printf "%.1f" }}) '
        "and alone burns the team's budget "
        + query(
            f'{team_rate}{{team="%s",model="%s"}} / on(team) group_left() '
            f"{m.REC_TEAM_BUDGET_PACE_MIN.name}",
            "$labels.team $labels.model",
            'printf "%.1f"',
        )
        + "x too fast. No agent label explains it: notified, not throttled.",
        ANOMALIES,
        Runbook(
            meaning="A team's spend on one model (5m rate) is more than "
            f"{num(t.team_runaway_sigma)} standard deviations above its prediction AND alone "
            f"spends at least {num(t.team_runaway_burn_factor)}x the team's tightest budget "
            f"pace, on a baseline whose stddev is at most {num(t.max_cv)}x its mean (on "
            "bursty spend a z-score says little; the budget burn alerts cover it), "
            "while no single agent explains it (else AISpendRunawaySpend fires and "
            "throttles that agent). Spend without an agent label (tokens exporter, cloud "
            "usage, GPUs) shows up here. action=notify: a whole-team throttle would stop "
            "healthy workloads too, so a person decides.",
            check="`team_model:aispend_cost:rate5m` against `team_model:aispend_cost:rate1h:"
            "prediction`; by project (`team_project:aispend_cost:rate5m`) and source "
            "(`team_source:aispend_cost:rate5m`); "
            "the model's request and token rates on the "
            + cite(refs.REQUESTS_BY_MODEL_AND_STATUS, refs.TOKENS_BY_MODEL_AND_TYPE)
            + ".",
            action="Find the workload (API key, project, job) and stop or fix it; if it "
            "runs through the gateway, throttle it there by hand (or give its requests an "
            "`X-Aispend-Agent` header, which the gateway reads with "
            "`sources.gateway.header_refinement: true`, so RunawaySpend can throttle it "
            "next time).",
        ),
    )
    return [spend_anomaly, leak, *_by_criticality(runaway, "throttle"), team_runaway]


GPU_WORKLOAD = (m.NAMESPACE, m.POD)
"""Labels of an AISpendGPUIdle alert with action=pause: the pod holding the GPU."""
POD_UID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
"""A pod uid where no name is known: the gpu exporter labels such a pod with its uid."""
WORKLOAD_MEMORY = "10m"
"""A pod counts as on its GPU for this long after its last sample: a worker that
restarts every few minutes must not move the alert between its rules (each restarting
its `for:`)."""


def gpu_idle_alerts(idle: Alert, threshold: str) -> list[Alert]:
    """GPUIdle by what the actuator can pause (`idle.expr` is per GPU).

    action=pause, one alert per pod, labels namespace and pod (and the pod's team and
    project): a non-critical team's pod, known by name (`sources.gpu.pods`, or
    dcgm-exporter's pod mapping), whose GPUs are all idle, so the Kubernetes target
    scales exactly the workload controlling it. Once paused, the pod is gone but the
    alert stays firing (`ALERTS`) while the GPU stays idle: resolving it would undo the
    pause. action=notify, one alert per GPU: every other idle GPU (a critical team's
    pod, no known pod, a pod that also holds a busy GPU)."""
    uuid, copied = m.GPU_UUID, (m.GPU, m.GPU_MODEL_NAME, m.HOSTNAME, m.SOURCE)
    critical_team = f'{m.TEAM_INFO.name}{{{m.CRITICALITY}="critical",{m.TEAM}="%s"}}'
    known = f'{{{m.NAMESPACE}!="", {m.POD}!="", {m.POD}!~"{POD_UID}"}}'
    pods = (
        f"group by ({uuid}, {', '.join(GPU_WORKLOAD)}, {m.TEAM}, {m.PROJECT}) (\n"
        f"  last_over_time({m.GPU_PROCESS_MEMORY.name}{known}[{WORKLOAD_MEMORY}])\n"
        # dcgm-exporter labels its fields with the pod it maps the GPU to (Kubernetes mode).
        f"  or last_over_time({m.DCGM_GPU_UTIL}{known}[{WORKLOAD_MEMORY}])\n)"
    )
    util = m.REC_GPU_UTILIZATION.name
    # One series per GPU: dcgm-exporter may report one per pod sharing it.
    idle_gpu = f"max by ({uuid}, {', '.join(copied)}) ({util}) < {threshold}"
    busy_pods = (
        f"group by ({', '.join(GPU_WORKLOAD)}) (\n  {pods}\n"
        f"  * on({uuid}) group_left() (max by ({uuid}) ({util}) >= {threshold})\n)"
    )
    on_idle = f"({idle_gpu})\n* on({uuid}) group_right({', '.join(copied)})"
    firing = f'{ALERTS}{{alertname="{idle.alert}", alertstate="firing", action="pause"}}'
    pause_expr = (
        f"(\n{on_idle}\n{pods}\nunless on({', '.join(GPU_WORKLOAD)}) {busy_pods}\n)\n"
        # Paused: the pod is gone; the alert lasts while the GPU stays idle.
        f"or (\n{on_idle}\nmax without (alertname, alertstate, action, severity) ({firing})\n)"
    )
    pause_expr = f"(\n{pause_expr}\n)\nunless on({m.TEAM}) {CRITICAL_TEAMS}"
    pause = _with_action(idle, "pause", pause_expr)
    notify = _with_action(
        idle,
        "notify",
        f"{idle.expr}\nunless on({uuid}) (\n{indent(pause_expr, '  ')}\n)",
        idle.description
        + f"{{{{ with printf `{critical_team}` $labels.team | query }}}}"
        + f" The team is critical: not {_PAST['pause']}, notified only.{{{{ else }}}}"
        " Not paused, notified only: no Kubernetes pod of a non-critical team is known "
        "for its processes (sources.gpu.pods, or dcgm-exporter's pod mapping), or that "
        "pod also holds a busy GPU.{{ end }}",
    )
    return [pause, notify]


def gpu_alerts(t: Tunables) -> list[Alert]:
    idle = Alert(
        "AISpendGPUIdle",
        f"{m.REC_GPU_UTILIZATION.name} < {num(t.gpu_idle_threshold)}",
        t.gpu_idle_for,
        {"severity": "warning"},
        "Idle GPU {{ $labels.gpu }} on {{ $labels.Hostname }} (team {{ $labels.team }}"
        "{{ if $labels.pod }}, pod {{ $labels.namespace }}/{{ $labels.pod }}{{ end }})",
        "GPU {{ $labels.gpu }} ({{ $labels.model_name }}, {{ $labels.UUID }}) on "
        "{{ $labels.Hostname }} has been below "
        f"{num(t.gpu_idle_threshold * 100)} % utilisation for {t.gpu_idle_for} "
        "(now {{ $value | humanizePercentage }}) and costs "
        + per_hour(f'{m.REC_GPU_COST_RATE.name}{{UUID="%s"}}', "$labels.UUID")
        + "/h.",
        GPU,
        Runbook(
            meaning=f"A GPU's utilisation stayed below {num(t.gpu_idle_threshold * 100)} % "
            f"for {t.gpu_idle_for} while it costs its hourly price. action=pause, one "
            "alert per pod (labels namespace, pod, and the pod's team and project): a "
            "pod known by name (aispend's gpu exporter: `sources.gpu.pods` with a pod "
            "name; dcgm-exporter: its pod mapping, labels pod and namespace, which a "
            "Kubernetes scrape without `honor_labels` renames exported_pod and "
            "exported_namespace), of a non-critical team, whose GPUs are "
            "all idle. An `actions.rules` entry may send it to a Kubernetes target with "
            "`pod: ${pod}` (none by default: the example's is commented out), which "
            "scales the Deployment or StatefulSet controlling the pod to 0 or suspends "
            "its Job, as the target's `kind` list allows (a bare pod or another "
            "controller is refused, and AISpendActuatorFailing pages); without one the "
            "actuator only records the alert. Once paused, the pod is gone, but the alert "
            "stays firing (it reads its own ALERTS series) until the GPU is busy again or "
            "gone; then the pause is undone. A Prometheus down for more than 5 minutes "
            "loses that series, so the alert resolves and the workload comes back. "
            "action=notify, one alert per GPU: every other idle GPU (a critical team's "
            "pod, no pod known by name, a pod that also holds a busy GPU). "
            "A GPU without a utilisation reading is "
            "never judged idle: a MIG-enabled GPU (NVML does not measure it; dcgm-exporter's "
            "per-MIG-instance utilisation is not the GPU's). A GPU aispend's exporter "
            "watches is judged by its reading only, not by dcgm-exporter's.",
            check="On the "
            + cite(
                refs.UTILISATION_PER_GPU,
                refs.MEMORY_PER_GPU,
                refs.idle_gpus(t.gpu_idle_threshold, t.gpu_idle_for),
            )
            + f"; the processes on the GPU: `{m.GPU_PROCESS_MEMORY.name}` (aispend's gpu "
            "exporter; no panel shows it). Is a job waiting on data, or was a notebook "
            "left open?",
            action="Stop or scale down the workload. A pause the actuator applied is undone "
            "when the alert resolves.",
        ),
    )
    present = m.REC_GPU_PRESENT.name
    unpriced = Alert(
        "AISpendGPUUnpriced",
        # The gpu exporter exports an hourly price only for a GPU it has one for; dcgm
        # GPUs are priced by the model prices recorded from gpu_hourly_prices. Every GPU
        # an exporter reports counts, with utilisation or without (a MIG-enabled GPU).
        f"count by ({m.GPU_MODEL_NAME}, {m.SOURCE}) (\n"
        f'  ({present}{{{m.SOURCE}="gpu"}} unless on({m.GPU_UUID}) {m.GPU_HOURLY_COST.name})\n'
        f'  or ({present}{{{m.SOURCE}="dcgm"}}\n'
        f"    unless on({m.GPU_MODEL_NAME}) {m.REC_GPU_PRICE.name})\n)",
        t.gpu_unpriced_for,
        {"severity": "warning"},
        "No hourly price for GPU model {{ $labels.model_name }} (source {{ $labels.source }})",
        "Model {{ $labels.model_name }} (source {{ $labels.source }}) has no hourly price, "
        "for {{ $value }} GPU(s): they have no cost series, so spend, budgets and forecasts "
        'leave their cost out. {{ if eq $labels.source "dcgm" }}Add the model to the '
        "gpu_hourly_prices tunable and regenerate the rules (aispend rules generate "
        "--tunables FILE).{{ else }}Add the model under prices.gpu in aispend.yaml.{{ end }}",
        GPU,
        Runbook(
            meaning="GPUs are reported but their model has no hourly price, so they "
            "get no cost series: spend, budgets, burn rates, forecasts and anomaly alerts "
            "leave their cost out. source=gpu: aispend's gpu exporter found the "
            "NVML model name neither under prices.gpu in aispend.yaml nor in its table of "
            "example prices (it logs `no hourly price for GPU model ...` once, at warning "
            "level). source=dcgm: dcgm-exporter's modelName is not in the rules' "
            "`gpu_hourly_prices` tunable (default: "
            + ", ".join(sorted(t.gpu_hourly_prices) or ["none"])
            + "). The alert's value is the number of such GPUs.",
            check=f'Which GPUs: `{present}{{model_name="<model>"}}` (UUID, Hostname, team); '
            f"the priced models: `{m.REC_GPU_PRICE.name}` (dcgm) and "
            f"`{m.GPU_HOURLY_COST.name}` (gpu exporter). Names must match exactly (the gpu "
            "exporter also accepts another case): compare with `nvidia-smi --query-gpu=name "
            "--format=csv` or dcgm-exporter's modelName label.",
            action="Add the hourly price you pay per GPU, keyed by the model name the "
            "alert shows. source=gpu: under prices.gpu in aispend.yaml; the exporter "
            "rereads the file and exports the cost from its next scrape. source=dcgm: under "
            "`gpu_hourly_prices` in a tunables YAML file (keep the models already there), "
            "then `aispend rules generate --tunables FILE` and reload Prometheus. Cost "
            "counts from then on; the hours before stay unpriced.",
        ),
    )
    return [*gpu_idle_alerts(idle, num(t.gpu_idle_threshold)), unpriced, gpu_lost_alert(t)]


GPU_IDENTITY_CALLS = "nvmlDeviceGet(HandleByIndex|Name|UUID)"
"""The NVML calls without which aispend's gpu exporter cannot report a GPU at all."""


def gpu_lost_alert(t: Tunables) -> Alert:
    errors = f'{m.GPU_NVML_ERRORS.name}{{{m.CALL}=~"{GPU_IDENTITY_CALLS}"}}'
    return Alert(
        "AISpendGPULost",
        f"sum by (job, instance) (rate({errors}[5m])) > 0",
        t.gpu_lost_for,
        {"severity": "warning"},
        "A GPU on {{ $labels.instance }} cannot be read",
        f"For {t.gpu_lost_for}, NVML has kept failing to identify a GPU on "
        "{{ $labels.instance }} (its handle, name or UUID; "
        '{{ $value | printf "%.2f" }} failed calls/s): a GPU the driver lost (fallen off '
        "the bus), or a broken driver. That GPU has no metrics and no cost series, while "
        "the cloud bills it all the same.",
        GPU,
        Runbook(
            meaning="aispend's gpu exporter cannot identify a GPU at any read: NVML fails "
            "on its handle, name or UUID (`aispend_gpu_nvml_errors_total` by call). The "
            "exporter skips that GPU and reports the others, so AISpendExporterDown stays "
            "quiet; the GPU's utilisation, cost and idle checks are gone, and spend "
            "under-counts it while the cloud bills it. A GPU that fell off the bus (Xid 79) "
            "or a failing driver look like this; a single failed read does not fire (a "
            f"transient error leaves the 5-minute error rate long before {t.gpu_lost_for}).",
            check=f"On the {cite(refs.NVML_ERRORS)} (`{m.GPU_NVML_ERRORS.name}`); on the host, "
            "`nvidia-smi` (a lost GPU shows `Unable to determine the device handle` or "
            "`GPU is lost`) and the kernel log (`dmesg | grep -i xid`).",
            action="Drain the node's GPU workloads, then reset the GPU (`nvidia-smi -r`) or "
            "reboot the node; replace a GPU that keeps falling off the bus. The alert "
            "resolves once NVML reads every GPU again (or the GPU is removed).",
        ),
    )


def data_alerts(t: Tunables) -> list[Alert]:
    read_age = seconds(t.billing_read_max_age)
    billing_up = f"{m.EXPORTER_UP.name}{{{BILLING_JOB}}}"
    q = num(t.cost_per_request_quantile * 100)
    qname = m.REC_REQUEST_COST_QUANTILE.name
    unattributed = m.REC_UNATTRIBUTED_RATIO.name
    return [
        Alert(
            "AISpendCostPerRequestHigh",
            f"{qname} > on({m.TEAM}, {m.MODEL}) "
            f"({m.REC_REQUEST_COST_QUANTILE_1W.name} * {num(t.cost_per_request_factor)})",
            t.cost_per_request_for,
            {"severity": "warning"},
            "Requests of team {{ $labels.team }} to {{ $labels.model }} cost more than usual",
            f'p{q} cost of one request is {{{{ $value | printf "%.4f" }}}}{CURRENCY}, more '
            f"than {num(t.cost_per_request_factor)}x its weekly mean of "
            + money(
                f'{m.REC_REQUEST_COST_QUANTILE_1W.name}{{team="%s",model="%s"}}',
                "$labels.team $labels.model",
                4,
            )
            + ".",
            LLM,
            Runbook(
                meaning=f"The p{q} cost of one LLM request (1h window) is more than "
                f"{num(t.cost_per_request_factor)}x its mean over the hours of the last week "
                "that had requests: bigger prompts, lost caching, or a switch to a dearer "
                "model.",
                check="On the "
                + cite(
                    refs.REQUEST_COST_QUANTILES,
                    refs.TOKENS_BY_MODEL_AND_TYPE,
                    refs.CACHE_READ_SHARE,
                )
                + " (the link selects the team; select the model too): which token type "
                f"({', '.join(m.TOKEN_TYPES)}) grew, and whether cache reads fell.",
                action="Ask the team about prompt or model changes; restore prompt caching.",
            ),
        ),
        Alert(
            "AISpendUnattributedSpend",
            # The team label on the series too, so annotations (the dashboard link) see it.
            f"{set_label(unattributed, m.TEAM, m.UNATTRIBUTED_TEAM)}"
            f" > {num(t.unattributed_max_ratio)}",
            t.unattributed_for,
            {"severity": "warning", m.TEAM: m.UNATTRIBUTED_TEAM},
            "{{ $value | humanizePercentage }} of AI spend has no team",
            "{{ $value | humanizePercentage }} of the AI spend of the last hour is not "
            f"attributed to a team (more than {num(t.unattributed_max_ratio * 100)} %).",
            OVERVIEW,
            Runbook(
                meaning="Real-time AI spend (LLM tokens and GPUs) with team `unattributed` "
                "is above the threshold: an API key the gateway does not know, an Azure "
                "OpenAI resource or APIM subscription without a team in aispend.yaml, a "
                "GPU without an owner (aispend's exporter without attribution, dcgm GPUs "
                "without a team label). Showback is incomplete. Cloud bill rows without a "
                "team tag (team `untagged` on the bill series) are not in this ratio.",
                check="On the "
                + cite(refs.SPEND_BY_TEAM, refs.SPEND_BY_SOURCE)
                + ', `team_source:aispend_cost:rate5m{team="unattributed"}` (which '
                'source) and `team_model:aispend_cost:rate5m{team="unattributed"}` '
                "(which model).",
                action="Map the API keys, Azure OpenAI resources, APIM subscriptions or GPUs "
                "to teams in aispend.yaml.",
            ),
        ),
        Alert(
            "AISpendBillingDataStale",
            f"time() - max by ({m.SOURCE}) "
            f"({m.SOURCE_LAST_SUCCESS.name}{{{BILLING_JOB}}})"
            f" > {read_age}\nor\n"
            # A source not read once since the exporter (re)started has no last-success
            # time: exporter_up 0 at every scrape of the window, in an exporter that was
            # up at its start, is as old; the value is the window (a lower bound).
            f"max by ({m.SOURCE}) (max_over_time({billing_up}[{t.billing_read_max_age}]))"
            f" + {read_age} == {read_age}\n"
            f"  and on({m.SOURCE}) max by ({m.SOURCE}) "
            f"(present_over_time({billing_up}[5m] offset {t.billing_read_max_age}))",
            t.billing_stale_for,
            {"severity": "warning", m.REASON: "read"},
            "Billing source {{ $labels.source }} not read for {{ $value | humanizeDuration }}",
            "The billing exporter has not read {{ $labels.source }} successfully for "
            "{{ $value | humanizeDuration }}.",
            STACK,
            Runbook(
                meaning=f"The billing exporter has not read its source for more than "
                f"{t.billing_read_max_age} (reason read: every refresh failed, the exporter "
                "retries a failed one after 15 minutes and keeps serving its last data; a "
                "source not read once since the exporter started counts from the first "
                f"failed read, and shows {t.billing_read_max_age}), or "
                f"the newest bill data is older than {t.billing_data_max_age} (reason data; "
                "Azure Cost Management normally lags about 36h). A single failed refresh "
                "(a 429 beyond the exporter's wait, a 5xx) raises nothing: the bill changes "
                "once a day, and AISpendExporterDown leaves billing sources to this alert.",
                check="The billing exporter's log and `aispend_exporter_up{source}`, "
                "`aispend_source_throttled_total` (HTTP 429), credentials expiry.",
                action="Fix credentials or the export; real-time estimates and alerts keep "
                "working; only the bill goes stale: the reconciliation "
                "(AISpendEstimateBillMismatch) and the bill panels of the "
                + cite(refs.TEAM_BILL_BY_CATEGORY, refs.TEAM_ESTIMATE_VS_BILL)
                + ".",
            ),
        ),
        Alert(
            "AISpendBillingDataStale",
            f"time() - max by ({m.SOURCE}) ({m.CLOUD_COST_DATA_TIMESTAMP.name})"
            f" > {seconds(t.billing_data_max_age)}",
            t.billing_stale_for,
            {"severity": "warning", m.REASON: "data"},
            "Bill data of {{ $labels.source }} is {{ $value | humanizeDuration }} old",
            "The newest bill data of {{ $labels.source }} ends "
            "{{ $value | humanizeDuration }} ago.",
            STACK,
        ),
        Alert(
            "AISpendEstimateBillMismatch",
            f"{m.REC_ESTIMATE_VS_BILL.name} > {num(1 + t.reconcile_max_diff)}\n"
            f"or {m.REC_ESTIMATE_VS_BILL.name} < {num(1 - t.reconcile_max_diff)}",
            t.reconcile_for,
            {"severity": "info"},
            "Estimate and bill of team {{ $labels.team }} differ",
            "The real-time estimate of team {{ $labels.team }} for the newest billed day is "
            "{{ $value | humanizePercentage }} of the bill "
            + money(f'{m.REC_BILL_LAST_DAY.name}{{team="%s"}}', "$labels.team")
            + f" (allowed difference {num(t.reconcile_max_diff * 100)} %).",
            TEAM_SHOWBACK,
            Runbook(
                meaning="The real-time estimate (gateway, tokens exporter, GPUs) for the UTC "
                "day of the newest bill differs by more than "
                f"{num(t.reconcile_max_diff * 100)} % from the billed cost of the services "
                "it covers: the bill series selected by the `reconcile_bill_selectors` "
                "tunable ("
                + "; ".join(
                    ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
                    for labels in t.reconcile_bill_selectors
                )
                + "), not the team's whole cloud bill. A team with such a bill and no "
                "estimate counts as an estimate of 0 (ratio 0: traffic bypassing the "
                "gateway, or covered rows without a team tag, team `untagged`). A team "
                "with an estimate and no covered bill row has no ratio and raises "
                "nothing (an LLM provider billed outside the cloud; if its rows lost "
                "their team tag, team `untagged` shows them). With several billing sources, "
                "the comparison is made only while the newest complete day of each is the "
                f"same (`{m.CLOUD_COST_DATA_TIMESTAMP.name}` per source): a source a day "
                "behind would set another day's bill against the estimate. Nor for a bill "
                "day aispend did not meter all of (no cost series at one of its hours: the "
                "first days after an install, or an outage), whose estimate would be short.",
                check="On the "
                + cite(refs.TEAM_ESTIMATE_VS_BILL, refs.TEAM_BILL_BY_CATEGORY)
                + "; per source (`team_source:aispend_cost:rate5m`) vs bill per service "
                f"(`{m.CLOUD_COST_LAST_DAY.name}`): traffic bypassing the gateway, missing "
                "prices (`aispend_llm_unpriced_requests_total`, AISpendGPUUnpriced), "
                "negotiated discounts, LLM providers billed outside the cloud (direct API "
                "keys: estimate above the bill), GPU VMs billed as Compute that no selector "
                "covers, AI services that no estimate meters (AI Search, Speech: "
                "estimate below the bill), or gateway requests whose usage was not read, "
                f"counted at no cost (`{m.LLM_USAGE_UNKNOWN.name}` by reason on the "
                + cite(refs.REQUESTS_WITHOUT_USAGE)
                + "; estimate below the bill; reason missing_usage: streams to Azure "
                "OpenAI api-versions before 2024-08-01, which send no usage).",
                action="Fix prices in aispend.yaml (prices.models, prices.gpu) or route the "
                "traffic through the gateway; make `reconcile_bill_selectors` select what "
                "the estimate covers (`aispend rules generate --tunables FILE`); "
                "informational, routed nowhere by default.",
            ),
        ),
    ]


def stack_alerts(t: Tunables) -> list[Alert]:
    return [
        Alert(
            "AISpendExporterDown",
            'up{job=~"aispend-.*"} == 0',
            t.exporter_down_for,
            {"severity": "warning", m.REASON: "scrape"},
            "{{ $labels.job }} on {{ $labels.instance }} is down",
            "Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}.",
            STACK,
            Runbook(
                meaning="Prometheus cannot scrape an aispend process (reason scrape), or "
                "an exporter cannot read its source (reason source: "
                "`aispend_exporter_up` 0). Real-time spend from that source is missing, "
                "so budgets and anomalies under-count. Billing sources (the bill, job "
                "aispend-billing) raise AISpendBillingDataStale instead, after "
                f"{t.billing_read_max_age} without a successful read: the bill is kept and "
                "does not feed budgets.",
                check='`up{job=~"aispend-.*"}`; `aispend_exporter_up{source}`; the process '
                "log: under `aispend stack up` the file `<run-dir>/logs/<component>.log` "
                "(`.run/logs/` by default, as `stack up` prints; `.run/demo/logs/` for "
                "`aispend demo`), under Docker Compose `docker compose logs <service>`.",
                action="Restart the process; fix the source credentials or network.",
            ),
        ),
        Alert(
            "AISpendExporterDown",
            # Not the billing exporter's sources: a failed bill refresh keeps the old
            # data and is retried; AISpendBillingDataStale{reason="read"} covers them.
            f"{m.EXPORTER_UP.name}{{{BILLING_JOB.replace('=', '!=', 1)}}} == 0",
            t.exporter_down_for,
            {"severity": "warning", m.REASON: "source"},
            "Exporter cannot read source {{ $labels.source }}",
            "{{ $labels.job }} at {{ $labels.instance }} answers but its last read of "
            "{{ $labels.source }} failed.",
            STACK,
        ),
        Alert(
            "AISpendRulesFailing",
            _rule_groups_counting(RULE_EVAL_FAILURES),
            t.rules_failing_for,
            {"severity": "warning", m.REASON: "failures"},
            "Rules of {{ $labels.rule_group }} fail",
            '{{ $value | printf "%.0f" }} evaluations of rules in {{ $labels.rule_group }} '
            "failed in the last 10 minutes: what they record is missing.",
            STACK,
            Runbook(
                meaning="Prometheus cannot evaluate some of aispend's rules (reason failures: "
                "a query timeout or sample limit, most often), or a rule group takes longer "
                "than its interval and evaluations are skipped (reason missed). What those "
                "rules record goes missing or stale, silently: month-to-date spend, budget "
                "ratios, the forecast, the anomaly baselines, and the alerts that read them.",
                check=f"{cite(refs.RULE_EVALUATION_FAILURES, refs.RULE_GROUP_EVALUATION_TIME)}; "
                "Prometheus's /rules page (each rule's last error); the number of gateway "
                f"cost series (`count({m.LLM_COST.name})`); at 16,000 the slowest group "
                'took 8.4 s of its 15 s (docs/benchmarks.md, "Rules at scale"). A whole '
                "hour a group missed (no evaluation in the 5 minutes before it) is missing "
                "from month to date or from the baselines: `aispend rules backfill` records "
                'it again (README, "History from before the rules").',
                action="Give Prometheus more time and samples (`--query.timeout`, "
                "`--query.max-samples`) and CPU; lower the label count (`max_agents_per_team`, "
                "fewer projects or models per team).",
            ),
        ),
        Alert(
            "AISpendRulesFailing",
            _rule_groups_counting(RULE_GROUP_MISSED),
            t.rules_failing_for,
            {"severity": "warning", m.REASON: "missed"},
            "Rule group {{ $labels.rule_group }} misses evaluations",
            '{{ $value | printf "%.0f" }} evaluations of {{ $labels.rule_group }} were '
            "skipped in the last 10 minutes: it takes longer than its interval.",
            STACK,
        ),
        Alert(
            "AISpendNotificationsFailing",
            f"sum by (integration) (increase({AM_NOTIFICATIONS_FAILED}[10m])) > 0",
            t.notifications_failing_for,
            {"severity": "critical"},
            "Alertmanager cannot deliver {{ $labels.integration }} notifications",
            '{{ $value | printf "%.0f" }} {{ $labels.integration }} notifications failed in'
            " the last 10 minutes: pages, chat messages or the actuator's alerts are not"
            " getting through.",
            STACK,
            Runbook(
                meaning="Alertmanager keeps failing to deliver to a receiver's integration "
                "(pagerduty, slack, webhook: the actuator's or chat's). Alerts fire and "
                "nobody, or no guardrail, hears of them: a pager key that is not a real one "
                "(the demo's), a chat URL that points at the demo's chat-sink, an actuator "
                "that answers 401 (its token is not the one Alertmanager sends). Routed "
                "like any critical alert (pager and chat), so it reaches the one that works.",
                check=f"{cite(refs.ALERTMANAGER_NOTIFICATIONS)}; Alertmanager's log "
                "(`unexpected status code`, `connection refused`, per receiver); "
                "deploy/alertmanager.yml's receivers and their key files.",
                action="Point the receiver at the real PagerDuty or chat and put its key in "
                'its file (README, "Quick start for real use"); for the actuator, make '
                "Alertmanager send the token the actuator checks (`actions.token_file`).",
            ),
        ),
        Alert(
            "AISpendActuatorFailing",
            f"sum by ({m.TARGET}) "
            f'(increase({m.ACTUATOR_ACTIONS.name}{{{m.RESULT}="error"}}[10m])) > 0',
            t.actuator_failing_for,
            {"severity": "critical"},
            "Actuator actions on {{ $labels.target }} fail",
            '{{ $value | printf "%.0f" }} actions on {{ $labels.target }} failed in the '
            "last 10 minutes: guardrails are not being applied.",
            ANOMALIES,
            Runbook(
                meaning="The actuator received alerts but its actions on a target (gateway "
                "throttle API, Kubernetes, APIM, command) return errors.",
                check="The actuator's audit log (result error, with the target's answer); "
                "the target's reachability and the actuator's credentials for it.",
                action="Fix the target or credentials. A failed undo (a workload left "
                "throttled or paused) is retried: the actuator answers 503, so Alertmanager "
                "redelivers the resolve until the undo succeeds. A refused apply (result "
                "error) is not retried for that alert. A retryable apply error (error: will "
                "retry; a gateway replica down) is retried by the actuator itself, every 5 s "
                "doubling to 1 min, until it succeeds or the alert resolves (then what it "
                "did is undone); a target that could not be read before acting (error: "
                "retry) is redelivered by Alertmanager while the alert fires. "
                'Act by hand meanwhile (README "Throttling by hand").',
            ),
        ),
    ]


def _rule_groups_counting(counter: str) -> str:
    """aispend's rule groups whose Prometheus counter `counter` rose in 10 minutes."""
    return f"sum by (rule_group) (increase({counter}{{{AISPEND_RULE_GROUPS}}}[10m])) > 0"


def groups(t: Tunables) -> list[Group]:
    return [
        Group("aispend-budget-alerts", tuple(budget_alerts(t))),
        Group("aispend-anomaly-alerts", tuple(anomaly_alerts(t))),
        Group("aispend-gpu-alerts", tuple(gpu_alerts(t))),
        Group("aispend-data-alerts", tuple(data_alerts(t))),
        Group("aispend-stack-alerts", tuple(stack_alerts(t))),
    ]
