"""Tunables of the rules: thresholds, windows, burn factors, guards (data, not literals).

`Tunables()` holds the defaults the committed rule files are generated from;
`load_tunables(path)` reads overrides from a YAML file (unknown keys are errors).
Money amounts are in the reporting currency; rates given per hour here are
rendered per second, the unit of every recorded `:rate*` series.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator

from aispend import metrics as m
from aispend.configbase import StrictModel
from aispend.gpu_prices import DEFAULT_GPU_HOURLY_PRICES
from aispend.parsing import load_yaml, validation_message
from aispend.rules.promql import seconds

Severity = Literal["critical", "warning", "info"]


def _duration(value: str) -> str:
    if seconds(value) <= 0:  # ValueError names a string that is not a duration
        raise ValueError(f"{value!r} must be longer than 0s")
    return value


Duration = Annotated[str, AfterValidator(_duration)]
"""A Prometheus duration (30s, 5m, 1h30m): checked here, not when promtool reads the rules."""
HourlyPrice = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]


class BurnWindow(StrictModel):
    """One multiwindow burn-rate condition: burn > factor over both windows."""

    severity: Literal["critical", "warning"]
    factor: float = Field(gt=0)
    long: Duration
    short: Duration


# Google SRE workbook, chapter "Alerting on SLOs", for a 30-day period.
MONTH_BURN = (
    BurnWindow(severity="critical", factor=14.4, long="1h", short="5m"),
    BurnWindow(severity="critical", factor=6, long="6h", short="30m"),
    BurnWindow(severity="warning", factor=3, long="1d", short="2h"),
    BurnWindow(severity="warning", factor=1, long="3d", short="6h"),
)
# Day budgets: the month windows divided by 6 (not by 30, which would give 2-minute
# long windows, all noise at a 15s scrape), short windows at least 5m. A page then
# means 10 % of the day's budget went in 10 minutes (14.4x) or 25 % in an hour (6x).
DAY_BURN = (
    BurnWindow(severity="critical", factor=14.4, long="10m", short="5m"),
    BurnWindow(severity="critical", factor=6, long="1h", short="5m"),
    BurnWindow(severity="warning", factor=3, long="4h", short="20m"),
    BurnWindow(severity="warning", factor=1, long="12h", short="1h"),
)


class Tunables(StrictModel):
    # --- anomalies (z-score against a seasonal prediction)
    # Chosen on the labelled spend traces (docs/benchmarks.md, "Detection tuning"): at
    # 3 sigma / 15m the z-score alone raised ~3 false alarms per team per 30 days.
    anomaly_sigma: float = Field(default=5.0, gt=0)
    anomaly_for: Duration = "30m"
    min_hourly_spend: float = Field(default=1.0, ge=0)
    """Sparse-series guard: no z-score alert while the series spends less (per hour)."""
    max_cv: float = Field(default=1.0, gt=0)
    """Normality guard: no SpendAnomaly or TeamRunaway where stddev / mean of the baseline
    exceeds this."""
    min_stddev_ratio: float = Field(default=0.1, gt=0)
    """The z-score denominator is at least this share of the prediction."""
    zscore_opt_out: list[dict[str, str]] = [{"team": "research"}]
    """Label sets (team, model) whose SpendAnomaly is off; research bursts by design."""
    anomaly_baselines: tuple[Literal["1w", "1d", "6h"], ...] = ("1w", "1d", "6h")
    """Baselines whose z-score may raise SpendAnomaly. The 6h cold-start baseline (mean
    and stddev of the last hours) knows no daily rhythm; the runaway alerts use every
    baseline regardless."""
    # --- runaway agent
    runaway_sigma: float = Field(default=6.0, gt=0)
    runaway_burn_factor: float = Field(default=1.0, gt=0)
    """The agent alone burns its team's tightest budget at least this fast."""
    runaway_rate_window: Duration = "2m"
    """RunawaySpend reads the agent's spend rate over this window: short, so a loop is
    caught in about a minute (8 samples at a 15s scrape; the burn guard keeps noise out)."""
    runaway_for: Duration = "30s"
    team_runaway_sigma: float = Field(default=10.0, gt=0)
    """Higher than runaway_sigma: a team's 5m rate is noisier than an agent's loop."""
    team_runaway_burn_factor: float = Field(default=2.0, gt=0)
    team_runaway_for: Duration = "2m"
    """TeamRunaway (team and model 5m z-score over team_runaway_sigma, and the team's
    spend on that model alone burns team_runaway_burn_factor x the team's tightest budget
    pace): for spend without an agent label, which RunawaySpend cannot see."""
    # --- slow leaks: each hour's spend vs the same hour of the same weekday before
    leak_ratio: float = Field(default=1.5, gt=1)
    """Below the smallest leak in the labelled spend traces (2x)."""
    min_daily_spend: float = Field(default=24.0, ge=0)
    leak_for: Duration = "3h"
    # --- budgets
    month_burn: tuple[BurnWindow, ...] = MONTH_BURN
    day_burn: tuple[BurnWindow, ...] = DAY_BURN
    burn_fast_for: Duration = "2m"
    burn_slow_for: Duration = "15m"
    budget_exceeded_for: Duration = "1m"
    forecast_rate_window: Duration = "7d"
    """Month-end forecast: month so far + this rate x time left. A whole number of weeks
    weighs every weekday alike (1d swings with the weekly rhythm: MAPE 12 % against 6 %
    on the spend traces)."""
    forecast_for: Duration = "1h"
    # --- GPUs
    gpu_idle_threshold: float = Field(default=0.05, gt=0, lt=1)
    gpu_idle_for: Duration = "30m"
    gpu_hourly_prices: dict[str, HourlyPrice] = Field(
        default_factory=lambda: dict(DEFAULT_GPU_HOURLY_PRICES)
    )
    """Hourly price by GPU model for dcgm-exporter GPUs, in the reporting currency; by
    default the same table the gpu exporter falls back to (aispend/gpu_prices.py, US
    dollars: with another currency, set these in a tunables file), so one GPU costs the
    same whichever exporter reports it. A model missing here gets no cost series;
    AISpendGPUUnpriced names it."""
    gpu_unpriced_for: Duration = "15m"
    gpu_lost_for: Duration = "15m"
    """How long NVML must keep failing to identify a GPU before AISpendGPULost fires: a
    transient error is gone from the 5m error rate well before."""
    # --- requests, attribution, data
    cost_per_request_quantile: float = Field(default=0.95, gt=0, lt=1)
    cost_per_request_factor: float = Field(default=2.0, gt=1)
    cost_per_request_for: Duration = "30m"
    unattributed_max_ratio: float = Field(default=0.1, gt=0, lt=1)
    unattributed_for: Duration = "1h"
    billing_read_max_age: Duration = "6h"
    billing_data_max_age: Duration = "3d"
    billing_stale_for: Duration = "30m"
    exporter_down_for: Duration = "5m"
    actuator_failing_for: Duration = "5m"
    rules_failing_for: Duration = "10m"
    notifications_failing_for: Duration = "10m"
    reconcile_max_diff: float = Field(default=0.05, gt=0, lt=1)
    reconcile_for: Duration = "1h"
    reconcile_bill_selectors: list[dict[str, str]] = Field(
        default=[{m.SERVICE_CATEGORY: "AI and Machine Learning"}], min_length=1
    )
    """The billed services the real-time estimate covers: label sets of
    `aispend_cloud_cost_last_day` (exact values; a bill series counts when it has all the
    labels of one set). The estimate vs bill ratio divides by these only, not by the
    team's whole cloud bill (storage, network, databases). Default: FOCUS ServiceCategory
    "AI and Machine Learning", which holds the LLM services (Azure OpenAI, Bedrock,
    Vertex AI) on every cloud; the billing exporter gives Azure services the FOCUS
    categories (`service_categories`). It also holds services no estimate meters (AI
    Search, Speech): list the LLM services by `service` instead where those weigh. GPUs
    on cloud VMs are billed as Compute with every other VM, which the bill's labels
    cannot tell apart: add the set that holds them, e.g. `{service: Virtual Machines,
    account: gpu-prod}`, or a project tag."""
    # --- links
    runbook_url: str = "https://github.com/aispend/aispend/blob/main/docs/runbooks.md"
    dashboard_url: str = "http://localhost:3000/d"

    @field_validator("zscore_opt_out")
    @classmethod
    def _opt_out_labels(cls, value: list[dict[str, str]]) -> list[dict[str, str]]:
        for entry in value:
            other = sorted(set(entry) - {m.TEAM, m.MODEL})
            if not entry or other:
                raise ValueError(
                    f"each label set has labels {m.TEAM} and/or {m.MODEL}, not"
                    f" {', '.join(other) or 'none'}"
                )
        return value

    @field_validator("reconcile_bill_selectors")
    @classmethod
    def _bill_labels(cls, value: list[dict[str, str]]) -> list[dict[str, str]]:
        for selector in value:
            unknown = sorted(set(selector) - set(m.CLOUD_COST_LABELS))
            if not selector or unknown:
                raise ValueError(
                    f"each label set needs labels of {m.CLOUD_COST_LAST_DAY.name}"
                    f" ({', '.join(m.CLOUD_COST_LABELS)})"
                    + (f", not {', '.join(unknown)}" if unknown else "")
                )
        return value


def load_tunables(path: Path | None) -> Tunables:
    """Defaults, or the defaults overridden by the YAML mapping in `path`."""
    if path is None:
        return Tunables()
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TunablesError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise TunablesError(f"{path}: must be a mapping of tunable names to values")
    try:
        return Tunables.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {validation_message(e)}" for e in exc.errors()
        )
        raise TunablesError(f"{path}: {problems}") from exc


class TunablesError(Exception):
    """The tunables file cannot be used; the message names the field."""
