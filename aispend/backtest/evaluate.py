"""Alert episodes from `query_range` of each alert expression, honouring `for:`.

Prometheus evaluates an alert every group interval: a series that appears in the result
starts *pending*; it *fires* at the first evaluation at least `for` after it appeared,
if it never left the result meanwhile, and *resolves* at the first evaluation where it is
gone. Evaluating the expression with `query_range` at the same step reproduces exactly
that, over any stretch of history. Ranges are queried in chunks (Prometheus answers at
most 11,000 points per series).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aispend import metrics
from aispend.backtest.rulefiles import AlertRule
from aispend.backtest.scoring import Episode
from aispend.backtest.tsdb import TempPrometheus, eval_times

CHUNK_STEPS = 1440


def query_range(
    prom: TempPrometheus, expr: str, start: int, end: int, step: int
) -> dict[tuple[tuple[str, str], ...], list[int]]:
    """Labels -> sorted timestamps at which `expr` returned a (non-NaN) value."""
    out: dict[tuple[tuple[str, str], ...], list[int]] = {}
    t = start
    while t <= end:
        stop = min(end, t + (CHUNK_STEPS - 1) * step)
        data = prom.api(
            "query_range", {"query": expr, "start": str(t), "end": str(stop), "step": str(step)}
        )
        for series in data["result"]:
            key = tuple(sorted(series["metric"].items()))
            out.setdefault(key, []).extend(
                int(float(ts)) for ts, value in series["values"] if value != "NaN"
            )
        t = stop + step
    return out


def episodes_from_steps(times: Sequence[int], step: int, for_seconds: int) -> list[tuple[int, int]]:
    """(fired_at, resolved_at) from the evaluation times at which a series was active.

    resolved_at is the first evaluation after a run; the caller treats one past the
    last evaluation as still firing.
    """
    out: list[tuple[int, int]] = []
    runs: list[tuple[int, int]] = []
    for ts in times:
        if runs and ts - runs[-1][1] <= step:
            runs[-1] = (runs[-1][0], ts)
        else:
            runs.append((ts, ts))
    for first, last in runs:
        fired = first + -(-for_seconds // step) * step  # first evaluation >= first + for
        if fired <= last:
            out.append((fired, last + step))
    return out


def alert_episodes(
    prom: TempPrometheus, rules: Iterable[AlertRule], start: int, end: int, min_step: int
) -> list[Episode]:
    """Every episode of every alert rule between `start` and `end`. Each rule is also
    evaluated over its `for:` before `start` (history the TSDB may hold: `--from` inside
    it), so an alert already pending or firing then fires when it would have; one firing
    at `start` is reported from `start`."""
    found: list[Episode] = []
    for rule in rules:
        step = max(rule.interval, min_step)
        first_in_range, last_eval = eval_times(start, end, step)
        first, _ = eval_times(start - rule.for_seconds, end, step)
        for labels, times in query_range(prom, rule.expr, first, last_eval, step).items():
            merged: dict[str, Any] = dict(labels)
            merged.pop("__name__", None)
            merged.update(rule.labels)
            merged["alertname"] = rule.alert
            ordered = tuple(sorted(merged.items()))
            for fired, resolved in episodes_from_steps(times, step, rule.for_seconds):
                if resolved <= first_in_range:
                    continue  # over before the range
                found.append(
                    Episode(
                        rule.alert,
                        str(merged.get(metrics.TEAM, "")),
                        max(fired, first_in_range),
                        None if resolved > last_eval else resolved,
                        ordered,
                    )
                )
    return sorted(found, key=lambda e: (e.team, e.fired_at, e.alertname, e.labels))
