"""The generated rules at a larger org's scale: each rule's query time and peak samples.

A synthetic history of `aispend_llm_cost_total` (and its `_created`) for TEAMS x
PROJECTS x AGENTS x MODELS gateway series, plus a month and a day budget per team and a
month budget per project, is backfilled with promtool into a temporary TSDB. A real
Prometheus then runs every expression of alert-rules/*.yml once, one at a time, at the
end of the history (`/api/v1/query?stats=all`): its wall time and peak samples, summed
per rule group and set beside the group's interval. The history has one sample every
30 minutes and every 15 s in its last hour, far sparser than a real 15 s scrape, so
the times are most likely far below a real history's. One more run (`--dense-models`)
has 15 s samples over the last 73 hours: a real scrape's density in every raw window a
rule reads within the last 3 days (the longest read at every evaluation is the 3d burn
rate). No GPU or billing series: the gateway's cost series dominate every spend rule.
Besides the raw series, only the recorded series read at whole hours are backfilled, at
whole hours: the hourly spend per
scope that the spend-to-date rules sum and the hourly rates the baselines read (a
running Prometheus records them at every evaluation, 15 s, so their reads there decode
more samples than here). Other rules that read recorded series find none, so their times
are not measured.

    .venv/bin/python benchmarks/rules_scale.py                   # 2,000 and 16,000 series
    .venv/bin/python benchmarks/rules_scale.py --teams 1 --models 1 --output /tmp/x.md
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from _backtest_data import REPO, command_line, measured_on
from _docs import write_section

from aispend import metrics
from aispend.backtest.tsdb import BacktestError, TempPrometheus, backfill_openmetrics
from aispend.rules.backfill import HOURLY_SERIES
from aispend.tsdb import backfill_recording_rules

TITLE = "Rules at scale (query time per rule group)"
TEAMS, PROJECTS, AGENTS = 40, 5, 10
MODELS = ("gpt-4o", "gpt-4o-mini", "o3", "gpt-4.1", "claude-sonnet-4", "claude-haiku-4",
          "gemini-2.5-pro", "gemini-2.5-flash")  # fmt: skip
DAYS = 32
COARSE_S, FINE_S, FINE_HOURS = 1800, 15, 1
DENSE_HOURS = 73
"""The dense run's 15 s hours: the longest raw window the rules read at every evaluation
(the 3d burn rate) and an hour; the 6h baseline's window is inside it."""
DEFAULT_TIMEOUT_S, DEFAULT_MAX_SAMPLES = 120, 50_000_000  # Prometheus's query limits


@dataclass
class Timing:
    group: str
    interval_s: float
    rule: str
    seconds: float
    peak_samples: int | None
    error: str | None


def _labels(values: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(values.items())) + "}"


def write_history(path: Path, teams: int, models: int, end: int, fine_hours: int) -> int:
    """The OpenMetrics history, 15 s samples in its last `fine_hours`; returns the number
    of cost series."""
    start = end - DAYS * 86400
    fine_from = end - fine_hours * 3600
    stamps = [*range(start, fine_from, COARSE_S), *range(fine_from, end, FINE_S)]
    # Seconds of spend at a constant rate up to each stamp, with a daily wave.
    spent = [
        ts - start + 86400 / (4 * math.pi)
        * (math.cos(2 * math.pi * start / 86400) - math.cos(2 * math.pi * ts / 86400))
        for ts in stamps
    ]  # fmt: skip
    hourly = range(start, end, 3600)
    cost, created = metrics.LLM_COST, metrics.LLM_COST.created_name
    series = [
        _labels({"job": "aispend-gateway", "instance": "gateway:9400", "team": t,
                 "project": p, "agent": a, "provider": "openai", "model": m,
                 "source": "gateway"})
        for t, p, a, m in _scopes(teams, models)
    ]  # fmt: skip
    with path.open("w", encoding="utf-8") as out:
        out.write(f"# TYPE {cost.family_name} counter\n")
        for index, labels in enumerate(series):
            rate = 0.00002 + (index % 97) * 0.000005  # per second
            out.writelines(
                f"{cost.name}{labels} {rate * s:.6f} {ts}\n"
                for ts, s in zip(stamps, spent, strict=True)
            )
        out.write(f"# TYPE {created} gauge\n")
        for labels in series:
            out.writelines(f"{created}{labels} {start} {ts}\n" for ts in hourly)
        out.write(f"# TYPE {metrics.BUDGET.name} gauge\n")
        for team in range(teams):
            budgets = [("", "month", 20000), ("", "day", 700)]
            budgets += [(f"proj{p}", "month", 4000) for p in range(PROJECTS)]
            for project, period, amount in budgets:
                labels = _labels({"job": "aispend-budgets", "instance": "budgets:9401",
                                  "team": f"team{team:02d}", "project": project, "agent": "",
                                  "period": period})  # fmt: skip
                out.writelines(f"{metrics.BUDGET.name}{labels} {amount} {ts}\n" for ts in hourly)
        out.write("# EOF\n")
    return len(series)


def _scopes(teams: int, models: int) -> list[tuple[str, str, str, str]]:
    return [
        (f"team{t:02d}", f"proj{p}", f"agent{p}-{a}", model)
        for t in range(teams)
        for p in range(PROJECTS)
        for a in range(AGENTS)
        for model in MODELS[:models]
    ]


def _interval_s(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]]


def time_rules(prom: TempPrometheus, at: int, rule_files: list[Path]) -> list[Timing]:
    timings = []
    for path in rule_files:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            interval = _interval_s(group.get("interval", "15s"))
            for rule in group["rules"]:
                name = rule.get("record") or rule.get("alert")
                params = {"query": rule["expr"], "time": str(at), "stats": "all"}
                began = time.monotonic()
                try:
                    data = prom.api("query", params, timeout=1800)
                    stats = data.get("stats", {}).get("samples", {})
                    peak, error = stats.get("peakSamples"), None
                except BacktestError as exc:
                    peak, error = None, str(exc)[:160]
                seconds = time.monotonic() - began
                timings.append(Timing(group["name"], interval, name, seconds, peak, error))
    return timings


RECORDED_INPUTS = (metrics.REC_SCOPE_COST_1H.name, metrics.REC_SCOPE_COST_THIS_HOUR.name)
"""The recorded series the spend-to-date rules sum, backfilled before they are timed."""


@dataclass
class Run:
    series: int
    fine_hours: int
    timings: list[Timing]
    seconds: float


def measure(teams: int, models: int, fine_hours: int, work: Path) -> Run:
    end = int(time.time()) // 60 * 60
    history = work / "history.om"
    series = write_history(history, teams, models, end, fine_hours)
    data = work / "data"
    backfill_openmetrics([history], data)
    rules_file = REPO / "alert-rules" / "aispend.rules.yml"
    start = end - DAYS * 86400
    # Whole hours are all the sums and baselines read; the spend since the hour, at the end.
    backfill_recording_rules(data, [rules_file], start, end - 1, "1h", only=HOURLY_SERIES)
    backfill_recording_rules(data, [rules_file], end, end, "1m", only=RECORDED_INPUTS)
    with TempPrometheus(data, work, timeout=600) as prom:
        began = time.monotonic()
        rule_files = [rules_file, REPO / "alert-rules" / "aispend.alerts.yml"]
        timings = time_rules(prom, end, rule_files)
        return Run(series, fine_hours, timings, time.monotonic() - began)


def render(runs: list[Run]) -> str:
    lines = []
    for run in runs:
        timings = run.timings
        hours = "hour" if run.fine_hours == 1 else f"{run.fine_hours} hours"
        lines.append(
            f"\n### {run.series:,} cost series, 15 s samples in the last {hours}"
            f" (all rules one after another: {run.seconds:.0f} s)\n"
        )
        lines.append("| Group | Interval | Sum of its rules' query times | Slowest rules |")
        lines.append("|---|---|---|---|")
        groups: dict[str, list[Timing]] = {}
        for t in timings:
            groups.setdefault(t.group, []).append(t)
        for name, rules in groups.items():
            spent = sum(t.seconds for t in rules)
            slow = sorted(rules, key=lambda t: -t.seconds)[:3]
            cells = ", ".join(
                f"`{t.rule}` {t.seconds:.1f} s"
                + (f" ({t.peak_samples / 1e6:.1f}M samples)" if t.peak_samples else "")
                for t in slow
            )
            over = " **over**" if spent > rules[0].interval_s else ""
            lines.append(f"| {name} | {rules[0].interval_s:g} s | {spent:.1f} s{over} | {cells} |")
        limits = [
            t
            for t in timings
            if t.error
            or t.seconds > DEFAULT_TIMEOUT_S
            or (t.peak_samples or 0) > DEFAULT_MAX_SAMPLES
        ]
        lines.append("")
        lines.append(
            "Past Prometheus's default query limits (timeout 2m, max-samples 50M; this run"
            " allowed 10m and 200M): "
            + (
                ", ".join(
                    f"`{t.rule}` ({t.error or f'{t.seconds:.0f} s, {t.peak_samples:,} samples'})"
                    for t in limits
                )
                or "none"
            )
            + "."
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=int, nargs="*", default=[1, 8], help="models per agent, one run each"
    )
    parser.add_argument(
        "--dense-models",
        type=int,
        nargs="*",
        default=[1],
        help="models per agent, one run each with 15 s samples over the last --dense-hours",
    )
    parser.add_argument(
        "--dense-hours",
        type=int,
        default=DENSE_HOURS,
        help=f"hours of 15 s samples in the dense runs (default {DENSE_HOURS})",
    )
    parser.add_argument("--teams", type=int, default=TEAMS, help=f"teams (default {TEAMS})")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    runs = []
    plan = [(m, FINE_HOURS) for m in args.models] + [
        (m, args.dense_hours) for m in args.dense_models
    ]
    for models, fine_hours in plan:
        with tempfile.TemporaryDirectory(prefix="aispend-scale-") as work:
            runs.append(measure(args.teams, models, fine_hours, Path(work)))
    body = (
        f"{measured_on(load_before)}, total {time.monotonic() - began:.0f} s, with:\n\n"
        f"    {command_line()}\n\n"
        f"{args.teams} teams x {PROJECTS} projects x {AGENTS} agents x N models of"
        f" `{metrics.LLM_COST.name}`, {DAYS} days (a sample every {COARSE_S // 60} min, every"
        f" {FINE_S} s in the last hour: far sparser than a real scrape, so these times are most"
        " likely far below a real history's; each is one run on a shared machine; the run with"
        f" {FINE_S} s samples over the last {args.dense_hours} hours has a real scrape's density"
        f" in every raw window within them; {DENSE_HOURS} hours by default, which hold the 3d"
        " burn rate's window and the 6h cold-start baseline's), a month and"
        " a day budget per team and a month budget per project. Each"
        " rule's expression runs once at the end of the history, alone; a group whose sum"
        " passes its interval cannot keep up in a Prometheus running the rules (which then"
        " skips evaluations), and a rule past the default query limits is never recorded."
        " Besides the raw series, only the recorded series rules read at whole hours are"
        f" backfilled, at whole hours: the hourly spend per scope (`{HOURLY_SERIES[0]}`, which"
        " the spend-to-date rules and the forecast rate sum) and the hourly rates per"
        f" team+model and team+agent (`{HOURLY_SERIES[1]}`, `{HOURLY_SERIES[2]}`, which the"
        " weekly and daily baselines read); a running Prometheus records them at every"
        " evaluation (15 s), so its reads of them decode more samples than here. The spend"
        " since the hour is backfilled at the end. Rules that read other recorded series (the"
        " anomaly group, the alerts, the budget ratios and the forecast) find none here, so"
        " their near-0 s times are not measurements.\n" + render(runs)
    )
    print(body)
    write_section(args.output, TITLE, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
