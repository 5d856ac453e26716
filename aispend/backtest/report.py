"""Backtest output: a readable table per team, or one JSON object (`--json`)."""

from __future__ import annotations

import json
from typing import Any

from aispend.backtest.engine import Result
from aispend.backtest.history import format_timestamp
from aispend.backtest.scoring import Episode


def _ts(value: int | None) -> str | None:
    return None if value is None else format_timestamp(value)


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"


def alert_json(e: Episode) -> dict[str, Any]:
    return {
        "alertname": e.alertname,
        "team": e.team,
        "fired_at": _ts(e.fired_at),
        "resolved_at": _ts(e.resolved_at),
        "labels": dict(e.labels),
    }


def to_json(result: Result) -> dict[str, Any]:
    return {
        "from": _ts(result.start),
        "to": _ts(result.end),
        "teams": result.teams,
        "label_key": result.label_key,
        "alerts": [alert_json(e) for e in result.alerts],
        "score": result.score.to_json() if result.score else None,
        "incidents": [
            {
                "team": d.team,
                "start": _ts(d.window.start),
                "end": _ts(d.window.end),
                "caught": d.delay_seconds is not None,
                "delay_seconds": d.delay_seconds,
            }
            for d in result.detections
        ],
        "timings": result.timings,
    }


def render_json(result: Result) -> str:
    return json.dumps(to_json(result), indent=2, sort_keys=False)


def render_table(result: Result) -> str:
    lines = [f"Backtest {_ts(result.start)} .. {_ts(result.end)}, teams: {len(result.teams)}"]
    if not result.alerts:
        lines.append("No alert would have fired.")
    rows = [("TEAM", "ALERT", "SEVERITY", "FIRED", "RESOLVED", "FOR")]
    for e in result.alerts:
        until = e.resolved_at if e.resolved_at is not None else result.end
        rows.append(
            (
                e.team or "-",
                e.alertname,
                dict(e.labels).get("severity", "-"),
                _ts(e.fired_at) or "",
                _ts(e.resolved_at) or "(still firing)",
                _duration(until - e.fired_at),
            )
        )
    if result.alerts:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if result.score is not None:
        s = result.score
        lines += [
            "",
            f"Score (labels entry {result.label_key!r}; warning and critical team alerts):",
            f"  incidents caught  {s.caught}/{s.incidents}  recall {_fmt(s.recall)}",
            f"  alert episodes    {s.alert_episodes}  false alarms {s.false_alarms}"
            f"  precision {_fmt(s.precision)}  false alarms/week {s.false_alarms_per_week}",
            f"  detection delay   median {_secs(s.delay_median_seconds)}"
            f"  p90 {_secs(s.delay_p90_seconds)}",
        ]
        for d in result.detections:
            how = "missed" if d.delay_seconds is None else f"caught after {_secs(d.delay_seconds)}"
            lines.append(f"  {d.team}  {d.window}  {how}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _secs(value: float | None) -> str:
    return "n/a" if value is None else _duration(int(value)) if value >= 60 else f"{value:.0f}s"
