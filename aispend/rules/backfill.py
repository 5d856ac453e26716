"""`aispend rules backfill --url URL --output DIR [--from T] [--to T] [--rules FILE]`.

Spend to date, the month budget ratios and the forecast rate sum a recorded series,
the hourly spend per budget scope (`team_project_agent:aispend_cost:increase1h`), at
whole hours. Prometheus records it from the moment it loads the rules: after an
install over existing history, or an upgrade from rules that read the raw counters,
the hours before count nothing, and month to date reads low until the month ends.

This command evaluates that rule at each whole hour of [--from, --to] against the
running Prometheus at URL (`query_range` over its raw counters, read only) and writes
the samples as TSDB blocks to DIR (`promtool tsdb create-blocks-from openmetrics`).
Move the blocks into Prometheus's `--storage.tsdb.path` and restart it. The sums read
one sample per whole hour, the backfilled one where Prometheus has recorded the hour
too, so an hour is not counted twice (where backfilled and recorded hours meet, up to
a minute may be).

Default range: from the earlier of the start of the UTC month and 7 days ago (the
forecast's rate window) to the last whole hour.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aispend import metrics

HOUR = 3600
FORECAST_DAYS = 7


def default_start(now: float) -> int:
    """The earlier of the start of the UTC month and FORECAST_DAYS ago, at a whole hour."""
    today = dt.datetime.fromtimestamp(now, dt.UTC)
    month_start = int(today.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())
    week = int(now) - FORECAST_DAYS * 86400
    return min(month_start, week - week % HOUR)


def _utc(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backfill_hourly_spend(url: str, rules_file: Path, output: Path, start: int, end: int) -> int:
    """Record the hourly spend rule at the whole hours of [start, end] from the Prometheus
    at `url` into blocks in `output`; returns the number of samples written."""
    from aispend.backtest.openmetrics import SplitSink
    from aispend.backtest.rulefiles import load_rules
    from aispend.backtest.tsdb import (
        BLOCK_WINDOW,
        PrometheusAPI,
        backfill_openmetrics,
        record_level,
    )

    name = metrics.REC_SCOPE_COST_1H.name
    rules = [rule for rule in load_rules([rules_file]).recording if rule.record == name]
    if not rules:
        raise ValueError(f"{rules_file} records no {name}: regenerate it (aispend rules generate)")
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aispend-rules-backfill-") as tmp:
        sink = SplitSink(Path(tmp), "hourly", BLOCK_WINDOW)
        count = record_level(PrometheusAPI(url), rules, start, end, HOUR, sink)
        backfill_openmetrics(sink.paths, output)
    return count


def _run(args: argparse.Namespace) -> int:
    from aispend.backtest.rulefiles import RulesError
    from aispend.backtest.tsdb import BacktestError

    now = time.time()
    start = args.start if args.start is not None else default_start(now)
    end = args.end if args.end is not None else int(now) - int(now) % HOUR
    if start >= end:
        print(f"error: --from ({_utc(start)}) must be before --to ({_utc(end)})", file=sys.stderr)
        return 2
    try:
        count = backfill_hourly_spend(args.url, args.rules, args.output, start, end)
    except (RulesError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BacktestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {exc.filename or args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    if count == 0:
        print(
            f"no samples: Prometheus at {args.url} has no cost series between --from and --to;"
            " nothing written",
            file=sys.stderr,
        )
        return 1
    print(
        f"wrote {count} samples of {metrics.REC_SCOPE_COST_1H.name} to {args.output}: move its"
        " block directories into Prometheus's --storage.tsdb.path and restart Prometheus"
    )
    return 0


def add_parser(rules_sub: Any) -> None:
    from aispend.backtest.cli import time_arg

    parser = rules_sub.add_parser(
        "backfill",
        help="record the hourly spend that spend to date sums over past hours, as TSDB blocks",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", required=True, help="the running Prometheus (read only)")
    parser.add_argument("--output", type=Path, required=True, help="where to write the blocks")
    parser.add_argument("--from", dest="start", type=time_arg, help="RFC 3339 or Unix seconds")
    parser.add_argument("--to", dest="end", type=time_arg, help="RFC 3339 or Unix seconds")
    parser.add_argument(
        "--rules",
        type=Path,
        default=Path("alert-rules/aispend.rules.yml"),
        help="the recording rules Prometheus loads (default: alert-rules/aispend.rules.yml)",
    )
    parser.set_defaults(func=_run)
