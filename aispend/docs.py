"""`aispend docs generate`: writes docs/metrics.md from aispend/metrics.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aispend import metrics
from aispend.files import write_atomically

HEADER = """<!-- DO NOT EDIT: generated from aispend/metrics.py by `aispend docs generate`. -->
# Metrics reference

Every metric aispend exposes. Money is in the reporting currency set in aispend.yaml
(`currency`, default USD), shown by `aispend_info{currency}`. Counters end in `_total`;
ratios are 0..1; times are seconds. GPU labels mirror dcgm-exporter; LLM token
histograms follow the OpenTelemetry GenAI conventions.
"""

COMPONENT_TITLES = {
    "common": "Shared by several processes",
    "budgets": "Budgets exporter (`aispend exporter budgets`)",
    "gateway": "Gateway and tokens exporter (LLM spend)",
    "gpu": "GPU exporter (`aispend exporter gpu`)",
    "billing": "Billing exporter (`aispend exporter billing`)",
    "actuator": "Actuator (`aispend actuator`)",
}


PROCESSES = {
    "gateway": "`aispend gateway`",
    "budgets": "`aispend exporter budgets`",
    "gpu": "`aispend exporter gpu`",
    "tokens": "`aispend exporter tokens`",
    "billing": "`aispend exporter billing`",
    "actuator": "`aispend actuator`",
}
_EXPORTERS = ("budgets", "gpu", "tokens", "billing")
_READERS = ("gpu", "tokens", "billing")
_SLOW_READERS = ("tokens", "billing")
_CONFIG_WATCHERS = ("gateway", "budgets", "gpu")
EXPOSED_BY: dict[metrics.MetricSpec, tuple[str, ...]] = {
    metrics.INFO: ("gateway", *_EXPORTERS),
    metrics.EXPORTER_UP: _EXPORTERS,
    metrics.SOURCE_LAST_SUCCESS: _READERS,
    metrics.SOURCE_CACHE_AGE: _SLOW_READERS,
    metrics.SOURCE_THROTTLED: _SLOW_READERS,
    metrics.CONFIG_RELOAD_SUCCESS: _CONFIG_WATCHERS,
    metrics.CONFIG_RELOAD_TIMESTAMP: _CONFIG_WATCHERS,
}
"""Which processes (keys of PROCESSES) expose each shared metric; tests/foundation
checks it against the real expositions."""

COMMON_NOTE = (
    "The actuator exposes none of these (only its own metrics, below). The GPU exporter "
    "exposes the config-reload pair only when it runs with a config file (it watches none "
    "when started without `--config`, `$AISPEND_CONFIG` or `./aispend.yaml`)."
)

BILLING_NOTE = (
    "Each cost is booked on the UTC day its charge period starts, except that a FOCUS row "
    "charged before its billing period (a correction or refund of an earlier month, or "
    "late usage) counts in the billing period that invoices it, on that period's first "
    "day: the month to date is that invoice's so far (`aispend focus summarize --by "
    "BillingPeriodStart`). The data timestamp is "
    "the end of the newest FOCUS charge period of a day or less (a month's tax or fee ends "
    "with the month, however far the export reaches), else the end of the newest day "
    "(always so for Azure Cost Management, which reports days); a day is complete once "
    "the data timestamp has passed its end. FOCUS: month to date is of the month the data "
    "has reached (the day holding the data timestamp); a row billed next month waits for "
    "that month. Azure Cost Management: of the calendar month of the read, so 0 on the "
    "1st until Azure's data (about a day behind) reaches it."
)
GATEWAY_NOTE = (
    "Beside each of the gateway's counters, prometheus_client exposes `<name>_created`: "
    "when each series was created. The tokens exporter exposes `aispend_llm_cost_created` "
    "too (kept in its state file). The spend-to-date rules read `aispend_llm_cost_created`, "
    "and the dashboards' figures over the time range (chargeback, spend by model, actuator "
    "actions) the `_created` series of their counters, to count a new series' first value, "
    "which `increase()` alone never counts (the tokens exporter's token counter has no "
    "`_created`: plain `increase()`)."
)

SECTION_NOTES = {"common": COMMON_NOTE, "billing": BILLING_NOTE, "gateway": GATEWAY_NOTE}


def render_metrics_md() -> str:
    out = [HEADER]
    components = list(dict.fromkeys(m.component for m in metrics.ALL_METRICS))
    for component in components:
        out.append(f"\n## {COMPONENT_TITLES.get(component, component)}\n")
        shared = component == "common"
        if component in SECTION_NOTES:
            out.append(SECTION_NOTES[component] + "\n")
        out.append(
            "| metric | type | unit | labels | meaning |" + (" exposed by |" if shared else "")
        )
        out.append("| --- | --- | --- | --- | --- |" + (" --- |" if shared else ""))
        for m in metrics.ALL_METRICS:
            if m.component != component:
                continue
            unit = "money" if m.unit == metrics.MONEY else (m.unit or "-")
            labels = ", ".join(f"`{label}`" for label in m.labels) or "-"
            row = f"| `{m.name}` | {m.type} | {unit} | {labels} | {m.full_help} |"
            if shared:
                row += " " + ", ".join(PROCESSES[p] for p in EXPOSED_BY[m]) + " |"
            out.append(row)
    return "\n".join(out) + "\n"


def generate(root: Path) -> list[Path]:
    path = root / "docs" / "metrics.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, render_metrics_md())
    return [path]


def add_parser(sub: Any) -> None:
    docs = sub.add_parser("docs", help="generate reference docs")
    docs_sub = docs.add_subparsers(dest="docs_command", metavar="ACTION", required=True)
    gen = docs_sub.add_parser("generate", help="write docs/metrics.md")
    gen.add_argument("--root", default=".", help="repository root (default: .)")
    gen.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    for path in generate(Path(args.root)):
        print(f"wrote {path}")
    return 0
