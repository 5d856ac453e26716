"""Recording rules for spend: GPU series, spend rates, spend so far, budgets, forecast,
and the reconciliation of the real-time estimate with the bill.

Every rate is money per second in the reporting currency; multiply by 3600 for an
hourly figure. Budget rows are keyed by scope (team; team+project; team+agent).
"""

from __future__ import annotations

from aispend import metrics as m
from aispend.rules.model import Group, Recording
from aispend.rules.promql import (
    SCOPE_LABELS,
    STEP_DAY,
    bucket_sum,
    covered,
    day_index,
    duration,
    num,
    recorded_since,
    scope_rollup,
    scope_spend,
    seconds,
    selector,
    set_label,
    since_hour_start,
    since_start,
    spend,
    steps,
    string,
)
from aispend.rules.tunables import Tunables

GPU_BY = (m.GPU, m.GPU_UUID, m.GPU_MODEL_NAME, m.HOSTNAME, m.TEAM, m.PROJECT)
SCOPE = ", ".join(SCOPE_LABELS)
UNATTRIBUTED = f"{m.UNATTRIBUTED_TEAM}|{m.UNTAGGED_TEAM}|"


def budget(period: str, by: str = f"{SCOPE}, {m.PERIOD}") -> str:
    """The budgets of one period, without the scrape's job/instance labels."""
    return f'max by ({by}) ({m.BUDGET.name}{{{m.PERIOD}="{period}"}})'


def burn_windows(t: Tunables) -> list[str]:
    """Every window a burn-rate alert reads, shortest first."""
    windows = {w.long for w in (*t.month_burn, *t.day_burn)}
    windows |= {w.short for w in (*t.month_burn, *t.day_burn)}
    return sorted(windows, key=seconds)


def forecast_rate(t: Tunables) -> tuple[str, list[Recording]]:
    """The scope spend rate the forecast reads, and its rule unless a burn window has it.

    A window longer than the burn windows (7d) is summed from the recorded hourly
    increases (REC_SCOPE_COST_1H, with new series' first values, as spend to date): the
    same spend per second over the window (up to the last full hour), without reading a
    week of raw samples per series at every evaluation. Until a scope's recorded hourly
    spend covers the window (a new install, team or agent, or an upgrade without
    `aispend rules backfill`), the sum is over the hours it has: over the whole window,
    two days of steady spend read as 2/7 of their rate. Whether the hourly spend goes
    back over the window is `recorded_since`'s test (a recorded whole hour in the day
    before the window), so a data gap of under a day at the window's start does not
    switch the rate to the per-hour form for the gap's length, a window later: that
    switch (gap hours left out of the sum and the divisor) could fire or resolve
    AISpendForecastOverrun for a few hours on a scope whose spend had not changed."""
    window = t.forecast_rate_window
    rate = f"{m.REC_SCOPE_COST_RATE_PREFIX}{window}"
    if window in burn_windows(t):
        return rate, []
    hours = f"{m.REC_SCOPE_COST_1H.name}{steps(window, '1h')}"
    whole = f"sum_over_time({hours}) / {seconds(window)}"
    partial = f"sum_over_time({hours}) / (count_over_time({hours}) * 3600)"
    # Whole where the hourly spend itself goes back over the window: after an upgrade or
    # install over raw history, the raw counters do, and a week's sum of a few recorded
    # hours would read as a tiny rate.
    history = recorded_since(m.REC_SCOPE_COST_1H.name, seconds(window))
    expr = f"({whole}\n  and on({SCOPE}) ({history}))\nor\n{partial}"
    return rate, [Recording(rate, expr)]


def gpu_rules(t: Tunables) -> list[Recording]:
    by = ", ".join(GPU_BY)
    rules = []
    prices = [
        set_label(f"vector({num(price)})", m.GPU_MODEL_NAME, model)
        for model, price in sorted(t.gpu_hourly_prices.items())
    ]
    if prices:
        rules.append(Recording(m.REC_GPU_PRICE.name, " or ".join(prices)))

    def dcgm(expr: str, scale: str = "", agg: str = "max") -> str:
        """A dcgm-exporter expression with aispend's GPU labels (no team: unattributed)."""
        out = f'label_replace({expr}, "{m.GPU_MODEL_NAME}", "$1", "modelName", "(.*)")'
        out = f"{agg} by ({by}) ({out}){scale}"
        return f'label_replace({out}, "{m.TEAM}", {string(m.UNATTRIBUTED_TEAM)}, "{m.TEAM}", "")'

    def merged(ours: str, theirs: str, ours_present: str) -> str:
        """aispend's gpu exporter (source gpu), else dcgm-exporter for the same GPU."""
        return (
            f"{set_label(ours, m.SOURCE, 'gpu')}\n"
            f"or\n({set_label(theirs, m.SOURCE, 'dcgm')}\n"
            f"  unless on({m.GPU_UUID}) {ours_present})"
        )

    # Which GPUs there are, whichever exporter reports them, whatever it can read: a
    # MIG-enabled GPU has no utilisation (NVML answers NOT_SUPPORTED; dcgm-exporter has
    # no whole-GPU DCGM_FI_DEV_GPU_UTIL), yet it costs its price. aispend's exporter
    # covers a GPU when it exports any per-GPU series it reads live for it (memory,
    # power, price, ...);
    # dcgm-exporter counts only for the GPUs aispend does not cover.
    # Not the accrued cost counters: the exporter keeps serving them for a GPU it no
    # longer reads (gone, NVML down, re-attributed), and dcgm-exporter must take such a
    # GPU over.
    accrued = (m.GPU_COST, m.GPU_IDLE_COST)
    ours_any = "|".join(
        s.name for s in m.ALL_METRICS if s.labels == m.GPU_LABELS and s not in accrued
    )
    ours_any = f'{{__name__=~"{ours_any}"}}'
    rules.append(
        Recording(
            m.REC_GPU_PRESENT.name,
            merged(
                f"group by ({by}) ({ours_any})",
                dcgm(f"({' or '.join(m.DCGM_FIELDS)})", agg="group"),
                ours_any,
            ),
        )
    )
    ours = f'{m.REC_GPU_PRESENT.name}{{{m.SOURCE}="gpu"}}'

    # Utilisation, memory and power: each panel and alert reads one series per GPU,
    # whichever exporter reports it (the one that covers the GPU). dcgm-exporter's
    # utilisation of a MIG instance is not the GPU's: a GPU is never judged idle by it.
    rules.append(
        Recording(
            m.REC_GPU_UTILIZATION.name,
            merged(
                f"max by ({by}) ({m.GPU_UTILIZATION.name})",
                dcgm(f'{m.DCGM_GPU_UTIL}{{{m.DCGM_GPU_INSTANCE}=""}}', " / 100"),
                ours,
            ),
        )
    )
    rules.append(
        Recording(
            m.REC_GPU_MEMORY_USED_RATIO.name,
            merged(
                f"max by ({by}) ({m.GPU_MEMORY_USED.name})\n"
                f"  / max by ({by}) ({m.GPU_MEMORY_TOTAL.name})",
                dcgm(f"{m.DCGM_FB_USED} / ({m.DCGM_FB_USED} + {m.DCGM_FB_FREE})"),
                ours,
            ),
        )
    )
    rules.append(
        Recording(
            m.REC_GPU_POWER.name,
            merged(
                f"max by ({by}) ({m.GPU_POWER.name})",
                dcgm(m.DCGM_POWER_USAGE),
                ours,
            ),
        )
    )
    # Every dcgm-only GPU costs its model's price, whether or not it has utilisation.
    dcgm_cost = (
        f'{m.REC_GPU_PRESENT.name}{{{m.SOURCE}="dcgm"}}\n'
        f"  * on({m.GPU_MODEL_NAME}) group_left() ({m.REC_GPU_PRICE.name} / 3600)"
    )
    rules.append(
        Recording(
            m.REC_GPU_COST_RATE.name,
            f"{set_label(f'sum by ({by}) (rate({m.GPU_COST.name}[5m]))', m.SOURCE, 'gpu')}\n"
            f"or\n({dcgm_cost})",
        )
    )
    return rules


def rate_rules(t: Tunables) -> list[Recording]:
    base = m.REC_COST_RATE5M.name
    rules = [
        Recording(base, spend("rate", "5m", m.REC_COST_RATE5M.labels)),
        *(
            Recording(rec.name, f"sum by ({', '.join(rec.labels)}) ({base})")
            for rec in (
                m.REC_TEAM_COST_RATE5M,
                m.REC_TEAM_PROJECT_COST_RATE5M,
                m.REC_TEAM_AGENT_COST_RATE5M,
                m.REC_TEAM_MODEL_COST_RATE5M,
                m.REC_TEAM_SOURCE_COST_RATE5M,
            )
        ),
        *(
            Recording(rec.name, spend("rate", "1h", rec.labels))
            for rec in (
                m.REC_TEAM_COST_RATE1H,
                m.REC_TEAM_MODEL_COST_RATE1H,
                m.REC_TEAM_AGENT_COST_RATE1H,
            )
        ),
    ]
    team_sel = f'{m.TEAM}=~"{UNATTRIBUTED}"'
    rules.append(
        Recording(
            m.REC_UNATTRIBUTED_RATIO.name,
            f"(sum({m.REC_TEAM_COST_RATE1H.name}{{{team_sel}}}) or vector(0))\n"
            f"  / (sum({m.REC_TEAM_COST_RATE1H.name}) > 0)",
        )
    )
    return rules


LONG_WINDOW = seconds("6h")
"""Burn windows at least this long are recorded every minute (aispend-spend-long-windows),
not every 15 s: they read the raw counters over hours to days. At 2,000 cost series
with a real scrape's density, aispend-spend took 6.3 s of its 15 s with them and 1.0 s
without; they took 5.2 s of their 60 s, and 1.7 s once each window read the raw
counters once, not once per scope (`burn_rate_rules`; docs/benchmarks.md, "Rules at
scale"). A minute is at most 1/360 of their span."""


def budget_pace_rules() -> list[Recording]:
    """Budget pace per second, per scope, and the tightest per team and team+agent."""
    pace = m.REC_BUDGET_PACE.name
    return [
        Recording(
            pace,
            f"{budget('day')} / 86400\nor\n"
            f"{budget('month')} / on() group_left() (days_in_month() * 86400)",
        ),
        Recording(
            m.REC_TEAM_BUDGET_PACE_MIN.name,
            f'min by ({m.TEAM}) ({pace}{{{m.PROJECT}="", {m.AGENT}=""}})',
        ),
        Recording(
            m.REC_AGENT_BUDGET_PACE_MIN.name,
            f'min by ({m.TEAM}, {m.AGENT}) ({pace}{{{m.AGENT}!=""}})',
        ),
    ]


def burn_rate_rules(windows: list[str]) -> list[Recording]:
    """The scope spend rate and the burn rate (spend rate / budget pace) per window.

    The raw counters are read once per window, into a rate by the series' own team,
    project and agent, which the three scopes sum (`scope_rollup`): read per scope, a
    series with a project and an agent was decoded three times over the window."""
    rules = []
    for window in windows:
        parts = f"{m.REC_LABELS_COST_RATE_PREFIX}{window}"
        rate = f"{m.REC_SCOPE_COST_RATE_PREFIX}{window}"
        rules.append(Recording(parts, spend("rate", window, SCOPE_LABELS)))
        rules.append(Recording(rate, scope_rollup(parts)))
        rules.append(
            Recording(
                f"{m.REC_BURN_PREFIX}{window}",
                f"{rate} / on({SCOPE}) group_right() {m.REC_BUDGET_PACE.name}",
            )
        )
    return rules


def to_date_rules(t: Tunables) -> list[Recording]:
    """Spend so far today and this month, utilisation, month-end forecast, exhaustion.

    The hour's and the 5-minute increases are recorded once, first (the rules of a group
    run in order, each seeing the ones before at the same time), and summed by the rules
    after them: summing raw counters over a month at each evaluation took 155 s at
    16,000 cost series (docs/benchmarks.md, "Rules at scale")."""
    today, month = m.REC_SCOPE_COST_TODAY.name, m.REC_SCOPE_COST_MONTH.name
    hourly, this_hour = m.REC_SCOPE_COST_1H.name, m.REC_SCOPE_COST_THIS_HOUR.name
    month_budget = budget("month", SCOPE)
    rate, rate_rules = forecast_rate(t)
    seconds_left = "((days_in_month() - day_of_month() + 1) * 86400 - time() % 86400)"
    return [
        Recording(hourly, scope_spend("increase", "1h", first_values=True)),
        Recording(this_hour, since_hour_start(scope_spend("increase", "5m", first_values=True))),
        *rate_rules,
        Recording(today, since_start(hourly, this_hour, "day")),
        Recording(month, since_start(hourly, this_hour, "month")),
        Recording(
            m.REC_TEAM_COST_TODAY.name,
            f'sum by ({m.TEAM}) ({today}{{{m.PROJECT}="", {m.AGENT}=""}})',
        ),
        Recording(
            m.REC_TEAM_COST_MONTH.name,
            f'sum by ({m.TEAM}) ({month}{{{m.PROJECT}="", {m.AGENT}=""}})',
        ),
        Recording(
            m.REC_BUDGET_USED.name,
            f"{today} / on({SCOPE}) group_right() {budget('day')}\nor\n"
            f"{month} / on({SCOPE}) group_right() {budget('month')}",
        ),
        Recording(
            m.REC_FORECAST_MONTH_END.name,
            f"{month} + on({SCOPE}) {rate} * on() group_left() {seconds_left}",
        ),
        Recording(
            m.REC_BUDGET_EXHAUSTION.name,
            f"clamp_min({month_budget} - on({SCOPE}) {month}, 0)\n"
            f"  / on({SCOPE}) ({rate} > 0) + time()",
        ),
    ]


def covered_bill(t: Tunables) -> str:
    """The bill series of the services the estimate covers (reconcile_bill_selectors);
    `or` counts a series that more than one label set selects once."""
    selectors = [
        selector(
            m.CLOUD_COST_LAST_DAY.name,
            [f"{k}={string(v)}" for k, v in sorted(labels.items())],
        )
        for labels in t.reconcile_bill_selectors
    ]
    return "\n  or ".join(selectors)


def reconcile_rules(t: Tunables) -> list[Recording]:
    """Estimate for the UTC day the newest bill covers vs the bill of that day, of the
    services the estimate covers: LLM tokens and GPUs, not the team's storage, network
    or databases. With several billing sources, only while their newest days agree."""
    bill_ts = f"max({m.CLOUD_COST_DATA_TIMESTAMP.name} @ end())"
    # The last day complete at the data timestamp, as the exporter's last_day: the day
    # before it (a timestamp at midnight closes that day; one at noon, from a source
    # whose timestamp is its fetch time, has today's partial row, not today's bill).
    bill_day = f"({day_index(bill_ts)} - 1)"
    team_hourly = f'{m.REC_SCOPE_COST_1H.name}{{{m.PROJECT}="", {m.AGENT}=""}}'
    estimate = bucket_sum(
        f"sum by ({m.TEAM}) ({team_hourly})",
        f"{STEP_DAY} == on() {bill_day}",
        "4d",
        "1h",
    )
    # Each source's last_day is its own newest complete day: while one source is a day
    # behind another, the summed bill mixes two days, so there is no ratio until they agree.
    same_day = (
        f"{day_index(f'min({m.CLOUD_COST_DATA_TIMESTAMP.name})')}"
        f" == on() {day_index(f'max({m.CLOUD_COST_DATA_TIMESTAMP.name})')}"
    )
    # A team with a bill and no estimate (traffic that bypasses the gateway, bill rows
    # tagged to a team aispend does not meter, team untagged) is estimated at 0, so the
    # ratio is 0, not missing. A team with an estimate and no covered bill row (billed
    # outside the cloud) has no ratio: nothing to compare with.
    # Only for a bill day aispend metered all of (a cost series at each of its hours): the
    # days after an install, or after an outage, have a bill and little or no estimate.
    metering = " or ".join(
        (m.LLM_COST.name, m.GPU_COST.name, f'{m.REC_GPU_COST_RATE.name}{{{m.SOURCE}="dcgm"}}')
    )
    metered_day = (
        f"sum_over_time((count({metering}) * 0 + 1 and on() ({STEP_DAY} == on() {bill_day}))"
        "[4d:1h]) >= 24"
    )
    bill = m.REC_BILL_LAST_DAY.name
    return [
        Recording(m.REC_ESTIMATE_BILL_DAY.name, estimate),
        Recording(bill, f"sum by ({m.TEAM}) (\n  {covered_bill(t)}\n)"),
        Recording(
            m.REC_ESTIMATE_VS_BILL.name,
            f"({m.REC_ESTIMATE_BILL_DAY.name} or on({m.TEAM}) {bill} * 0)\n"
            f"  / ({bill} > 0)\n"
            f"  and on() ({same_day})\n"
            f"  and on() ({metered_day})",
        ),
    ]


def leak_rules(t: Tunables) -> list[Recording]:
    """Day and same-hour spend against the same weekday of the last 3 weeks.

    A week counts only where the team's history covers its whole window: with exactly
    two weeks of history the window 2 weeks ago starts before the first sample, and its
    small partial increase would pull the median down to about half."""
    day = m.REC_TEAM_COST_1D.name
    team = (m.TEAM,)

    def week(fn: str, window: str, k: int) -> str:
        """The window `k` weeks ago, only where the team's history covers all of it."""
        past = spend(fn, window, team, offset=f"{k}w")
        start = duration(k * seconds("1w") + seconds(window))
        return set_label(f"{past} and on({m.TEAM}) {covered(team, start)}", "offset", f"{k}w")

    weeks_1d = [week("increase", "1d", k) for k in (1, 2, 3)]
    same_hour = " or ".join(week("rate", "1h", k) for k in (1, 2, 3))
    return [
        Recording(day, spend("increase", "1d", (m.TEAM,))),
        Recording(
            m.REC_TEAM_COST_1D_WEEKS.name,
            f"quantile by ({m.TEAM}) (0.5, {' or '.join(weeks_1d)})",
        ),
        # The highest of all three weeks, or none: a holiday in one or two of them must
        # not lower the reference (on the labelled spend traces 9 of the 10 leak false
        # alarms came in weeks 2 and 3 of the history; on NAB's taxi series, after the
        # Christmas and New Year weeks).
        Recording(
            m.REC_TEAM_COST_RATE1H_WEEKS.name,
            f"max by ({m.TEAM}) ({same_hour})\n"
            f"and on({m.TEAM}) count by ({m.TEAM}) ({same_hour}) == 3",
        ),
    ]


def request_cost_rules(t: Tunables) -> list[Recording]:
    """The hourly request-cost quantile, and its mean over the hours of the last week
    that had requests.

    An hour without requests has a quantile of NaN (histogram_quantile of zero counts),
    and one NaN makes the whole `avg_over_time` NaN, against which no comparison is ever
    true: one idle hour would silence CostPerRequestHigh for a week. `>= 0` (a filter,
    not `bool`) drops the NaN steps, as every comparison with NaN is false, and keeps
    every real quantile (a cost is never negative); the mean then covers the hours that
    had requests. A self-comparison (`q == q`) would evaluate the quantile twice."""
    bucket = f"{m.LLM_REQUEST_COST.name}_bucket"
    quantile = (
        f"histogram_quantile({num(t.cost_per_request_quantile)}, "
        f"sum by ({m.TEAM}, {m.MODEL}, le) (rate({bucket}[1h])))"
    )
    return [
        Recording(m.REC_REQUEST_COST_QUANTILE.name, quantile),
        Recording(m.REC_REQUEST_COST_QUANTILE_1W.name, f"avg_over_time(({quantile} >= 0)[1w:1h])"),
    ]


def groups(t: Tunables) -> list[Group]:
    windows = burn_windows(t)
    short = [w for w in windows if seconds(w) < LONG_WINDOW]
    long_ = [w for w in windows if seconds(w) >= LONG_WINDOW]
    return [
        Group(
            "aispend-spend",
            tuple(gpu_rules(t) + rate_rules(t) + budget_pace_rules() + burn_rate_rules(short)),
        ),
        Group("aispend-spend-long-windows", tuple(burn_rate_rules(long_)), interval="1m"),
        Group(
            "aispend-spend-to-date",
            tuple(to_date_rules(t) + reconcile_rules(t) + leak_rules(t) + request_cost_rules(t)),
            interval="1m",
        ),
    ]
