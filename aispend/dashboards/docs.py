"""Render docs/dashboards.md: per dashboard, each panel's title, description and query.

Reviewers cannot see Grafana here, so this is how they read what each panel shows.
Panels marked alert-only (empty while nothing fires) are listed once more at the end.
"""

from __future__ import annotations

from typing import Any

from aispend.dashboards.defaults import ALERT_ONLY
from aispend.dashboards.generate import Generated

HEADER = """\
<!-- DO NOT EDIT: generated from dashboards/*.dashboard.py by `aispend dashboards generate`.
-->
# Dashboards

Six Grafana dashboards, generated with grafanalib from `dashboards/*.dashboard.py` into
`dashboards/*.json` and provisioned read-only from `deploy/grafana/`. Money is in the
reporting currency; rates are shown per hour. `$team`, `$project` and `$model` are the
dashboard variables (`${team:regex}`: the value regex-escaped by Grafana);
`$__interval` (a graph's step), `$__rate_interval` and `$__range` are Grafana's.
"""


def panels(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-row panel, in layout order (rows' nested panels included)."""
    out = []
    for panel in data.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def is_alert_only(panel: dict[str, Any]) -> bool:
    return ALERT_ONLY in (panel.get("description") or "")


def _panel_md(panel: dict[str, Any]) -> list[str]:
    description = (panel.get("description") or "").replace(ALERT_ONLY, "").strip()
    flag = " *(alert-only)*" if is_alert_only(panel) else ""
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    lines = [f"### {panel['title']}{flag}", "", f"{description}", ""]
    lines.append(f"`{panel['type']}` panel, unit `{unit}`"
                 + (f", time range `{panel['timeFrom']}`" if panel.get("timeFrom") else "")
                 + ".")  # fmt: skip
    lines.append("")
    for target in panel.get("targets", []):
        legend = target.get("legendFormat") or ""
        lines.append(f"Query {target['refId']}" + (f" (`{legend}`)" if legend else "") + ":")
        lines.append("")
        lines.append("```promql")
        lines.append(target["expr"])
        lines.append("```")
        lines.append("")
    return lines


def _code(text: str) -> str:
    """Inline code, with a longer fence around text that has a backtick (CommonMark)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _variables_md(data: dict[str, Any]) -> list[str]:
    """One line per query variable: where its values come from."""
    lines = [
        f"- `${v['name']}`: {_code(v['query'])}"
        + (", one value" if not v.get("multi") else ", any number of values or All")
        for v in data.get("templating", {}).get("list", [])
        if v.get("type") == "query"
    ]
    return ["Variables:", "", *lines, ""] if lines else []


def render(generated: list[Generated]) -> str:
    out = [HEADER]
    out.append("| dashboard | uid | file | panels |")
    out.append("| --- | --- | --- | --- |")
    for item in generated:
        out.append(
            f"| {item.data['title']} | `{item.data['uid']}` | `dashboards/{item.stem}.json` "
            f"| {len(panels(item.data))} |"
        )
    alert_only: list[str] = []
    for item in generated:
        out.append("")
        out.append(f"## {item.data['title']}")
        out.append("")
        out.append(item.data.get("description", ""))
        out.append("")
        out.extend(_variables_md(item.data))
        for panel in panels(item.data):
            out.extend(_panel_md(panel))
            if is_alert_only(panel):
                alert_only.append(f"- {item.data['title']}: {panel['title']}")
    out.append("## Alert-only panels")
    out.append("")
    out.append(
        "These panels are empty while nothing is firing, throttled or acted on; empty is the"
        " good state. Every other panel shows data in the demo (tests/dashboards checks it)."
    )
    out.append("")
    out.extend(alert_only)
    return "\n".join(out).rstrip("\n") + "\n"
