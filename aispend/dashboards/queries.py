"""Every dashboard panel's PromQL, as named functions kept apart from layout.

Metric and label names come from aispend/metrics.py; dashboards call these functions
and never spell a metric name. Grafana variables (`$team`, `${team:regex}`, `$project`,
`$model`) and Grafana's `$__interval` / `$__rate_interval` / `$__range` / `$__range_s`
appear as-is; tests substitute them before checking each expression with promtool and
running it against Prometheus.

Spend is the real-time estimate: LLM spend (gateway and tokens exporter,
`aispend_llm_cost_total`) plus accrued GPU cost (`aispend_gpu_cost_total`), in the
reporting currency. Rates are shown per hour (x 3600) because budgets are per day and
month and an hourly figure reads naturally next to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aispend import metrics as m
from aispend.rules.promql import counter_increase, steps

if TYPE_CHECKING:
    from aispend.rules.tunables import Tunables

RATE = "$__rate_interval"
STEP = "$__interval"
"""Grafana's step between two points of a graph (at least panels.MIN_STEP)."""
RANGE = "$__range"
RANGE_S = "$__range_s"
HOUR = 3600


def forecast_basis(window: str) -> str:
    """What the month-end forecast and budget exhaustion extrapolate, for descriptions
    (`window`: the forecast_rate_window tunable)."""
    return (
        f"the spend rate over the last {window},"
        " or over the hours there are while the history is shorter"
    )


ALERTS = "ALERTS"
"""Prometheus' own series of pending and firing alerts (not an aispend metric)."""
ALERT_PREFIX = "AISpend"
UP = "up"
SCRAPE_DURATION = "scrape_duration_seconds"
RULE_EVAL_FAILURES = "prometheus_rule_evaluation_failures_total"
RULE_GROUP_LAST_DURATION = "prometheus_rule_group_last_duration_seconds"
RULE_GROUP_MISSED = "prometheus_rule_group_iterations_missed_total"
AISPEND_RULE_GROUPS = 'rule_group=~".+;aispend-.+"'
"""aispend's rule groups in Prometheus's own metrics (`rule_group` is "<file>;<group>")."""
AM_NOTIFICATIONS = "alertmanager_notifications_total"
AM_NOTIFICATIONS_FAILED = "alertmanager_notifications_failed_total"
JOB_PREFIX = "aispend-"
"""Prometheus job names of aispend's own processes (deploy/prometheus.yml)."""


# ---------------------------------------------------------------- selector helpers
def eq(label: str, value: str) -> str:
    return f'{label}="{value}"'


def ne(label: str, value: str) -> str:
    return f'{label}!="{value}"'


def match(label: str, regex: str) -> str:
    return f'{label}=~"{regex}"'


def sel(name: str | m.MetricSpec, *matchers: str, suffix: str = "") -> str:
    """`name_suffix{m1,m2}` for a MetricSpec or a plain series name."""
    base = (name.name if isinstance(name, m.MetricSpec) else name) + suffix
    return f"{base}{{{','.join(matchers)}}}" if matchers else base


TEAM = match(m.TEAM, "$team")
"""The teams of a multi-value `$team` (or All): Grafana regex-escapes each value."""
ONE_TEAM = f"{m.TEAM}=~`${{team:regex}}`"
"""The team of a single-value `$team` (Team showback). Grafana's Prometheus datasource
regex-escapes nothing in the value of a single-value variable (team=~"$team" with
`ml.ops` matched ml-ops too; `Data Science (EU)`, from a cost tag, matched nothing).
Not team="$team" either: in a "..." string the datasource doubles backslashes but turns
' into \\' and leaves " as is (unless a feature toggle is on), and cost-tag team names
can have quotes. The `regex` format escapes every regex metacharacter, and a raw
`...` string takes the result as it is; only a backtick in a team name would break it."""
PROJECT = match(m.PROJECT, "$project")
MODEL = match(m.MODEL, "$model")
TEAM_BUDGET = (eq(m.PERIOD, "month"), eq(m.PROJECT, ""), eq(m.AGENT, ""))
TEAM_DAY_BUDGET = (eq(m.PERIOD, "day"), eq(m.PROJECT, ""), eq(m.AGENT, ""))
NOT_REASONING = ne(m.TOKEN_TYPE, "reasoning")
"""Reasoning tokens are also counted in `output`: sums over token types leave them out."""


def by(labels: tuple[str, ...]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


def sum_rate(selector: str, labels: tuple[str, ...] = (), window: str = RATE) -> str:
    return f"sum{by(labels)} (rate({selector}[{window}]))"


def increase_in_range(counter: m.MetricSpec, *matchers: str) -> str:
    """A counter's increase over the panel's range, with the first value of a series new
    in it (`promql.counter_increase`, as spend to date counts it): increase() alone left
    out a new team's, agent's or model's first requests, and "Chargeback this month" was
    below "Month to date". A counter without `_created` series gets plain increase()."""
    return counter_increase(counter, matchers, RANGE, window_seconds=RANGE_S)


def sum_increase(counter: m.MetricSpec, labels: tuple[str, ...] = (), *matchers: str) -> str:
    return f"sum{by(labels)} ({increase_in_range(counter, *matchers)})"


def per_hour(expr: str) -> str:
    return f"{expr} * {HOUR}"


def quantile(
    q: float, histogram: m.MetricSpec, *matchers: str, labels: tuple[str, ...] = ()
) -> str:
    bucket = sel(histogram, *matchers, suffix="_bucket")
    return f"histogram_quantile({q}, {sum_rate(bucket, ('le', *labels))})"


# ---------------------------------------------------------------- spend (recorded series)
def rec(series: m.RecordedSeries, *matchers: str) -> str:
    return sel(series.name, *matchers)


def over_step(selector: str) -> str:
    """A recorded rate averaged over each step of a graph. A graph samples one point per
    step (15 minutes over 7 days): the recorded 5-minute rate at those instants missed
    a burst between two of them and showed a longer one at a fraction of its size; the
    mean over the step is the step's spend / the step (legend mean and max right too)."""
    return f"avg_over_time({selector}[{STEP}])"


def team_spend_rate(*matchers: str) -> str:
    """Spend per hour per team, for a graph (the recorded 5m rate over each step)."""
    return per_hour(f"sum by ({m.TEAM}) ({over_step(rec(m.REC_TEAM_COST_RATE5M, *matchers))})")


def total_spend_rate(*matchers: str) -> str:
    return per_hour(f"sum({rec(m.REC_TEAM_COST_RATE5M, *matchers)})")


def spend_rate_by(series: m.RecordedSeries, label: str, *matchers: str) -> str:
    """Spend per hour by `label` from a recorded 5m rate (project, agent, model, source),
    for a graph (over each step)."""
    return per_hour(f"sum by ({label}) ({over_step(rec(series, *matchers))})")


def spend_today(*matchers: str) -> str:
    return f"sum({rec(m.REC_TEAM_COST_TODAY, *matchers)})"


def spend_month(*matchers: str) -> str:
    return f"sum({rec(m.REC_TEAM_COST_MONTH, *matchers)})"


TEAM_SCOPE = (eq(m.PROJECT, ""), eq(m.AGENT, ""))
"""Budget scope rows of a whole team (project and agent absent)."""


def forecast_month_end(*matchers: str) -> str:
    return f"sum({rec(m.REC_FORECAST_MONTH_END, *TEAM_SCOPE, *matchers)})"


def month_budget_total(*matchers: str) -> str:
    budgets = sel(m.BUDGET, eq(m.PERIOD, "month"), *TEAM_SCOPE, *matchers)
    return f"sum(max by ({m.TEAM}) ({budgets}))"


def forecast_vs_budget(*matchers: str) -> str:
    """Forecast month-end spend of the teams with a month budget / their budgets."""
    forecast = rec(m.REC_FORECAST_MONTH_END, *TEAM_SCOPE, *matchers)
    budgets = sel(m.BUDGET, eq(m.PERIOD, "month"), *TEAM_SCOPE, *matchers)
    scope = f"{m.TEAM}, {m.PROJECT}, {m.AGENT}"
    return f"{forecast} / on ({scope}) max by ({scope}) ({budgets})"


def forecast_vs_budget_total(*matchers: str) -> str:
    """Forecast of the teams with a month budget / their budgets (a team without one,
    e.g. unattributed, is in neither sum)."""
    forecast = rec(m.REC_FORECAST_MONTH_END, *TEAM_SCOPE, *matchers)
    budgets = sel(m.BUDGET, eq(m.PERIOD, "month"), *TEAM_SCOPE, *matchers)
    return f"sum({forecast} and on ({m.TEAM}) {budgets}) / {month_budget_total(*matchers)}"


def budget_used(period: str, *matchers: str) -> str:
    """Share of each team's budget for `period` (day or month) spent so far."""
    return rec(m.REC_BUDGET_USED, eq(m.PERIOD, period), *TEAM_SCOPE, *matchers)


def burn_rate(window: str, period: str, *matchers: str) -> str:
    """Spend rate over `window` / the pace that exactly uses the budget (1 = on pace)."""
    return sel(f"{m.REC_BURN_PREFIX}{window}", eq(m.PERIOD, period), *TEAM_SCOPE, *matchers)


def budget_exhaustion(*matchers: str) -> str:
    """When each team's month budget runs out at the recent rate (Unix ms for Grafana)."""
    return f"1000 * {rec(m.REC_BUDGET_EXHAUSTION, *TEAM_SCOPE, *matchers)}"


def integral_in_range(rate: str) -> str:
    """The integral of a recorded per-second rate over the panel's range, from the
    samples there are (a series that starts partway through counts from its start).

    One step per minute of the range at any query time (`promql.steps`, as the rules'
    integrals: shifted back 1ms, since Prometheus 2.x takes both ends of a subquery's
    range and `[$__range:1m]` at a whole minute had a step too many)."""
    return f"sum_over_time({rate}{steps(RANGE, '1m')}) * 60"


def spend_in_range(labels: tuple[str, ...] = (), *matchers: str) -> str:
    """Spend over the panel's time range: the raw counters (LLM with a new series' first
    value, GPU), and the GPUs that dcgm-exporter reports, which have no counter, only a
    recorded cost rate. As spend to date counts them (rules.promql.spend)."""
    llm = increase_in_range(m.LLM_COST, *matchers)
    gpu = f"increase({sel(m.GPU_COST, *matchers)}[{RANGE}])"
    dcgm = rec(m.REC_GPU_COST_RATE, eq(m.SOURCE, "dcgm"), *matchers)
    return f"sum{by(labels)} ({llm} or {gpu} or {integral_in_range(dcgm)})"


def llm_spend_in_range(labels: tuple[str, ...], *matchers: str) -> str:
    return sum_increase(m.LLM_COST, labels, *matchers)


def source_spend_in_range(*matchers: str) -> str:
    """Spend by source over the panel's range (the recorded rate, integrated)."""
    rate = rec(m.REC_TEAM_SOURCE_COST_RATE5M, *matchers)
    return f"sum by ({m.SOURCE}) ({integral_in_range(rate)})"


def day_vs_previous_weeks(*matchers: str) -> tuple[str, str]:
    """Spend of the last 24h, and the median of the same 24h 1-3 weeks ago."""
    return (
        rec(m.REC_TEAM_COST_1D, *matchers),
        rec(m.REC_TEAM_COST_1D_WEEKS, *matchers),
    )


def _with_cost_center(expr: str, labels: tuple[str, ...]) -> str:
    """`expr` with each team's cost centre; a team without one (unattributed, or the
    budgets exporter down) keeps its rows, without a cost centre."""
    info = f"max by ({m.TEAM}, {m.COST_CENTER}) ({sel(m.TEAM_INFO)})"
    return (
        f"{expr} * on ({m.TEAM}) group_left ({m.COST_CENTER}) {info}"
        f" or on ({', '.join(labels)}) {expr}"
    )


def chargeback(kind: str, *matchers: str) -> str:
    """Figures over the panel's range by team, project and agent, with the cost centre."""
    labels = (m.TEAM, m.PROJECT, m.AGENT)
    if kind == "spend":
        expr = spend_in_range(labels, *matchers)
    elif kind == "tokens":
        expr = sum_increase(m.LLM_TOKENS, labels, *matchers, NOT_REASONING)
    elif kind == "requests":
        expr = sum_increase(m.LLM_REQUESTS, labels, *matchers)
    else:
        raise ValueError(kind)
    return _with_cost_center(expr, labels)


# ---------------------------------------------------------------- the bill
BILL_WINDOW = "25h"
"""How far back a bill gauge's last sample is looked for: just over a day, as bill
history loaded with `aispend backfill` has one sample per series per day (00:00 UTC)."""


def bill_month(labels: tuple[str, ...], *matchers: str) -> str:
    """The cloud bill this month so far (billing exporter: the configured cost column).

    While the billing exporter is scraped, its current series (a row that left the
    bill, e.g. at a new month, is not counted); otherwise (backfilled history, or the
    exporter down) each series' last sample of the last BILL_WINDOW."""
    now = f"sum{by(labels)} ({sel(m.CLOUD_COST_MONTH_TO_DATE, *matchers)})"
    window = f"{sel(m.CLOUD_COST_MONTH_TO_DATE, *matchers)}[{BILL_WINDOW}]"
    last = f"sum{by(labels)} (last_over_time({window}))"
    return f"{now} or ({last} unless on () count({sel(m.CLOUD_COST_MONTH_TO_DATE)}))"


def estimate_vs_bill(*matchers: str) -> str:
    """Real-time estimate / bill for the newest billed day, per team."""
    return rec(m.REC_ESTIMATE_VS_BILL, *matchers)


def bill_data_end() -> str:
    """End of the newest charge period in the bill data, in ms (Grafana's time unit);
    the newest over BILL_WINDOW, so that daily backfilled samples count."""
    window = f"{sel(m.CLOUD_COST_DATA_TIMESTAMP)}[{BILL_WINDOW}]"
    return f"max(last_over_time({window})) * 1000"


# ---------------------------------------------------------------- anomalies
def team_actual_vs_prediction(t: Tunables, *matchers: str) -> dict[str, str]:
    """Per team: actual 5m spend rate, seasonal prediction, and +/- anomaly_sigma bands,
    per hour.

    The team's prediction is the sum of its per-model predictions; its stddev is the
    root of the summed per-model variances (models treated as independent), each
    stddev floored as the z-score's denominator is (at least min_stddev_ratio x the
    prediction): for a team with one model, the band is where SpendAnomaly's z-score
    passes anomaly_sigma. The lower band is clamped at 0.
    """
    from aispend.rules.anomaly import floored_stddev

    prediction = rec(m.REC_TEAM_MODEL_PREDICTION, *matchers)
    stddev_name = m.REC_TEAM_MODEL_PREDICTION.name.replace(":prediction", ":stddev")
    floored = floored_stddev(sel(stddev_name, *matchers), prediction, t)
    pred = f"sum by ({m.TEAM}) ({prediction})"
    std = f"sqrt(sum by ({m.TEAM}) ({floored} ^ 2))"
    actual = f"sum by ({m.TEAM}) ({rec(m.REC_TEAM_MODEL_COST_RATE5M, *matchers)})"
    sigma = t.anomaly_sigma
    return {
        "actual": per_hour(actual),
        "prediction": per_hour(pred),
        "upper": per_hour(f"({pred} + {sigma:g} * {std})"),
        "lower": per_hour(f"clamp_min({pred} - {sigma:g} * {std}, 0)"),
    }


def zscores(series: m.RecordedSeries, label: str, *matchers: str) -> str:
    return f"max by ({m.TEAM}, {label}) ({rec(series, *matchers)})"


# ---------------------------------------------------------------- LLM economics
def tokens_per_second(labels: tuple[str, ...], *matchers: str) -> str:
    return sum_rate(sel(m.LLM_TOKENS, *matchers), labels)


def requests_per_second(labels: tuple[str, ...], *matchers: str, window: str = RATE) -> str:
    return sum_rate(sel(m.LLM_REQUESTS, *matchers), labels, window)


REQUEST_COUNTING_SOURCE = "gateway"
"""The one `source` of LLM spend that also counts requests (the gateway's, as
aispend/gateway/metrics.py labels it). The tokens exporter (APIM logs, Azure OpenAI
metrics) exports spend and tokens but no request counter."""
COST_PER_REQUEST_SCOPE = (
    "Gateway traffic only: spend without a request count (the tokens exporter's APIM and"
    " Azure OpenAI usage) is left out of the numerator. Requests answered 2xx only:"
    " throttled (429), refused (4xx) and failed (5xx) requests cost nothing and would"
    " make a throttled team look cheap per request."
)
"""Said in every cost-per-request panel's description."""


ANSWERED = match(m.STATUS, "2..")
"""Requests answered 2xx, the ones that can cost anything."""


def cost_per_request(labels: tuple[str, ...], *matchers: str, window: str = RATE) -> str:
    """Spend over requests answered 2xx, both from the sources that count requests: spend
    the requests do not cover would inflate the ratio, and requests that cost nothing
    (throttled, refused, failed) deflate it."""
    counted = eq(m.SOURCE, REQUEST_COUNTING_SOURCE)
    cost = sum_rate(sel(m.LLM_COST, *matchers, counted), labels, window)
    return f"{cost} / {requests_per_second(labels, *matchers, ANSWERED, window=window)}"


def cost_per_1k_requests(labels: tuple[str, ...], *matchers: str) -> str:
    return f"1000 * {cost_per_request(labels, *matchers)}"


def request_cost_quantile(q: float, *matchers: str) -> str:
    return quantile(q, m.LLM_REQUEST_COST, *matchers)


def cache_read_share(labels: tuple[str, ...], *matchers: str) -> str:
    """Cache-read input tokens as a share of all input tokens."""
    cached = tokens_per_second(labels, *matchers, eq(m.TOKEN_TYPE, "cached_input"))
    inputs = tokens_per_second(labels, *matchers, match(m.TOKEN_TYPE, "input|cached_input"))
    return f"{cached} / {inputs}"


def non_2xx_share(labels: tuple[str, ...], *matchers: str) -> str:
    """Share of requests answered with anything but 2xx (errors, throttles, 4xx); a
    group with no 2xx at all is 1, not missing."""
    ok = requests_per_second(labels, *matchers, match(m.STATUS, "2.."))
    every = requests_per_second(labels, *matchers)
    return f"1 - (({ok} or 0 * {every}) / {every})"


def throttled_per_second(labels: tuple[str, ...], *matchers: str) -> str:
    return sum_rate(sel(m.GATEWAY_THROTTLED_REQUESTS, *matchers), labels)


def status_rate(status_regex: str, labels: tuple[str, ...], *matchers: str) -> str:
    return requests_per_second(labels, *matchers, match(m.STATUS, status_regex))


def upstream_errors_per_second() -> str:
    return sum_rate(sel(m.GATEWAY_UPSTREAM_ERRORS), (m.PROVIDER, m.REASON))


def usage_unknown_per_second() -> str:
    """Requests per second the gateway forwarded but could not read the usage of
    (counted at no cost), by reason; while the gateway serves requests and every one's
    usage was read, a 0 line labelled reason="none" (the counter has no series until
    a first request lacks usage, and an empty panel would look broken)."""
    unknown = sum_rate(sel(m.LLM_USAGE_UNKNOWN), (m.REASON,))
    zero = f'label_replace(0 * {requests_per_second(())}, "{m.REASON}", "none", "", "")'
    return f"{unknown} or on() {zero}"


def gateway_overhead_quantile(q: float) -> str:
    return quantile(q, m.GATEWAY_OVERHEAD)


def operation_duration_quantile(q: float, labels: tuple[str, ...], *matchers: str) -> str:
    """Quantile of the GenAI operation duration; a `model` matcher applies to its
    `gen_ai_request_model` label."""
    prefix = f"{m.MODEL}="
    genai = tuple(
        m.GEN_AI_REQUEST_MODEL + x[len(m.MODEL) :] if x.startswith(prefix) else x for x in matchers
    )
    return quantile(q, m.GEN_AI_OPERATION_DURATION, *genai, labels=labels)


# ---------------------------------------------------------------- GPUs
GPU_KEY = (m.HOSTNAME, m.GPU)


def gpu_utilization(*matchers: str) -> str:
    """Utilisation per GPU (recorded: aispend's gpu exporter or dcgm-exporter)."""
    keys = ", ".join((*GPU_KEY, m.GPU_MODEL_NAME))
    return f"max by ({keys}) ({rec(m.REC_GPU_UTILIZATION, *matchers)})"


def gpu_count(*matchers: str) -> str:
    """GPUs reported by either exporter, whether or not their utilisation is read (MIG)."""
    return f"count({rec(m.REC_GPU_PRESENT, *matchers)})"


def gpu_mean_utilization(*matchers: str) -> str:
    return f"avg({rec(m.REC_GPU_UTILIZATION, *matchers)})"


def _gpu_cost_per_second(*matchers: str) -> str:
    """Each GPU's cost per second, from the recorded cost rate: it has dcgm-exporter's
    GPUs too, as the alert has."""
    keys = ", ".join((m.HOSTNAME, m.GPU, m.GPU_UUID, m.GPU_MODEL_NAME, m.TEAM))
    return f"max by ({keys}) ({rec(m.REC_GPU_COST_RATE, *matchers)})"


def gpu_idle(threshold: float, window: str, *matchers: str) -> str:
    """Hourly price of each GPU whose mean utilisation over `window` is below threshold."""
    util = f"avg_over_time({rec(m.REC_GPU_UTILIZATION, *matchers)}[{window}])"
    price = per_hour(_gpu_cost_per_second(*matchers))
    return f"{price} and on ({m.GPU_UUID}) ({util} < {threshold:g})"


def gpu_cost_rate(labels: tuple[str, ...], *matchers: str, graph: bool = False) -> str:
    """GPU cost per hour now, or for a `graph` over each step (a GPU up for less than a
    step showed only if a step fell on it)."""
    rate = rec(m.REC_GPU_COST_RATE, *matchers)
    return per_hour(f"sum{by(labels)} ({over_step(rate) if graph else rate})")


def gpu_idle_cost_rate(threshold: float, *matchers: str) -> str:
    """Cost per hour of the GPUs below `threshold` utilisation now. From the recorded
    rates, so that dcgm-exporter's GPUs count, as in the idle table and the alert (the
    aispend exporter's idle cost counter has only its own GPUs)."""
    price = _gpu_cost_per_second(*matchers)
    util = rec(m.REC_GPU_UTILIZATION, *matchers)
    return per_hour(f"sum ({price} and on ({m.GPU_UUID}) ({util} < {threshold:g}))")


def gpu_memory_used_ratio(*matchers: str) -> str:
    """Framebuffer used / total per GPU (recorded: aispend's gpu exporter or dcgm)."""
    return f"max by ({', '.join(GPU_KEY)}) ({rec(m.REC_GPU_MEMORY_USED_RATIO, *matchers)})"


def gpu_power(*matchers: str) -> str:
    """Power draw per GPU in watts (recorded: aispend's gpu exporter or dcgm)."""
    return f"max by ({', '.join(GPU_KEY)}) ({rec(m.REC_GPU_POWER, *matchers)})"


def nvml_errors_per_second() -> str:
    """Failed NVML calls per second by exporter instance and call (aispend's gpu exporter;
    not by team: a GPU NVML cannot identify has no team)."""
    return sum_rate(sel(m.GPU_NVML_ERRORS), ("instance", m.CALL))


# ---------------------------------------------------------------- anomalies, alerts, actions
def firing_alerts(*matchers: str) -> str:
    return sel(
        ALERTS, eq("alertstate", "firing"), match("alertname", f"{ALERT_PREFIX}.*"), *matchers
    )


def active_throttles(*matchers: str) -> str:
    return sel(m.GATEWAY_THROTTLE_ACTIVE, *matchers)


def actuator_actions(*matchers: str) -> str:
    return sum_increase(m.ACTUATOR_ACTIONS, (m.TARGET, m.ACTION, m.RESULT), *matchers)


def actuator_active_actions() -> str:
    return f"sum by ({m.TARGET}, {m.TEAM}) ({sel(m.ACTUATOR_ACTIVE_ACTIONS)})"


# ---------------------------------------------------------------- stack health
def exporter_up() -> str:
    return f"min by ({m.SOURCE}) ({sel(m.EXPORTER_UP)})"


def scrape_up() -> str:
    return sel(UP, match("job", f"{JOB_PREFIX}.*|prometheus|alertmanager"))


DATA_AGE_WINDOW = "7d"
"""How long a source's data age keeps growing after its exporter stopped being scraped:
past the stale thresholds (AISpendBillingDataStale: billing_read_max_age and
billing_data_max_age, 6h and 3d by default)."""


def data_age() -> str:
    """Seconds since each source was last read successfully. From each source's last
    sample in DATA_AGE_WINDOW: when its exporter dies the series goes stale, and the
    age went blank just as the data got old (the stale alerts go quiet then too, and
    AISpendExporterDown fires for the unscraped exporter)."""
    last = f"last_over_time({sel(m.SOURCE_LAST_SUCCESS)}[{DATA_AGE_WINDOW}])"
    return f"time() - max by ({m.SOURCE}) ({last})"


def config_age() -> str:
    """Seconds since each process last loaded aispend.yaml successfully."""
    return f"time() - max by (job) ({sel(m.CONFIG_RELOAD_TIMESTAMP)})"


def scrape_duration() -> str:
    return f"max by (job) ({sel(SCRAPE_DURATION, match('job', f'{JOB_PREFIX}.*'))})"


def rule_evaluation_failures() -> str:
    return f"sum by (rule_group) (increase({RULE_EVAL_FAILURES}[{RATE}]))"


def rule_group_duration() -> str:
    return f"max by (rule_group) ({RULE_GROUP_LAST_DURATION})"


def alertmanager_notifications(failed: bool = False) -> str:
    name = AM_NOTIFICATIONS_FAILED if failed else AM_NOTIFICATIONS
    return f"sum by (integration) (rate({name}[{RATE}]))"


def actuator_webhook_requests() -> str:
    return sum_rate(sel(m.ACTUATOR_WEBHOOK_REQUESTS), (m.CODE,))


def config_reload_ok() -> str:
    return f"min by (job) ({sel(m.CONFIG_RELOAD_SUCCESS)})"
