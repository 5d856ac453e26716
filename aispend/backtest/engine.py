"""The backtest pipeline: history -> temporary TSDB -> real rules -> episodes -> score.

`prepared_prometheus` builds the TSDB (history backfilled, recording rules recorded)
and yields a running temporary Prometheus over it; `run_backtest` evaluates the alert
rules there and scores the episodes against the labels. The whole history is loaded
and recorded whatever the range (`--from`/`--to`): the rules keep their look-back and
derived budgets see all of it; only evaluation and scoring are limited to the range.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aispend
from aispend import metrics
from aispend.backtest import evaluate, openmetrics, tsdb
from aispend.backtest import labels as labels_mod
from aispend.backtest.history import History, HistoryError, format_timestamp, load_history
from aispend.backtest.rulefiles import DEFAULT_INTERVAL, RulesError, RuleSet, load_rules
from aispend.backtest.scoring import Detection, Episode, Score, detections, score
from aispend.tsdb import new_or_empty_dir

RULE_FILES = ("aispend.rules.yml", "aispend.alerts.yml")
SCORED_SEVERITIES = ("critical", "warning")
SPEND_COUNTERS = f'{{__name__=~"{metrics.LLM_COST.name}|{metrics.GPU_COST.name}"}}'
"""The cost counters a TSDB history's teams are read from."""


def default_rules_dir() -> Path:
    """./alert-rules when it exists, else the one next to the aispend package."""
    here = Path("alert-rules")
    if (here / RULE_FILES[1]).is_file():
        return here
    return Path(aispend.__file__).resolve().parent.parent / "alert-rules"


def rule_paths(rules_dir: Path) -> list[Path]:
    paths = [rules_dir / name for name in RULE_FILES if (rules_dir / name).is_file()]
    if not any(p.name == RULE_FILES[1] for p in paths):
        raise tsdb.BacktestError(
            f"{rules_dir}: no {RULE_FILES[1]}; generate the rules first "
            "(aispend rules generate) or pass --rules DIR"
        )
    return paths


@dataclass
class Options:
    history: Path
    labels: Path | None = None
    label_key: str | None = None
    start: int | None = None
    end: int | None = None
    rules_dir: Path | None = None
    config: Path | None = None
    scrape: int = openmetrics.DEFAULT_SCRAPE
    eval_interval: int = DEFAULT_INTERVAL
    headroom: float = openmetrics.DEFAULT_HEADROOM
    alerts: str | None = None
    """Regex over alert names to replay; default all."""
    missing_rows_unknown: bool = False
    """A CSV interval without a row is unknown, not zero spend (`History.gaps_are_unknown`)."""
    work_dir: Path | None = None
    """Keep the TSDB and logs here instead of a temporary directory."""


@dataclass
class Result:
    start: int
    end: int
    teams: list[str]
    alerts: list[Episode]
    scored: list[Episode]
    score: Score | None = None
    detections: list[Detection] = field(default_factory=list)
    label_key: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _config_series(
    path: Path | None,
) -> tuple[list[openmetrics.BudgetSeries], dict[str, openmetrics.TeamMeta], str]:
    if path is None:
        return [], {}, "USD"
    from aispend.config import load_config

    config = load_config(path)
    budgets = [
        openmetrics.BudgetSeries(b.team, b.period, b.amount, b.project or "", b.agent or "")
        for b in config.budgets
    ]
    metas = {
        t.name: openmetrics.TeamMeta(t.name, t.criticality, t.cost_center, t.owner)
        for t in config.teams
    }
    return budgets, metas, config.currency


@contextlib.contextmanager
def _work_dir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        # A kept replay of another run would be mixed into this one's TSDB.
        if not new_or_empty_dir(keep):
            raise tsdb.BacktestError(
                f"--keep {keep}: must be a new or empty directory (it holds another replay,"
                " which would be mixed into this one)"
            )
        try:
            keep.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise tsdb.BacktestError(f"--keep {keep}: {exc.strerror or exc}") from exc
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="aispend-backtest-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def prepared_prometheus(
    history: History | Path,
    rules: RuleSet,
    opts: Options,
    timings: dict[str, float],
) -> Iterator[tuple[tsdb.TempPrometheus, int, int]]:
    """A Prometheus serving the history and the recorded series; yields (prom, start, end)."""
    with _work_dir(opts.work_dir) as work:
        data = work / "data"
        began = time.monotonic()
        if isinstance(history, Path):
            start, end = tsdb.tsdb_range(history)
            import shutil

            shutil.copytree(history, data, dirs_exist_ok=False)
        else:
            start, end = history.start, history.end
            budgets, metas, currency = _config_series(opts.config)
            sink = openmetrics.SplitSink(work, "history", tsdb.BLOCK_WINDOW)
            openmetrics.write_openmetrics(
                sink,
                history,
                openmetrics.merge_budgets(history, budgets, opts.headroom),
                openmetrics.team_metas(history, metas),
                opts.scrape,
                currency,
            )
            tsdb.backfill_openmetrics(sink.paths, data)
        timings["backfill_history_s"] = round(time.monotonic() - began, 1)
        began = time.monotonic()
        tsdb.backfill_rules(data, work, rules.recording, start, end, opts.eval_interval)
        timings["record_rules_s"] = round(time.monotonic() - began, 1)
        with tsdb.TempPrometheus(data, work) as prom:
            yield prom, start, end


def select_alerts(rules: RuleSet, pattern: str | None) -> RuleSet:
    if pattern is None:
        return rules
    regex = re.compile(pattern)
    chosen = [a for a in rules.alerting if regex.fullmatch(a.alert)]
    if not chosen:  # a typo would replay nothing and read as "no alert would have fired"
        names = ", ".join(sorted({a.alert for a in rules.alerting}))
        raise RulesError(f"--alerts {pattern!r} matches no alert of the rules: {names}")
    return RuleSet(rules.recording, chosen)


def scored_episodes(episodes: list[Episode]) -> list[Episode]:
    """Episodes that page or notify a team: severity critical/warning, with a team."""
    return [e for e in episodes if e.team and dict(e.labels).get("severity") in SCORED_SEVERITIES]


def run_backtest(opts: Options) -> Result:
    """Load the files named in `opts`, replay, evaluate and score."""
    began = time.monotonic()
    source: History | Path
    if opts.history.is_dir():
        source = opts.history
        evaluation_range(*tsdb.tsdb_range(source), opts)  # a range without data: say so now
    else:
        source = load_history(opts.history)
        source.gaps_are_unknown = opts.missing_rows_unknown
        evaluation_range(source.start, source.end, opts)
    labels = (
        labels_mod.load_labels(opts.labels, opts.history, opts.label_key) if opts.labels else None
    )
    if labels is not None and isinstance(source, History):
        unknown = sorted(t for t in labels.windows if t is not None and t not in source.teams)
        if unknown:  # a typo would score nothing and say so nowhere
            raise labels_mod.LabelsError(
                f"labels entry {labels.key!r} has windows for team(s) {', '.join(unknown)},"
                f" which the history does not have (its teams: {', '.join(source.teams)})"
            )
    rules = select_alerts(
        load_rules(rule_paths(opts.rules_dir or default_rules_dir())), opts.alerts
    )
    result = replay(source, rules, labels, opts)
    result.timings["total_s"] = round(time.monotonic() - began, 1)
    return result


def evaluation_range(data_start: int, data_end: int, opts: Options) -> tuple[int, int]:
    """The range to evaluate and score: --from/--to, within the history's own range."""
    start = max(data_start, opts.start) if opts.start is not None else data_start
    end = min(data_end, opts.end) if opts.end is not None else data_end
    if end <= start:
        raise HistoryError(
            f"no history between --from and --to (the history covers"
            f" {format_timestamp(data_start)} .. {format_timestamp(data_end)})"
        )
    return start, end


def replay(
    source: History | Path, rules: RuleSet, labels: labels_mod.Labels | None, opts: Options
) -> Result:
    """Replay a history (or a TSDB directory) through `rules`; score when labelled."""
    timings: dict[str, float] = {}
    with prepared_prometheus(source, rules, opts, timings) as (prom, data_start, data_end):
        start, end = evaluation_range(data_start, data_end, opts)
        began = time.monotonic()
        episodes = evaluate.alert_episodes(prom, rules.alerting, start, end, opts.eval_interval)
        timings["evaluate_alerts_s"] = round(time.monotonic() - began, 1)
        if isinstance(source, History):
            teams = source.teams
        else:  # every team that spent, not only those that raised an alert
            teams = prom.label_values(metrics.TEAM, SPEND_COUNTERS, data_start, data_end)
    scored = scored_episodes(episodes)
    result = Result(start, end, teams, episodes, scored, timings=timings)
    if labels is not None:
        if isinstance(source, Path):
            result.teams = teams = sorted({*teams, *(t for t in labels.windows if t is not None)})
        result.label_key = labels.key
        result.score = score(scored, labels, teams, start, end)
        result.detections = detections(scored, labels, teams, start, end)[0]
    return result
