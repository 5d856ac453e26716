"""The metric contract: every metric and label name aispend exposes or records.

This module is the one place where names are spelled. Exporters, the gateway, the
actuator, the rules generator, dashboards and tests import them from here, and
`docs/metrics.md` is generated from `ALL_METRICS` (`aispend docs generate`).

Naming follows Prometheus practice and ../shared/CONVENTIONS.md: one `aispend_`
prefix (plus the OpenTelemetry GenAI `gen_ai_` names), base units, counters end in
`_total`, ratios are 0..1, money is in the configured reporting currency and is named
`..._cost` / `..._cost_total` (or `aispend_budget`), with the currency in
`aispend_info{currency}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)

MetricType = Literal["counter", "gauge", "histogram", "info"]

MONEY = "currency"
"""Unit marker for money: the reporting currency of `aispend_info{currency}`."""

# ---------------------------------------------------------------- label names
TEAM = "team"
PROJECT = "project"
AGENT = "agent"
MODEL = "model"
PROVIDER = "provider"
SOURCE = "source"
PERIOD = "period"
TOKEN_TYPE = "token_type"
STATUS = "status"
RULE = "rule"
ACTUATOR_RULE_PREFIX = "am-"  # rule values of the throttles the actuator sets
MODE = "mode"
REASON = "reason"
VERSION = "version"
CURRENCY = "currency"
COST_CENTER = "cost_center"
OWNER = "owner"
CRITICALITY = "criticality"
CALL = "call"
TARGET = "target"
ACTION = "action"
RESULT = "result"
CODE = "code"
ACCOUNT = "account"
SERVICE = "service"
SERVICE_CATEGORY = "service_category"
ENVIRONMENT = "environment"
BUDGET_OF = "budget_of"  # only inside rule expressions: whose budget a ratio is against
# dcgm-exporter's GPU label names, mirrored so GPU dashboards carry over, except
# dcgm's `modelName`: `promtool check metrics` warns on camelCase label names, so it
# is `model_name` here (rules map dcgm's label with label_replace).
GPU = "gpu"
GPU_UUID = "UUID"
GPU_MODEL_NAME = "model_name"
HOSTNAME = "Hostname"
GPU_INSTANCE = "gpu_instance"
PID = "pid"
PROCESS_NAME = "process_name"
POD = "pod"
NAMESPACE = "namespace"
# OpenTelemetry GenAI semantic-convention attribute names, Prometheus-style.
GEN_AI_OPERATION_NAME = "gen_ai_operation_name"
GEN_AI_PROVIDER_NAME = "gen_ai_provider_name"
GEN_AI_REQUEST_MODEL = "gen_ai_request_model"
GEN_AI_TOKEN_TYPE = "gen_ai_token_type"

# Fixed label values shared across components.
UNATTRIBUTED_TEAM = "unattributed"
UNTAGGED_TEAM = "untagged"
OTHER = "other"
TOKEN_TYPES = ("input", "output", "cached_input", "reasoning")
PERIODS = ("day", "month")

WORKLOAD = (TEAM, PROJECT, AGENT)
LLM_LABELS = (TEAM, PROJECT, AGENT, PROVIDER, MODEL, SOURCE)
GPU_LABELS = (GPU, GPU_UUID, GPU_MODEL_NAME, HOSTNAME, TEAM, PROJECT)
CLOUD_COST_LABELS = (
    PROVIDER,
    ACCOUNT,
    SERVICE_CATEGORY,
    SERVICE,
    TEAM,
    PROJECT,
    ENVIRONMENT,
)


@dataclass(frozen=True)
class MetricSpec:
    """One exposed metric: its full exposed name, type, unit, labels and help."""

    name: str
    type: MetricType
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    component: str = "common"

    @property
    def family_name(self) -> str:
        """Name to give prometheus_client (which appends `_total` / `_info` itself)."""
        if self.type == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        if self.type == "info" and self.name.endswith("_info"):
            return self.name[: -len("_info")]
        return self.name

    @property
    def created_name(self) -> str:
        """The `_created` series prometheus_client exposes beside a counter: when each
        of its series was created (Unix seconds)."""
        if self.type != "counter":
            raise ValueError(f"{self.name} is a {self.type}, not a counter")
        return self.family_name + "_created"

    @property
    def full_help(self) -> str:
        if self.unit == MONEY:
            return f"{self.help} In the reporting currency (aispend_info currency label)."
        return self.help

    def gauge(self, labels: Sequence[str] | None = None) -> GaugeMetricFamily:
        assert self.type == "gauge", self.name
        return GaugeMetricFamily(
            self.name, self.full_help, labels=list(self.labels if labels is None else labels)
        )

    def counter(self, labels: Sequence[str] | None = None) -> CounterMetricFamily:
        assert self.type == "counter", self.name
        return CounterMetricFamily(
            self.family_name,
            self.full_help,
            labels=list(self.labels if labels is None else labels),
        )

    def info(self) -> InfoMetricFamily:
        assert self.type == "info", self.name
        return InfoMetricFamily(self.family_name, self.full_help, labels=[])


def _m(
    name: str,
    type_: MetricType,
    unit: str,
    help_: str,
    labels: Iterable[str] = (),
    component: str = "common",
) -> MetricSpec:
    return MetricSpec(name, type_, unit, help_, tuple(labels), component)


# ---------------------------------------------------------------- common
INFO = _m(
    "aispend_info",
    "info",
    "",
    "aispend build and the reporting currency for every money metric (value 1).",
    (VERSION, CURRENCY),
)
EXPORTER_UP = _m(
    "aispend_exporter_up",
    "gauge",
    "",
    "1 when the exporter's last collection from its source succeeded, else 0.",
    (SOURCE,),
)
SOURCE_LAST_SUCCESS = _m(
    "aispend_source_last_success_timestamp_seconds",
    "gauge",
    "seconds",
    "Unix time of the last successful read of the source.",
    (SOURCE,),
)
SOURCE_CACHE_AGE = _m(
    "aispend_source_cache_age_seconds",
    "gauge",
    "seconds",
    "Age of the cached data served for a slow source.",
    (SOURCE,),
)
SOURCE_THROTTLED = _m(
    "aispend_source_throttled_total",
    "counter",
    "",
    "Responses from a source API that asked us to back off (HTTP 429).",
    (SOURCE,),
)
CONFIG_RELOAD_SUCCESS = _m(
    "aispend_config_last_reload_success",
    "gauge",
    "",
    "1 when the last config (re)load succeeded; 0 while an invalid file is ignored.",
)
CONFIG_RELOAD_TIMESTAMP = _m(
    "aispend_config_last_reload_success_timestamp_seconds",
    "gauge",
    "seconds",
    "Unix time of the last successful config load.",
)

# ---------------------------------------------------------------- budgets
BUDGET = _m(
    "aispend_budget",
    "gauge",
    MONEY,
    "Budget amount for a team (or team and project, or team and agent) per period.",
    (TEAM, PROJECT, AGENT, PERIOD),
    "budgets",
)
BUDGET_SOFT_RATIO = _m(
    "aispend_budget_soft_ratio",
    "gauge",
    "ratio",
    "Share of the budget at which the soft (warning) threshold lies, 0..1.",
    (TEAM, PROJECT, AGENT, PERIOD),
    "budgets",
)
TEAM_INFO = _m(
    "aispend_team_info",
    "info",
    "",
    "Team metadata from aispend.yaml (value 1), for joins in rules and dashboards.",
    (TEAM, COST_CENTER, OWNER, CRITICALITY),
    "budgets",
)

# ---------------------------------------------------------------- LLM spend (gateway, tokens)
LLM_REQUESTS = _m(
    "aispend_llm_requests_total",
    "counter",
    "",
    "LLM API requests seen, by HTTP status returned to the client.",
    (TEAM, PROJECT, AGENT, PROVIDER, MODEL, STATUS),
    "gateway",
)
LLM_TOKENS = _m(
    "aispend_llm_tokens_total",
    "counter",
    "tokens",
    "LLM tokens used, by token type (input, output, cached_input, reasoning).",
    (*LLM_LABELS, TOKEN_TYPE),
    "gateway",
)
LLM_COST = _m(
    "aispend_llm_cost_total",
    "counter",
    MONEY,
    "Estimated LLM spend: tokens priced per model.",
    LLM_LABELS,
    "gateway",
)
LLM_REQUEST_COST = _m(
    "aispend_llm_request_cost",
    "histogram",
    MONEY,
    "Estimated cost of one LLM request.",
    (TEAM, PROVIDER, MODEL),
    "gateway",
)
LLM_UNPRICED_REQUESTS = _m(
    "aispend_llm_unpriced_requests_total",
    "counter",
    "",
    "Requests for a model with no known price, counted at cost 0 (a response naming an"
    " unknown snapshot is priced as the model asked for, when that one is known).",
    (PROVIDER, MODEL),
    "gateway",
)
LLM_USAGE_UNKNOWN = _m(
    "aispend_llm_usage_unknown_total",
    "counter",
    "",
    "Requests whose token usage could not be read (not guessed), by reason.",
    (TEAM, PROVIDER, MODEL, REASON),
    "gateway",
)
GEN_AI_TOKEN_USAGE = _m(
    "gen_ai_client_token_usage",
    "histogram",
    "tokens",
    "OpenTelemetry GenAI: tokens used per operation, by token type.",
    (
        GEN_AI_OPERATION_NAME,
        GEN_AI_PROVIDER_NAME,
        GEN_AI_REQUEST_MODEL,
        GEN_AI_TOKEN_TYPE,
        TEAM,
    ),
    "gateway",
)
GEN_AI_OPERATION_DURATION = _m(
    "gen_ai_client_operation_duration_seconds",
    "histogram",
    "seconds",
    "OpenTelemetry GenAI: duration of one operation, upstream included.",
    (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, TEAM),
    "gateway",
)
GATEWAY_OVERHEAD = _m(
    "aispend_gateway_overhead_seconds",
    "histogram",
    "seconds",
    "Time a request spends in the gateway itself, excluding the upstream.",
    (PROVIDER,),
    "gateway",
)
GATEWAY_THROTTLED_REQUESTS = _m(
    "aispend_gateway_throttled_requests_total",
    "counter",
    "",
    "Requests refused with 429 by a throttle rule.",
    (TEAM, PROJECT, AGENT, RULE),
    "gateway",
)
GATEWAY_THROTTLE_ACTIVE = _m(
    "aispend_gateway_throttle_active",
    "gauge",
    "",
    "1 for each throttle rule in force in the gateway's throttle table.",
    (RULE, TEAM, PROJECT, AGENT, MODEL, MODE),
    "gateway",
)
GATEWAY_UPSTREAM_ERRORS = _m(
    "aispend_gateway_upstream_errors_total",
    "counter",
    "",
    "Upstream failures seen by the gateway (timeout, connect, truncated, ...).",
    (PROVIDER, REASON),
    "gateway",
)

# ---------------------------------------------------------------- dcgm-exporter
# NVIDIA dcgm-exporter's series that the rules read next to aispend's own GPU metrics
# (labels gpu, UUID, modelName, Hostname; not exported by aispend).
DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
"""Utilisation, 0..100."""
DCGM_FB_USED = "DCGM_FI_DEV_FB_USED"
"""Framebuffer memory used, MiB."""
DCGM_FB_FREE = "DCGM_FI_DEV_FB_FREE"
"""Framebuffer memory free, MiB."""
DCGM_POWER_USAGE = "DCGM_FI_DEV_POWER_USAGE"
"""Power draw, watts."""
DCGM_FIELDS = (DCGM_GPU_UTIL, DCGM_FB_USED, DCGM_FB_FREE, DCGM_POWER_USAGE)
"""The dcgm-exporter fields the rules read: any of them means dcgm watches the GPU."""
DCGM_GPU_INSTANCE = "GPU_I_ID"
"""dcgm-exporter's label on a MIG instance's series (absent on a whole GPU's)."""

# ---------------------------------------------------------------- GPUs (NVML)
GPU_UTILIZATION = _m(
    "aispend_gpu_utilization_ratio",
    "gauge",
    "ratio",
    "GPU utilisation, 0..1 (dcgm-exporter DCGM_FI_DEV_GPU_UTIL / 100).",
    GPU_LABELS,
    "gpu",
)
GPU_MEMORY_USED = _m(
    "aispend_gpu_memory_used_bytes",
    "gauge",
    "bytes",
    "GPU framebuffer memory used.",
    GPU_LABELS,
    "gpu",
)
GPU_MEMORY_TOTAL = _m(
    "aispend_gpu_memory_total_bytes",
    "gauge",
    "bytes",
    "GPU framebuffer memory in total.",
    GPU_LABELS,
    "gpu",
)
GPU_POWER = _m(
    "aispend_gpu_power_watts",
    "gauge",
    "watts",
    "GPU power draw.",
    GPU_LABELS,
    "gpu",
)
GPU_ENERGY = _m(
    "aispend_gpu_energy_joules_total",
    "counter",
    "joules",
    "GPU energy consumed since the driver loaded.",
    GPU_LABELS,
    "gpu",
)
GPU_TEMPERATURE = _m(
    "aispend_gpu_temperature_celsius",
    "gauge",
    "celsius",
    "GPU core temperature.",
    GPU_LABELS,
    "gpu",
)
GPU_PROCESS_MEMORY = _m(
    "aispend_gpu_process_memory_used_bytes",
    "gauge",
    "bytes",
    "GPU memory used by one process (0 when NVML does not report it).",
    (*GPU_LABELS, PID, PROCESS_NAME, POD, NAMESPACE),
    "gpu",
)
GPU_MIG_MEMORY_USED = _m(
    "aispend_gpu_mig_memory_used_bytes",
    "gauge",
    "bytes",
    "Memory used by one MIG device.",
    (*GPU_LABELS, GPU_INSTANCE),
    "gpu",
)
GPU_HOURLY_COST = _m(
    "aispend_gpu_hourly_cost",
    "gauge",
    MONEY,
    "Hourly price of the GPU (per GPU model, from config prices.gpu).",
    GPU_LABELS,
    "gpu",
)
GPU_COST = _m(
    "aispend_gpu_cost_total",
    "counter",
    MONEY,
    "GPU cost accrued from its hourly price while the exporter ran.",
    GPU_LABELS,
    "gpu",
)
GPU_IDLE_COST = _m(
    "aispend_gpu_idle_cost_total",
    "counter",
    MONEY,
    "GPU cost accrued while utilisation was below the idle threshold.",
    GPU_LABELS,
    "gpu",
)
GPU_NVML_ERRORS = _m(
    "aispend_gpu_nvml_errors_total",
    "counter",
    "",
    "NVML calls that failed (field skipped, scrape kept), by NVML call.",
    (CALL,),
    "gpu",
)

# ---------------------------------------------------------------- cloud bill (billing)
CLOUD_COST_MONTH_TO_DATE = _m(
    "aispend_cloud_cost_month_to_date",
    "gauge",
    MONEY,
    "Cloud cost from the bill for the month so far (the configured cost: FOCUS"
    " EffectiveCost by default or BilledCost; Azure ActualCost by default or AmortizedCost);"
    " the month the bill data has reached: the previous one until it has a day of this one.",
    CLOUD_COST_LABELS,
    "billing",
)
CLOUD_COST_LAST_DAY = _m(
    "aispend_cloud_cost_last_day",
    "gauge",
    MONEY,
    "Cloud cost from the bill for the newest complete day in the data (the configured cost,"
    " as for the month to date).",
    CLOUD_COST_LABELS,
    "billing",
)
CLOUD_COST_DATA_TIMESTAMP = _m(
    "aispend_cloud_cost_data_timestamp_seconds",
    "gauge",
    "seconds",
    "Unix time of the end of the newest charge period covered by the bill data (absent"
    " while a source's last read had no cost rows).",
    (SOURCE,),
    "billing",
)
RESOURCE = "resource"
CLOUD_RESOURCE_COST_MONTH_TO_DATE = _m(
    "aispend_cloud_resource_cost_month_to_date",
    "gauge",
    MONEY,
    "Cloud cost from the bill of one resource this month so far (only when configured; the"
    ' costliest N resources, the rest summed under resource="other").',
    (PROVIDER, ACCOUNT, SERVICE, TEAM, RESOURCE),
    "billing",
)

# ---------------------------------------------------------------- actuator
ACTUATOR_ACTIONS = _m(
    "aispend_actuator_actions_total",
    "counter",
    "",
    "Actuator decisions by target, action (apply/undo/skip) and result.",
    (TARGET, ACTION, RESULT),
    "actuator",
)
ACTUATOR_ACTIVE_ACTIONS = _m(
    "aispend_actuator_active_actions",
    "gauge",
    "",
    "Actions in force: applied, or whose apply or undo failed, and not yet undone.",
    (TARGET, TEAM),
    "actuator",
)
ACTUATOR_WEBHOOK_REQUESTS = _m(
    "aispend_actuator_webhook_requests_total",
    "counter",
    "",
    "Alertmanager webhook deliveries received, by HTTP status answered.",
    (CODE,),
    "actuator",
)


def _collect_all() -> tuple[MetricSpec, ...]:
    return tuple(v for v in globals().values() if isinstance(v, MetricSpec))


ALL_METRICS: tuple[MetricSpec, ...] = _collect_all()
"""Every exposed metric, in definition order."""


def by_name(name: str) -> MetricSpec:
    for spec in ALL_METRICS:
        if spec.name == name:
            return spec
    raise KeyError(name)


# ---------------------------------------------------------------- Rules (recorded series)
# Recorded by alert-rules/aispend.rules.yml (generated by `aispend rules generate`),
# named `level:metric:operations`. Money rates are per second in the reporting
# currency. "scope" rows are budget scopes: team (project and agent absent),
# team+project, team+agent, so they join `aispend_budget` on (team, project, agent).
BASELINE = "baseline"
"""Label on anomaly series: which baseline was used (1w, 1d or 6h; see docs/runbooks.md)."""


@dataclass(frozen=True)
class RecordedSeries:
    """One recorded series: its name, labels and meaning."""

    name: str
    labels: tuple[str, ...]
    help: str


def _r(name: str, labels: Iterable[str], help_: str) -> RecordedSeries:
    return RecordedSeries(name, tuple(labels), help_)


_SCOPE = (TEAM, PROJECT, AGENT)
_GPU_REC = (GPU, GPU_UUID, GPU_MODEL_NAME, HOSTNAME, TEAM, PROJECT, SOURCE)
REC_GPU_PRESENT = _r(
    "gpu:aispend_gpu:present",
    _GPU_REC,
    "1 per GPU an exporter reports: aispend's (source gpu: any of its per-GPU series) "
    "or else dcgm-exporter's (any DCGM_FI_DEV_* field the rules read), utilisation or not.",
)
REC_GPU_UTILIZATION = _r(
    "gpu:aispend_gpu_utilization:ratio", _GPU_REC, "GPU utilisation 0..1, aispend or dcgm."
)
REC_GPU_COST_RATE = _r(
    "gpu:aispend_gpu_cost:rate5m", _GPU_REC, "GPU cost per second, aispend or dcgm."
)
REC_GPU_MEMORY_USED_RATIO = _r(
    "gpu:aispend_gpu_memory_used:ratio",
    _GPU_REC,
    "GPU framebuffer memory used / total, aispend or dcgm.",
)
REC_GPU_POWER = _r("gpu:aispend_gpu_power:watts", _GPU_REC, "GPU power draw, aispend or dcgm.")
REC_GPU_PRICE = _r(
    "model_name:aispend_gpu_hourly_cost:price",
    (GPU_MODEL_NAME,),
    "Hourly GPU price per model used for dcgm-exporter GPUs (from the rules tunables).",
)
REC_COST_RATE5M = _r(
    "team_project_agent_model_source:aispend_cost:rate5m",
    (TEAM, PROJECT, AGENT, MODEL, SOURCE),
    "Combined AI spend per second (LLM tokens and GPUs; GPUs have source gpu or dcgm).",
)
REC_TEAM_COST_RATE5M = _r("team:aispend_cost:rate5m", (TEAM,), "Spend per second per team.")
REC_TEAM_PROJECT_COST_RATE5M = _r(
    "team_project:aispend_cost:rate5m", (TEAM, PROJECT), "Spend per second per project."
)
REC_TEAM_AGENT_COST_RATE5M = _r(
    "team_agent:aispend_cost:rate5m", (TEAM, AGENT), "Spend per second per agent."
)
REC_TEAM_MODEL_COST_RATE5M = _r(
    "team_model:aispend_cost:rate5m", (TEAM, MODEL), "Spend per second per team and model."
)
REC_TEAM_SOURCE_COST_RATE5M = _r(
    "team_source:aispend_cost:rate5m", (TEAM, SOURCE), "Spend per second per team and source."
)
REC_TEAM_COST_RATE1H = _r("team:aispend_cost:rate1h", (TEAM,), "Spend per second, 1h window.")
REC_TEAM_MODEL_COST_RATE1H = _r(
    "team_model:aispend_cost:rate1h", (TEAM, MODEL), "Spend per second per model, 1h window."
)
REC_TEAM_AGENT_COST_RATE1H = _r(
    "team_agent:aispend_cost:rate1h", (TEAM, AGENT), "Spend per second per agent, 1h window."
)
REC_SCOPE_COST_1H = _r(
    "team_project_agent:aispend_cost:increase1h",
    _SCOPE,
    "Spend in the last hour, per budget scope (new series' first values counted); the"
    " spend-to-date rules and the forecast sum it at whole hours.",
)
REC_SCOPE_COST_THIS_HOUR = _r(
    "team_project_agent:aispend_cost:increase_this_hour",
    _SCOPE,
    "Spend since the start of the current UTC hour, per budget scope, in 5-minute steps.",
)
REC_SCOPE_COST_TODAY = _r(
    "team_project_agent:aispend_cost:increase_today",
    _SCOPE,
    "Spend so far in the current UTC day, per budget scope.",
)
REC_SCOPE_COST_MONTH = _r(
    "team_project_agent:aispend_cost:increase_month",
    _SCOPE,
    "Spend so far in the current UTC calendar month, per budget scope.",
)
REC_TEAM_COST_TODAY = _r(
    "team:aispend_cost:increase_today", (TEAM,), "Spend so far in the current UTC day."
)
REC_TEAM_COST_MONTH = _r(
    "team:aispend_cost:increase_month", (TEAM,), "Spend so far in the current UTC month."
)
REC_BUDGET_PACE = _r(
    "team_project_agent_period:aispend_budget:per_second",
    (*_SCOPE, PERIOD),
    "Budget divided by the length of its period (day, or the current calendar month).",
)
REC_TEAM_BUDGET_PACE_MIN = _r(
    "team:aispend_budget:per_second_min", (TEAM,), "The tightest team budget pace."
)
REC_AGENT_BUDGET_PACE_MIN = _r(
    "team_agent:aispend_budget:per_second_min",
    (TEAM, AGENT),
    "The tightest pace of an agent's own budgets.",
)
REC_BUDGET_USED = _r(
    "team_project_agent_period:aispend_budget_used:ratio",
    (*_SCOPE, PERIOD),
    "Spend so far in the period divided by the budget.",
)
REC_SCOPE_COST_RATE_PREFIX = "team_project_agent:aispend_cost:rate"
"""Followed by a window (5m, 1h, ...): spend per second per budget scope."""
REC_LABELS_COST_RATE_PREFIX = "team_project_agent_labels:aispend_cost:rate"
"""Followed by a burn window: spend per second by the cost series' own team, project and
agent labels (project "" = the series without one), read once from the raw counters and
summed into the budget scopes (REC_SCOPE_COST_RATE_PREFIX)."""
REC_BURN_PREFIX = "team_project_agent_period:aispend_budget_burn:ratio_rate"
"""Followed by a window: burn rate = spend rate / budget pace (1 = on budget)."""
REC_FORECAST_MONTH_END = _r(
    "team_project_agent:aispend_cost:forecast_month_end",
    _SCOPE,
    "Projected spend at the end of the UTC month: month to date + recent rate x time left.",
)
REC_BUDGET_EXHAUSTION = _r(
    "team_project_agent:aispend_budget:exhaustion_timestamp_seconds",
    _SCOPE,
    "When the monthly budget runs out at the recent rate (now if already spent).",
)
REC_ANOMALY_LEVELS = ("team_model", "team_agent")
"""Anomaly series exist per team and model, and per team and agent (RunawaySpend)."""
REC_ANOMALY_SUFFIXES = (
    "rate1h:prediction",
    "rate1h:stddev",
    "rate1h:avg",
    "zscore",
)
"""`<level>:aispend_cost:<suffix>`, each with the `baseline` label."""
REC_TEAM_MODEL_PREDICTION = _r(
    "team_model:aispend_cost:rate1h:prediction",
    (TEAM, MODEL, BASELINE),
    "Predicted spend per second: seasonal median of previous weeks (or days) plus trend.",
)
REC_TEAM_MODEL_ZSCORE = _r(
    "team_model:aispend_cost:zscore",
    (TEAM, MODEL, BASELINE),
    "(5m spend rate - prediction) / baseline stddev.",
)
REC_TEAM_AGENT_ZSCORE = _r(
    "team_agent:aispend_cost:zscore",
    (TEAM, AGENT, BASELINE),
    "(5m spend rate - prediction) / baseline stddev, per agent.",
)
REC_TEAM_AGENT_COST_RATE_RUNAWAY = _r(
    "team_agent:aispend_cost:rate2m",
    (TEAM, AGENT),
    "Spend per second per team and agent over 2 minutes (RunawaySpend's fast signal).",
)
REC_TEAM_AGENT_ZSCORE_RUNAWAY = _r(
    "team_agent:aispend_cost:zscore_rate2m",
    (TEAM, AGENT, BASELINE),
    "(2m spend rate - prediction) / baseline stddev, per agent (RunawaySpend).",
)
REC_TEAM_COST_1D = _r("team:aispend_cost:increase1d", (TEAM,), "Spend over the last 24h.")
REC_TEAM_COST_1D_WEEKS = _r(
    "team:aispend_cost:increase1d:median_weeks",
    (TEAM,),
    "Median of the same 24h window 1, 2 and 3 weeks ago.",
)
REC_TEAM_COST_RATE1H_WEEKS = _r(
    "team:aispend_cost:rate1h:max_weeks",
    (TEAM,),
    "Highest 1h spend rate at the same time 1, 2 and 3 weeks ago (once all three exist).",
)
REC_REQUEST_COST_QUANTILE = _r(
    "team_model:aispend_llm_request_cost:quantile_rate1h",
    (TEAM, MODEL),
    "Cost of one LLM request at the configured quantile (p95), 1h window.",
)
REC_REQUEST_COST_QUANTILE_1W = _r(
    "team_model:aispend_llm_request_cost:quantile_rate1h:avg_over_time_1w",
    (TEAM, MODEL),
    "Weekly mean of the hourly request-cost quantile, over the hours that had requests.",
)
REC_UNATTRIBUTED_RATIO = _r(
    ":aispend_cost_unattributed:ratio_rate1h",
    (),
    "Share of spend with no team (team unattributed, untagged or empty), 1h window.",
)
REC_ESTIMATE_BILL_DAY = _r(
    "team:aispend_cost:increase_bill_day",
    (TEAM,),
    "Real-time estimate (LLM + GPU) for the UTC day of the newest bill data.",
)
REC_BILL_LAST_DAY = _r(
    "team:aispend_cloud_cost:last_day",
    (TEAM,),
    "Billed cost of the newest complete day, of the services the real-time estimate covers"
    " (rules tunable reconcile_bill_selectors; default: AI and Machine Learning).",
)
REC_ESTIMATE_VS_BILL = _r(
    "team:aispend_estimate_vs_bill:ratio1d",
    (TEAM,),
    "Real-time estimate / bill for the newest billed day (1 = they agree).",
)
RECORDED_SERIES: tuple[RecordedSeries, ...] = tuple(
    v for k, v in tuple(globals().items()) if k.startswith("REC_") and isinstance(v, RecordedSeries)
)
"""The recorded series with fixed names (burn and scope rates: see the prefixes)."""
