"""Panels that other parts cite by title (the runbooks): each title is spelled once, here.

The dashboard sources (dashboards/*.dashboard.py) title those panels with these
constants and the runbooks name them with `cite()`, so renaming a panel renames its
citations; tests/dashboards checks that every ref names a panel of its dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass

from aispend.dashboards.defaults import TITLES


@dataclass(frozen=True)
class PanelRef:
    stem: str
    """The dashboard's file stem (a key of `defaults.UIDS` and `defaults.TITLES`)."""
    title: str


def cite(*refs: PanelRef) -> str:
    """'dashboard "aispend / X", panels "A", "B" and "C"' (refs of one dashboard)."""
    stems = {ref.stem for ref in refs}
    if len(stems) != 1:
        raise ValueError(f"cite() takes panels of one dashboard, got {sorted(stems)}")
    titles = [f'"{ref.title}"' for ref in refs]
    listed = titles[0] if len(titles) == 1 else f"{', '.join(titles[:-1])} and {titles[-1]}"
    return f'dashboard "{TITLES[refs[0].stem]}", panel{"s" if len(refs) > 1 else ""} {listed}'


OVERVIEW = "overview"
SPEND_BY_TEAM = PanelRef(OVERVIEW, "Spend per hour, by team")
SPEND_BY_SOURCE = PanelRef(OVERVIEW, "Spend by source (time range)")

TEAM_SHOWBACK = "team-showback"
TEAM_MONTH_BUDGET_USED = PanelRef(TEAM_SHOWBACK, "Month budget used")
TEAM_DAY_BUDGET_USED = PanelRef(TEAM_SHOWBACK, "Day budget used")
TEAM_SPEND_BY_AGENT = PanelRef(TEAM_SHOWBACK, "Spend per hour, by agent")
TEAM_BILL_BY_CATEGORY = PanelRef(TEAM_SHOWBACK, "Billed this month, by service category")
TEAM_ESTIMATE_VS_BILL = PanelRef(TEAM_SHOWBACK, "Estimate vs bill, newest billed day")

LLM = "llm-token-economics"
TOKENS_BY_MODEL_AND_TYPE = PanelRef(LLM, "Tokens per second, by model and type")
REQUESTS_BY_MODEL_AND_STATUS = PanelRef(LLM, "Requests per second, by model and status")
REQUEST_COST_QUANTILES = PanelRef(LLM, "Request cost p50 / p95 / p99")
CACHE_READ_SHARE = PanelRef(LLM, "Cache-read share of input tokens, by model")

GPU = "gpu-fleet"
UTILISATION_PER_GPU = PanelRef(GPU, "Utilisation per GPU")
MEMORY_PER_GPU = PanelRef(GPU, "Memory used, per GPU")
NVML_ERRORS = PanelRef(GPU, "NVML errors per second, by host and call")


def idle_gpus(threshold: float, window: str) -> PanelRef:
    """The idle-GPU table, titled with the idle tunables (gpu_idle_threshold, gpu_idle_for)."""
    return PanelRef(GPU, f"Idle GPUs (mean utilisation < {threshold:.0%} over {window})")


ANOMALIES = "anomalies-budgets"
SPEND_VS_PREDICTION = PanelRef(ANOMALIES, "Spend vs seasonal prediction (per team)")
ZSCORE_BY_TEAM_AND_MODEL = PanelRef(ANOMALIES, "Z-score, by team and model")

STACK_HEALTH = "stack-health"
REQUESTS_WITHOUT_USAGE = PanelRef(STACK_HEALTH, "Requests without usage, by reason")
RULE_EVALUATION_FAILURES = PanelRef(STACK_HEALTH, "Rule evaluation failures")
RULE_GROUP_EVALUATION_TIME = PanelRef(STACK_HEALTH, "Rule group evaluation time")
ALERTMANAGER_NOTIFICATIONS = PanelRef(STACK_HEALTH, "Alertmanager notifications")

ALL: tuple[PanelRef, ...] = tuple(v for v in tuple(globals().values()) if isinstance(v, PanelRef))
"""Every constant ref, in definition order (idle_gpus() is built from the tunables)."""
