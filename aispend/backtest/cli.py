"""`aispend backtest`: what would the rules have done on this history, and how well."""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from aispend.backtest.openmetrics import DEFAULT_HEADROOM, DEFAULT_SCRAPE
from aispend.backtest.rulefiles import DEFAULT_INTERVAL

HELP = "replay a spend history through the real rules; score alerts against labels"
TERMINATED_EXIT = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: unwind as Ctrl-C does, so the temporary TSDB and Prometheus go."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated (only the main thread gets signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def time_arg(text: str) -> int:
    """An argparse type: RFC 3339 or Unix seconds."""
    from aispend.backtest.history import parse_timestamp

    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> int:
    from aispend.backtest.rulefiles import RulesError, parse_duration

    try:
        value = parse_duration(text) if not text.isdigit() else int(text)
    except RulesError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _eval_interval(text: str) -> int:
    """A step that divides an hour: spend to date reads the recorded hourly spend at
    every whole hour, so each must be an evaluation time."""
    value = _seconds(text)
    if 3600 % value:
        raise argparse.ArgumentTypeError(
            f"{value}s does not divide an hour (spend to date reads the rules at every whole"
            " hour): use 60, 300, 600, 900, 1800 or 3600, for example"
        )
    return value


def _headroom(text: str) -> float:
    from aispend.parsing import number_argument

    # 0 or NaN derived no budget, silently.
    return number_argument(text, lambda v: 0 < v < math.inf, "a finite number > 0")


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r}: {exc}") from None
    return text


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("backtest", help=HELP, description=HELP)
    p.add_argument(
        "--history",
        required=True,
        type=Path,
        help="CSV timestamp,team,cost[,project,agent,model,source]; a FOCUS CSV export; "
        "or a Prometheus TSDB directory",
    )
    p.add_argument("--labels", type=Path, help="incident windows, NAB combined_windows.json shape")
    p.add_argument("--label-key", help="labels entry to use (default: a path suffix of --history)")
    p.add_argument("--from", dest="start", type=time_arg, help="start time (RFC 3339 or Unix)")
    p.add_argument("--to", dest="end", type=time_arg, help="end time (RFC 3339 or Unix)")
    p.add_argument("--rules", type=Path, help="directory with aispend.rules.yml/.alerts.yml")
    p.add_argument("--config", type=Path, help="aispend.yaml for budgets and team criticality")
    p.add_argument(
        "--alerts",
        type=_regex,
        help="regex of alert names to replay (default: all)",
        metavar="REGEX",
    )
    p.add_argument(
        "--scrape",
        type=_seconds,
        default=DEFAULT_SCRAPE,
        help=f"counter sample step (default {DEFAULT_SCRAPE}s)",
    )
    p.add_argument(
        "--eval-interval",
        type=_eval_interval,
        default=DEFAULT_INTERVAL,
        help=f"minimum rule evaluation step, dividing an hour (default {DEFAULT_INTERVAL}s)",
    )
    p.add_argument(
        "--budget-headroom",
        type=_headroom,
        default=DEFAULT_HEADROOM,
        help="teams without a configured budget get headroom x their typical spend "
        f"(default {DEFAULT_HEADROOM})",
    )
    p.add_argument(
        "--missing-rows",
        choices=("zero", "unknown"),
        default="zero",
        help="an interval with no CSV row: zero spend (billing exports omit zero rows; "
        "default) or unknown (measurements: no samples, no daily total)",
    )
    p.add_argument("--keep", type=Path, help="keep the TSDB and logs in this directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aispend.backtest import report
    from aispend.backtest.engine import Options, run_backtest
    from aispend.backtest.history import HistoryError
    from aispend.backtest.labels import LabelsError
    from aispend.backtest.rulefiles import RulesError
    from aispend.backtest.tsdb import BacktestError
    from aispend.config import ConfigError

    if args.start is not None and args.end is not None and args.end <= args.start:
        print("aispend backtest: --to must be after --from", file=sys.stderr)
        return 2
    opts = Options(
        history=args.history,
        labels=args.labels,
        label_key=args.label_key,
        start=args.start,
        end=args.end,
        rules_dir=args.rules,
        config=args.config,
        scrape=args.scrape,
        eval_interval=args.eval_interval,
        headroom=args.budget_headroom,
        alerts=args.alerts,
        missing_rows_unknown=args.missing_rows == "unknown",
        work_dir=args.keep,
    )
    try:
        with _sigterm_unwinds():
            result = run_backtest(opts)
    except Terminated:
        print("aispend backtest: terminated (SIGTERM)", file=sys.stderr)
        return TERMINATED_EXIT
    except ConfigError as exc:
        print(f"aispend backtest: {exc.report()}", file=sys.stderr)
        return 2
    except (HistoryError, LabelsError, RulesError) as exc:
        print(f"aispend backtest: {exc}", file=sys.stderr)
        return 2
    except BacktestError as exc:
        print(f"aispend backtest: {exc}", file=sys.stderr)
        return 1
    print(report.render_json(result) if args.json else report.render_table(result))
    return 0
