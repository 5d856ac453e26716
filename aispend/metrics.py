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
    "Requests for a model with no known price (counted at cost 0).",
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
    "GPU memory used by one process.",
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
    "Billed cloud cost for the current month so far.",
    CLOUD_COST_LABELS,
    "billing",
)
CLOUD_COST_LAST_DAY = _m(
    "aispend_cloud_cost_last_day",
    "gauge",
    MONEY,
    "Billed cloud cost for the newest complete day in the data.",
    CLOUD_COST_LABELS,
    "billing",
)
CLOUD_COST_DATA_TIMESTAMP = _m(
    "aispend_cloud_cost_data_timestamp_seconds",
    "gauge",
    "seconds",
    "Unix time of the end of the newest charge period covered by the bill data.",
    (SOURCE,),
    "billing",
)
RESOURCE = "resource"
CLOUD_RESOURCE_COST_MONTH_TO_DATE = _m(
    "aispend_cloud_resource_cost_month_to_date",
    "gauge",
    MONEY,
    "Billed cloud cost of one resource this month so far (only when configured; the"
    " costliest N resources, the rest summed under resource=\"other\").",
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
    "Actions applied and not yet undone.",
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
