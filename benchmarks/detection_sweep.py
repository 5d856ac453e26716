"""Sweep of the anomaly alerts' tunables: the best any setting reaches on each data set.

Replays each data set once and evaluates each anomaly alert under every setting of its
tunables (METHOD below says how, and is printed into docs/benchmarks.md):

    .venv/bin/python benchmarks/detection_sweep.py            # full run
    .venv/bin/python benchmarks/detection_sweep.py --limit 1 --days 3 --output /tmp/x.md
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _backtest_data import (
    REPO,
    Dataset,
    add_subset_arguments,
    command_line,
    measured_on,
    nab_histories,
    spend_traces,
    write_section,
)
from detection_quality import ANOMALY_ROW, WARM_UP_DAYS, Row, score_rows, scored_range

from aispend.backtest import baselines, evaluate
from aispend.backtest.engine import (
    Options,
    default_rules_dir,
    prepared_prometheus,
    rule_paths,
    scored_episodes,
)
from aispend.backtest.rulefiles import DEFAULT_INTERVAL, AlertRule, load_rules, parse_duration
from aispend.backtest.scoring import Episode, detections
from aispend.rules import alerts, anomaly, spend
from aispend.rules.cli import ALERTS_FILE, RULES_FILE, render_all
from aispend.rules.model import Alert, Recording
from aispend.rules.tunables import Tunables

METHOD = """\
Issue 10 asks aispend's rules to beat both baselines on NAB (higher recall and fewer
false alarms). This sweep asks whether *any* setting of the anomaly alerts' own tunables
does, with the setting chosen on NAB itself: an oracle, so an upper bound that no setting
chosen elsewhere can pass. Each data set is replayed once through the committed recording
rules (every tunable swept here changes only alert expressions: checked against the
committed file), then each anomaly alert is evaluated on that TSDB under every setting:
SpendAnomaly's z-score rule (anomaly_sigma 3, 4, 5, 6, 8 x anomaly_for 15m, 30m, 1h x
max_cv 0.5, 1, 2; its episodes split by baseline 1w, 1d, 6h, each on or off, the
`anomaly_baselines` tunable), SpendAnomaly's same-weekday leak rule (leak_ratio 1.3,
1.5, 2, 3 x leak_for 1h, 3h, 6h) and TeamRunaway (team_runaway_sigma 6, 10, 15 x
team_runaway_burn_factor 1, 2, 3 x max_cv 0.5, 1, 2); RunawaySpend as committed (it
needs an agent label, which these data do not have). A configuration is each of the
three rules off or at one of its settings, with one max_cv where both z-score alerts
are on, as in the product. Every configuration is scored by the detection benchmark's
scorer (`detection_quality.score_rows`, its "anomaly alerts" rows) on the NAB sets
summed, over the whole series and after day 7; the committed configuration gives the
benchmark's own figures. The spend-trace figures score the same configuration on the
spend traces (anomaly alerts, after day 7); there, only the settings of the configurations
shown are evaluated."""

TITLE = "Detection sweep (anomaly tunables, chosen on NAB)"
Z, LEAK, TEAM_RUNAWAY = "zscore", "leak", "team_runaway"
Z_BASELINES = ("1w", "1d", "6h")
GRID: dict[str, dict[str, tuple[Any, ...]]] = {
    Z: {"anomaly_sigma": (3.0, 4.0, 5.0, 6.0, 8.0), "anomaly_for": ("15m", "30m", "1h"),
        "max_cv": (0.5, 1.0, 2.0)},
    LEAK: {"leak_ratio": (1.3, 1.5, 2.0, 3.0), "leak_for": ("1h", "3h", "6h")},
    TEAM_RUNAWAY: {"team_runaway_sigma": (6.0, 10.0, 15.0),
                   "team_runaway_burn_factor": (1.0, 2.0, 3.0), "max_cv": (0.5, 1.0, 2.0)},
}  # fmt: skip
Setting = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Config:
    """Each rule off (None) or at one setting; `z_baselines` are the z-score's baselines."""

    z: Setting | None
    z_baselines: tuple[str, ...]
    leak: Setting | None
    team_runaway: Setting | None

    def describe(self) -> str:
        parts = []
        if self.z is not None:
            z = dict(self.z)
            parts.append(
                f"z-score {z['anomaly_sigma']:g} sigma for {z['anomaly_for']}, max_cv "
                f"{z['max_cv']:g}, baselines {'+'.join(self.z_baselines)}"
            )
        if self.leak is not None:
            leak = dict(self.leak)
            parts.append(f"leak {leak['leak_ratio']:g}x for {leak['leak_for']}")
        if self.team_runaway is not None:
            tr = dict(self.team_runaway)
            parts.append(
                f"TeamRunaway {tr['team_runaway_sigma']:g} sigma, burn "
                f"{tr['team_runaway_burn_factor']:g}x, max_cv {tr['max_cv']:g}"
            )
        return "; ".join(parts) or "no anomaly alert"


def settings(component: str) -> list[Setting]:
    grid = GRID[component]
    return [tuple(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def committed(component: str) -> Setting:
    defaults = Tunables()
    return tuple((name, getattr(defaults, name)) for name in GRID[component])


def committed_config() -> Config:
    return Config(
        committed(Z), Tunables().anomaly_baselines, committed(LEAK), committed(TEAM_RUNAWAY)
    )


def configs() -> Iterator[Config]:
    subsets = [
        tuple(b for b in Z_BASELINES if b in chosen)
        for n in range(1, len(Z_BASELINES) + 1)
        for chosen in itertools.combinations(Z_BASELINES, n)
    ]
    for leak in [None, *settings(LEAK)]:
        for tr in [None, *settings(TEAM_RUNAWAY)]:
            yield Config(None, (), leak, tr)
            for z in settings(Z):
                if tr is not None and dict(z)["max_cv"] != dict(tr)["max_cv"]:
                    continue
                for subset in subsets:
                    yield Config(z, subset, leak, tr)


@functools.cache
def _recording(setting: Setting) -> tuple[Recording | Alert, ...]:
    t = Tunables(**dict(setting))
    return tuple(r for g in spend.groups(t) + anomaly.groups(t) for r in g.rules)


@functools.cache
def _rules_for(component: str, setting: Setting) -> tuple[AlertRule, ...]:
    """The component's alert rules with `setting` over the defaults, built from the rule
    model as `load_rules` reads them from the rendered file (`_check_committed`)."""
    if _recording(setting) != _recording(()):
        raise SystemExit(f"{component} {setting}: changes the recording rules; cannot sweep")
    out = []
    for group in alerts.groups(Tunables(**dict(setting))):
        interval = parse_duration(group.interval) if group.interval else DEFAULT_INTERVAL
        for rule in group.rules:
            assert isinstance(rule, Alert)
            found = AlertRule(
                rule.alert, rule.expr, parse_duration(rule.for_) if rule.for_ else 0,
                dict(rule.labels), group.name, interval,
            )  # fmt: skip
            if _component(found) == component:
                out.append(found)
    return tuple(out)


def _component(rule: AlertRule) -> str | None:
    if rule.alert == "AISpendTeamRunaway":
        return TEAM_RUNAWAY
    if rule.alert == "AISpendSpendAnomaly":
        return LEAK if rule.labels.get("baseline") == "same_weekday" else Z
    if rule.alert == "AISpendRunawaySpend":
        return "runaway"
    return None


@dataclass
class Replayed:
    """One data set's episodes per (component, setting); `runaway` as committed."""

    data: Dataset
    episodes: dict[tuple[str, Setting], list[Episode]]
    runaway: list[Episode]
    baselines: dict[str, list[Episode]]


def replay_dataset(
    data: Dataset, rules_dir: Path, wanted: set[tuple[str, Setting]] | None = None
) -> Replayed:
    """Replay once; evaluate every swept setting, or only the `wanted` ones."""
    rules = load_rules(rule_paths(rules_dir))
    began = time.monotonic()
    timings: dict[str, float] = {}
    opts = Options(history=REPO)
    out: dict[tuple[str, Setting], list[Episode]] = {}
    with prepared_prometheus(data.history, rules, opts, timings) as (prom, start, end):
        runaway_rules = [r for r in rules.alerting if _component(r) == "runaway"]
        runaway = scored_episodes(
            evaluate.alert_episodes(prom, runaway_rules, start, end, opts.eval_interval)
        )
        for component in GRID:
            for setting in settings(component):
                if wanted is not None and (component, setting) not in wanted:
                    continue
                chosen = _rules_for(component, setting)
                found = evaluate.alert_episodes(prom, chosen, start, end, opts.eval_interval)
                out[(component, setting)] = scored_episodes(found)
    found_baselines = {
        name: detector(data.history) for name, detector in baselines.BASELINES.items()
    }
    seconds = time.monotonic() - began
    print(f"{data.name}: {len(out)} settings evaluated, {seconds:.0f} s", file=sys.stderr)
    return Replayed(data, out, runaway, found_baselines)


def components_of(config: Config) -> set[tuple[str, Setting]]:
    chosen = {Z: config.z, LEAK: config.leak, TEAM_RUNAWAY: config.team_runaway}
    return {(name, s) for name, s in chosen.items() if s is not None}


def every_alert_on(config: Config) -> bool:
    return None not in (config.z, config.leak, config.team_runaway)


def config_episodes(r: Replayed, c: Config) -> list[Episode]:
    chosen = list(r.runaway)
    if c.z is not None:
        chosen += [
            e for e in r.episodes[(Z, c.z)] if dict(e.labels).get("baseline") in c.z_baselines
        ]
    if c.leak is not None:
        chosen += r.episodes[(LEAK, c.leak)]
    if c.team_runaway is not None:
        chosen += r.episodes[(TEAM_RUNAWAY, c.team_runaway)]
    return chosen


@dataclass(frozen=True)
class Tally:
    caught: int
    incidents: int
    false_alarms: int


def tally(sets: list[Replayed], episodes: list[list[Episode]], warm_up: int) -> Tally:
    """Caught, incidents and false alarms summed over data sets (the benchmark's scorer)."""
    rows = [
        score_rows(r.data, ANOMALY_ROW, eps, warm_up) for r, eps in zip(sets, episodes, strict=True)
    ]
    return _sum(rows)


def _sum(rows: list[Row]) -> Tally:
    return Tally(
        sum(r.caught for r in rows),
        sum(r.incidents for r in rows),
        sum(r.false_alarms for r in rows),
    )


def frontier(scored: dict[Config, Tally]) -> list[tuple[Config, Tally]]:
    """Per false-alarm count, the configuration with the most catches, keeping only those
    that catch more than every configuration with fewer false alarms (ties: the first)."""
    best: dict[int, tuple[Config, Tally]] = {}
    for config, t in scored.items():
        if t.false_alarms not in best or t.caught > best[t.false_alarms][1].caught:
            best[t.false_alarms] = (config, t)
    out: list[tuple[Config, Tally]] = []
    for false in sorted(best):
        config, t = best[false]
        if not out or t.caught > out[-1][1].caught:
            out.append((config, t))
    return out


def best_of(scored: dict[Config, Tally], found: list[Config], n: int = 3) -> list[Config]:
    """The `n` with the most catches, then the fewest false alarms."""
    return sorted(found, key=lambda c: (-scored[c].caught, scored[c].false_alarms))[:n]


def dominates(t: Tally, baseline: Tally) -> bool:
    """The benchmark's goal: higher recall and fewer false alarms."""
    return t.caught > baseline.caught and t.false_alarms < baseline.false_alarms


def no_worse(t: Tally, baseline: Tally) -> bool:
    """A weaker reading: no fewer catches, no more false alarms, better in one."""
    return (
        t.caught >= baseline.caught
        and t.false_alarms <= baseline.false_alarms
        and (t.caught, t.false_alarms) != (baseline.caught, baseline.false_alarms)
    )


@dataclass(frozen=True)
class WindowFact:
    team: str
    start: int
    end: int
    direction: str
    ratio: float | None


def window_directions(data: Dataset) -> list[WindowFact]:
    """Each labelled window: mean value inside it against the mean of the 7 days before
    ("rise" when higher). Spend alerts, like both baselines, fire only on rises."""
    out = []
    for team, windows in sorted(data.labels.windows.items()):
        points = [p for key, pts in data.history.series.items() if key.team == team for p in pts]
        if not points:
            continue
        for w in windows:
            if w.end < points[0][0] or w.start > points[-1][0]:
                continue  # outside the replayed range: not scored
            inside = [v for ts, v in points if w.start <= ts <= w.end]
            before = [v for ts, v in points if w.start - 7 * 86400 <= ts < w.start]
            if not inside or not before or statistics.mean(before) <= 0:
                out.append(WindowFact(str(team), w.start, w.end, "unknown", None))
                continue
            ratio = statistics.mean(inside) / statistics.mean(before)
            out.append(
                WindowFact(str(team), w.start, w.end, "rise" if ratio > 1 else "fall", ratio)
            )
    return out


def caught_windows(data: Dataset, episodes: list[Episode]) -> set[tuple[str, int]]:
    """(team, window start) of every window caught, scored as `score_rows` scores."""
    episodes, _, start, end = scored_range(data, episodes)
    found = detections(episodes, data.labels, data.history.teams, start, end)[0]
    return {(d.team, d.window.start) for d in found if d.delay_seconds is not None}


def _check_committed(rules_dir: Path) -> None:
    """The committed settings are in the grid, and the rules built for them are the
    committed files' (recording rules, and each swept alert as `load_rules` reads it)."""
    files = render_all(Tunables())
    for rel in (RULES_FILE, ALERTS_FILE):
        if files[rel] != (rules_dir / rel.name).read_text():
            raise SystemExit(f"{rules_dir / rel.name}: not the rules the defaults generate")
    alerting = load_rules([rules_dir / ALERTS_FILE.name]).alerting
    for component in GRID:
        setting = committed(component)
        if setting not in settings(component):
            raise SystemExit(f"{component}: committed setting {setting} is not in the grid")
        if list(_rules_for(component, setting)) != [
            r for r in alerting if _component(r) == component
        ]:
            raise SystemExit(f"{component}: rules built from the model differ from {rules_dir}")


def _fmt_day(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subset_arguments(parser, "trace / NAB files")
    parser.add_argument("--skip-traces", action="store_true", help="NAB only")
    args = parser.parse_args()
    rules_dir = args.rules or default_rules_dir()
    _check_committed(rules_dir)
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    nab = [replay_dataset(d, rules_dir) for d in nab_histories(args.limit, args.days)]
    warm = WARM_UP_DAYS * 86400
    scoring_began = time.monotonic()
    full: dict[Config, Tally] = {}
    after: dict[Config, Tally] = {}
    for config in configs():
        episodes = [config_episodes(r, config) for r in nab]
        full[config] = tally(nab, episodes, 0)
        after[config] = tally(nab, episodes, warm)
    scoring_s = time.monotonic() - scoring_began
    base = {
        name: _sum([score_rows(r.data, name, r.baselines[name]) for r in nab])
        for name in baselines.BASELINES
    }
    mine = committed_config()
    readings = {
        "higher recall and fewer false alarms than each baseline (the goal)": dominates,
        "a weaker reading, no fewer catches and no more false alarms than each baseline, "
        "and better on one": no_worse,
    }
    subsets = {
        "any configuration": lambda c: True,
        "every anomaly alert on (z-score, leak and TeamRunaway)": every_alert_on,
    }
    shown: list[Config] = [mine]
    views = []  # (scored name, scored, subset name, configurations kept, frontier, winners)
    for scored_name, scored in (("whole series", full), (f"after day {WARM_UP_DAYS}", after)):
        for subset_name, keep in subsets.items():
            kept = {c: t for c, t in scored.items() if keep(c)}
            best = frontier(kept)
            winners = {
                reading: [c for c, t in kept.items() if all(beats(t, b) for b in base.values())]
                for reading, beats in readings.items()
            }
            views.append((scored_name, scored, subset_name, len(kept), best, winners))
            shown += [c for c, _ in best]
            shown += [c for found in winners.values() for c in best_of(scored, found)]
    # The spend traces: only the settings of the configurations the report shows.
    traces = (
        None
        if args.skip_traces
        else replay_dataset(
            spend_traces(args.limit, args.days),
            rules_dir,
            set().union(*(components_of(c) for c in shown)),
        )
    )
    replay_s = time.monotonic() - began - scoring_s

    def traces_cell(config: Config) -> str:
        if traces is None:
            return "not run"
        eps = config_episodes(traces, config)
        row = score_rows(traces.data, ANOMALY_ROW, eps, warm)
        return f"{row.caught}/{row.incidents}, {row.false_alarms}"

    def frontier_table(best: list[tuple[Config, Tally]]) -> str:
        lines = [
            "| False alarms | Caught | Configuration"
            " | Spend traces after day 7: caught, false alarms |",
            "|---|---|---|---|",
        ]
        for config, t in best:
            flag = " (committed)" if config == mine else ""
            lines.append(
                f"| {t.false_alarms} | {t.caught}/{t.incidents} | {config.describe()}{flag} | "
                f"{traces_cell(config)} |"
            )
        return "\n".join(lines)

    def verdict(scored: dict[Config, Tally], found: list[Config], among: int) -> str:
        if not found:
            return f"none of {among:,}."
        listed = "; ".join(
            f"{c.describe()} ({scored[c].caught} caught, {scored[c].false_alarms} false "
            f"alarms; spend traces after day {WARM_UP_DAYS}: {traces_cell(c)})"
            for c in best_of(scored, found)
        )
        return f"{len(found):,} of {among:,}, the best: {listed}."

    verdict_lines = []
    frontier_parts = []
    for scored_name, scored, subset_name, among, best, winners in views:
        verdict_lines += [
            f"- {scored_name}, {subset_name}, {reading}: {verdict(scored, found, among)}"
            for reading, found in winners.items()
        ]
        frontier_parts.append(
            f"### Best catches per false-alarm count, NAB, {scored_name}, {subset_name}\n\n"
            + frontier_table(best)
        )

    # Which windows any swept setting catches at all: the family's recall ceiling.
    facts = [f for r in nab for f in window_directions(r.data)]
    ever: set[tuple[str, int]] = set()
    for r in nab:
        for eps in r.episodes.values():
            ever |= caught_windows(r.data, eps + r.runaway)
    by: dict[str, set[tuple[str, int]]] = {"aispend (committed)": set()}
    for r in nab:
        by["aispend (committed)"] |= caught_windows(r.data, config_episodes(r, mine))
        for name, eps in r.baselines.items():
            by.setdefault(name, set()).update(caught_windows(r.data, eps))
    names = list(by)
    window_lines = [
        "| Series | Window (UTC) | Inside / 7 days before | "
        + " | ".join(names)
        + " | any swept setting |",
        "|---|---|---|" + "---|" * (len(names) + 1),
    ]
    for f in facts:
        key = (f.team, f.start)
        marks = " | ".join("caught" if key in by[n] else "" for n in names)
        ratio = f"{f.ratio:.2f} ({f.direction})" if f.ratio is not None else f.direction
        window_lines.append(
            f"| {f.team} | {_fmt_day(f.start)} - {_fmt_day(f.end)} | {ratio} | {marks} | "
            f"{'caught' if key in ever else ''} |"
        )
    directions = {d: sum(1 for f in facts if f.direction == d) for d in ("rise", "fall", "unknown")}
    command = command_line()
    base_text = "; ".join(
        f"`{n}` {t.caught}/{t.incidents} caught with {t.false_alarms} false alarms"
        for n, t in base.items()
    )
    evaluations = sum(len(r.episodes) for r in nab) + (len(traces.episodes) if traces else 0)
    body = (
        f"{measured_on(load_before)}, total {time.monotonic() - began:.0f} s (replays "
        f"and {evaluations} alert evaluations {replay_s:.0f} s, scoring {scoring_s:.0f} s), "
        f"with:\n\n    {command}\n\n" + METHOD.replace("\n", " ") + "\n\n"
        f"NAB sets summed. Baselines: {base_text}. The committed configuration "
        f"({mine.describe()}): {full[mine].caught}/{full[mine].incidents} caught with "
        f"{full[mine].false_alarms} false alarms; after day {WARM_UP_DAYS}, "
        f"{after[mine].caught} with {after[mine].false_alarms}.\n\n"
        "Configurations that beat both baselines on NAB:\n"
        + "\n".join(verdict_lines)
        + "\n\n"
        + "\n\n".join(frontier_parts)
        + "\n\n"
        "### NAB windows: direction, and who catches them\n\n"
        f"Of {len(facts)} windows, {directions['rise']} are rises (mean inside the window above "
        f"the mean of the 7 days before) and {directions['fall']} are falls, which neither "
        "spend alerts nor the two baselines are built to flag"
        + (f"; {directions['unknown']} have no data before them" if directions["unknown"] else "")
        + '. "any swept setting": caught by at least one rule at one of its swept settings '
        "(the whole series scored).\n\n" + "\n".join(window_lines)
    )
    write_section(args.output, TITLE, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
