"""PromQL building blocks shared by the rule modules.

The central one is `spend()`: AI spend from every source in one expression, LLM token
cost (gateway, tokens exporter) plus GPU cost (aispend's gpu exporter, or dcgm-exporter
GPUs priced by the rules), so a team with only one of them still gets a series. It
reads the raw counters, so backfilled raw history counts at once where a rule reads it
over a short window. Rules reading weeks or a month read recorded series at whole hours
instead: spend to date and the forecast rate sum a recorded hourly increase
(`since_start`), the anomaly baselines' weekly and daily means a recorded hourly rate.
Reading weeks of raw counters at every evaluation does not scale (docs/benchmarks.md,
"Rules at scale"); `aispend rules backfill` records those series over past hours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from aispend import metrics as m

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"(\d+)([smhdw])")

NOW = "max_over_time(vector(time())[1s:1s] @ end())"
"""The evaluation time, usable inside a subquery (where `time()` is the step's time)."""


def seconds(duration: str) -> int:
    """'1h30m' -> 5400."""
    parts = _DURATION_RE.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def duration(total: int) -> str:
    """5400 -> '1h30m' (largest units first; weeks, days, hours, minutes, seconds)."""
    if total <= 0:
        raise ValueError("duration must be positive")
    out = ""
    for unit in ("w", "d", "h", "m", "s"):
        n, total = divmod(total, _UNITS[unit])
        if n:
            out += f"{n}{unit}"
    return out


def num(value: float) -> str:
    """A number as PromQL / YAML text, without float noise (0.1 * 3 -> 0.3)."""
    text = f"{value:.12g}"
    return text


def string(value: str) -> str:
    """A PromQL string literal."""
    return json.dumps(value)


def set_label(expr: str, label: str, value: str) -> str:
    """`expr` with `label` set to the constant `value`."""
    return f"label_replace({expr}, {string(label)}, {string(value.replace('$', '$$'))}, '', '')"


def selector(name: str, matchers: Sequence[str] = ()) -> str:
    return f"{name}{{{', '.join(matchers)}}}" if matchers else name


def _window(sel: str, window: str, offset: str | None) -> str:
    return f"{sel}[{window}]" + (f" offset {offset}" if offset else "")


def spend(
    fn: str,
    window: str,
    by: Sequence[str],
    matchers: Sequence[str] = (),
    offset: str | None = None,
    first_values: bool = False,
) -> str:
    """Spend per second (`fn="rate"`) or in total (`fn="increase"`) over `window`, summed
    by `by`. GPU series get `model` = GPU model name and `source` = gpu | dcgm; they have
    no `agent`, so a matcher on agent leaves them out, as it should. `first_values`:
    LLM increases count a new series' first value (`counter_increase`); it costs about
    twice the evaluation, so only spend to date and the bill-day estimate use it, not
    baselines and rates over days, where one request's value is noise."""
    if fn == "increase" and first_values:
        llm = counter_increase(m.LLM_COST, matchers, window, offset)
    else:
        llm = f"{fn}({_window(selector(m.LLM_COST.name, matchers), window, offset)})"
    gpu = f"{fn}({_window(selector(m.GPU_COST.name, matchers), window, offset)})"
    dcgm_sel = selector(m.REC_GPU_COST_RATE.name, [f'{m.SOURCE}="dcgm"', *matchers])
    if window == "5m" and fn == "rate" and not offset:
        dcgm = dcgm_sel
    elif fn in ("rate", "increase"):
        dcgm = integral(dcgm_sel, window, offset)
        if fn == "rate":
            dcgm = f"{dcgm} / {seconds(window)}"
    else:
        dcgm = f"avg_over_time({_window(dcgm_sel, window, offset)})"
    if m.SOURCE in by:
        gpu = set_label(gpu, m.SOURCE, "gpu")
    if m.MODEL in by:
        gpu = f'label_replace({gpu}, "{m.MODEL}", "$1", "{m.GPU_MODEL_NAME}", "(.+)")'
        dcgm = f'label_replace({dcgm}, "{m.MODEL}", "$1", "{m.GPU_MODEL_NAME}", "(.+)")'
    return f"sum by ({', '.join(by)}) ({llm} or {gpu} or {dcgm})"


LOOKBACK = 300
"""Prometheus's default lookback (5m): how long after its creation a series' first
sample may come and still be counted by `counter_increase`."""


def counter_increase(
    counter: m.MetricSpec,
    matchers: Sequence[str],
    window: str,
    offset: str | None = None,
    window_seconds: str | None = None,
) -> str:
    """`increase()` over `window`, plus the first value of a series created in it.

    increase() needs two samples, so it never counts a series' first one: the gateway
    creates a label set's counter at its first request, which the first scrape already
    shows, and that spend was lost (a new team's, agent's or model's first requests, and
    after a restart those of a label set idle since). A series new in the window counts
    its last value in the window instead, all of it spent there. New: its `_created`
    time lies in the window (not a counter whose scrapes failed for a while, which would
    count whole again), did not change in it (a restart in the window is left to
    increase()'s reset handling, which also counts what was spent before the restart),
    and it had no sample in the LOOKBACK before the window began (a range, not an instant
    lookup: a failed scrape's stale marker at the boundary hid the sample before it, and
    the next window counted the series as new again).

    A counter without `_created` series (the tokens exporter's token counter) gets plain
    increase(). `window_seconds`: the window's length as PromQL text where `window` is
    not a literal duration (Grafana's `$__range`, with `$__range_s`; no `offset`)."""
    sel = selector(counter.name, matchers)
    created = selector(counter.created_name, matchers)
    if window_seconds is None:
        shift = seconds(offset) if offset else 0
        since = str(seconds(window) + shift + LOOKBACK)
        before = duration(seconds(window) + shift)
    elif offset:
        raise ValueError("a window given in seconds takes no offset")
    else:
        since, before = f"({window_seconds} + {LOOKBACK})", window
    new = (
        f"((last_over_time({_window(sel, window, offset)})"
        f" and (last_over_time({_window(created, window, offset)}) > (time() - {since}))"
        f" and (changes({_window(created, window, offset)}) == 0))"
        f" unless count_over_time({sel}[{duration(LOOKBACK)}] offset {before}))"
    )
    return f"((increase({_window(sel, window, offset)}) unless {new}) or {new})"


RECORDED_SLACK = "1d"
"""`recorded_since` accepts a recorded sample this long before the time it checks."""


def recorded_since(recorded: str, ago: int) -> str:
    """The series of `recorded` with a sample at a whole hour in the day before `ago`
    seconds ago: their recorded history began before then (after an install over
    existing raw history it starts only when Prometheus loaded the rules). A day, not an
    hour: a gap of under a day (a Prometheus outage, missing data) must not switch a rule
    reading the recorded series over `ago` to its short-history form a day or a week
    later. Whole hours, as `aispend rules backfill` records them: 24 lookups per series,
    not a day of samples."""
    return f"present_over_time({recorded}[{RECORDED_SLACK}:1h] offset {duration(ago)})"


def steps(window: str, step: str, offset: str | None = None) -> str:
    """A subquery range over `window` at `step` (shifted back by `offset`) with window /
    step steps, for a sum over them, at any phase a rule group runs at.

    Prometheus 2.x takes both ends of a subquery's range, so `[1h:1m]` evaluated at a
    whole minute (promtool; Grafana at a range's end rounded to the minute) had 61 steps
    and counted 61 minutes an hour; a range a second short has 59 when a group runs 59 s
    or more past a minute. Shifted back 1ms, it has one too many only for an evaluation
    exactly 1ms past a step (Prometheus 3's ranges, open at the start: never)."""
    shift = f"{duration(seconds(offset))}1ms" if offset else "1ms"
    return f"[{window}:{step}] offset {shift}"


INTEGRAL_MAX_STEPS = 360


def integral(rate: str, window: str, offset: str | None = None) -> str:
    """The integral of a recorded per-second rate over `window`: its value at subquery
    steps of 1m or more (at most INTEGRAL_MAX_STEPS of them, `steps`), times the step. A series
    present for part of the window counts for that part only; `avg_over_time * window`
    would charge a GPU that ran for 1 hour of a day for the whole day."""
    step = 60 * max(1, -(-seconds(window) // (60 * INTEGRAL_MAX_STEPS)))
    return f"sum_over_time({rate}{steps(window, duration(step), offset)}) * {step}"


def covered(by: Sequence[str], start: str, matchers: Sequence[str] = ()) -> str:
    """The `by` series that had a sample in the 5 minutes before `start` ago: a window
    that begins `start` ago lies wholly inside their history. `and` an offset term with
    it so that a window cut by the start of history (a new install, a backfill, a new
    team) does not count: its increase is only part of the period's."""
    return spend("present_over_time", "5m", by, matchers, offset=start)


SCOPES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((m.TEAM,), ()),
    ((m.TEAM, m.PROJECT), (f'{m.PROJECT}!=""',)),
    ((m.TEAM, m.AGENT), (f'{m.AGENT}!=""',)),
)
"""Budget scopes: (labels summed by, matchers). Team rows have no project or agent, so
all three join `aispend_budget` on (team, project, agent)."""


SCOPE_LABELS = (m.TEAM, m.PROJECT, m.AGENT)
"""The labels every budget scope is summed from."""


def scope_spend(fn: str, window: str, offset: str | None = None, first_values: bool = False) -> str:
    """`spend()` for every budget scope, as one vector."""
    return " or ".join(
        spend(fn, window, by, matchers, offset, first_values) for by, matchers in SCOPES
    )


def scope_rollup(parts: str) -> str:
    """Every budget scope's sum of the recorded series `parts` (summed by SCOPE_LABELS):
    `scope_spend`'s value, with the raw counters read once (for `parts`), not once per
    scope. A series with a project and an agent is in all three scopes."""
    return " or ".join(
        f"sum by ({', '.join(by)}) ({selector(parts, matchers)})" for by, matchers in SCOPES
    )


def bucket_sum(expr: str, condition: str, range_: str, step: str) -> str:
    """Sum of `expr` (an increase over `step`) at the subquery steps where `condition`
    (a one-element vector, true or empty) holds; the steps tile the range exactly."""
    return f"sum_over_time((({expr}) and on() ({condition}))[{range_}:{step}])"


def day_index(time_expr: str) -> str:
    """UTC day number of a time vector."""
    return f"floor(({time_expr}) / 86400)"


STEP_DAY = day_index("vector(time()) - 1")
"""UTC day of the bucket (s - step, s] that ends at the subquery step s."""
STEP_MONTH = "((year(vector(time() - 1)) - 2000) * 12 + month(vector(time() - 1)))"
NOW_DAY = day_index(NOW)
NOW_MONTH = f"((year({NOW}) - 2000) * 12 + month({NOW}))"
NOW_HOUR_START = f"(floor({NOW} / 3600) * 3600)"


def since_start(hourly: str, this_hour: str, period: str) -> str:
    """Spend since the start of the current UTC day or month, per budget scope: the
    recorded `hourly` increase at the whole hours in the period (each step's sample is
    the hour before it), plus the recorded spend since the last whole hour (`this_hour`,
    lags the counters <= 5m).

    Prometheus runs a group some seconds past each minute, so the sample a step reads was
    recorded up to a minute before the hour: the sum covers up to a minute of the
    previous month and leaves out up to a minute before the last whole hour (about 0 for
    steady spend). promtool tests run at whole minutes, where both are exact. A whole
    hour without a sample in the 5 minutes before it (Prometheus down or skipping the
    group then) counts nothing: `aispend rules backfill` records such hours again."""
    if period == "day":
        cond, range_ = f"{STEP_DAY} == on() {NOW_DAY}", "1d"
    else:
        cond, range_ = f"{STEP_MONTH} == on() {NOW_MONTH}", "31d"
    hours = bucket_sum(hourly, cond, range_, "1h")
    labels = (m.TEAM, m.PROJECT, m.AGENT)
    return (
        f"sum by ({', '.join(labels)}) ("
        f"{set_label(hours, 'part', 'hours')} or {set_label(this_hour, 'part', 'minutes')})"
    )


def since_hour_start(expr: str) -> str:
    """The sum of `expr` (an increase over 5m) at the 5-minute steps since the start of
    the current UTC hour."""
    return bucket_sum(expr, f"vector(time()) > on() {NOW_HOUR_START}", "1h", "5m")
