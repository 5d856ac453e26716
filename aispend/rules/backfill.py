"""`aispend rules backfill --url URL --output DIR [--from T] [--to T] [--rules FILE]`.

Some rules read recorded series at whole hours, not the raw counters:
- spend to date, the month budget ratios and the forecast rate sum the hourly spend per
  budget scope (`team_project_agent:aispend_cost:increase1h`);
- the anomaly baselines' week- and day-long means, stddevs and trends read the hourly
  spend rate per team+model and team+agent (`team_model:aispend_cost:rate1h`,
  `team_agent:aispend_cost:rate1h`).
Prometheus records them from the moment it loads the rules. After an install over
existing history, the hours before count nothing in month to date, and the baselines
start as for a new series (the weekly one after a week, its trend after two). After an
upgrade from rules that read the raw counters for month to date (before 2026-12-07),
month to date misses the hours before (the hourly rates were recorded all along).

This command evaluates those rules at each whole hour of [--from, --to] against the
running Prometheus at URL (`query_range` over its raw counters, read only) and writes
the samples as TSDB blocks to DIR (`promtool tsdb create-blocks-from openmetrics`).
Move the blocks into Prometheus's `--storage.tsdb.path` and restart it. Only hours
Prometheus has already written to a block can be recorded (`--to` at most the last
whole hour before its head, its newest 2 to 3 hours): at restart it drops from its
head every sample older than the newest block's end, of every series. The rules read
one sample per whole hour, the backfilled one where Prometheus has recorded the hour
too, so an hour is not counted twice (where backfilled and recorded hours meet, up to
a minute may be).

Default range: from the earliest of the start of the UTC month, 7 days ago (the
forecast's rate window) and 4 weeks and an hour ago (the baselines' reach) to the last
whole hour before the head. Hours still in the head: run it again a few hours later
with `--from`. DCGM-only GPUs' spend comes from a recorded series too
(`gpu:aispend_gpu_cost:rate5m`), so it counts only where Prometheus already recorded
that.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aispend import metrics
from aispend.backtest.history import format_timestamp as utc

if TYPE_CHECKING:
    from aispend.backtest.rulefiles import RecordingRule
    from aispend.backtest.tsdb import PrometheusAPI

HOUR = 3600


HOURLY_SERIES = (
    metrics.REC_SCOPE_COST_1H.name,
    metrics.REC_TEAM_MODEL_COST_RATE1H.name,
    metrics.REC_TEAM_AGENT_COST_RATE1H.name,
)
"""The recorded series rules read at whole hours: what this command records."""


def default_start(now: float) -> int:
    """The earliest of the start of the UTC month, the forecast's rate window ago (the
    forecast_rate_window tunable's default) and the baselines' reach ago, at a whole
    hour."""
    from aispend.rules.anomaly import RECORDED_REACH
    from aispend.rules.promql import seconds
    from aispend.rules.tunables import Tunables

    today = dt.datetime.fromtimestamp(now, dt.UTC)
    month_start = int(today.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())
    earliest = int(now) - max(seconds(Tunables().forecast_rate_window), RECORDED_REACH)
    return min(month_start, earliest - earliest % HOUR)


def last_hour_before_head(prom: PrometheusAPI, now: float) -> int:
    """The last whole hour (at most now) before the oldest sample of Prometheus's head
    (`/api/v1/status/tsdb`): a block ending later would cut the head at restart."""
    limit = int(now) - int(now) % HOUR
    head = prom.api("status/tsdb", {}, timeout=60)
    stats = head.get("headStats") if isinstance(head, dict) else None
    min_ms = stats.get("minTime") if isinstance(stats, dict) else None
    if isinstance(min_ms, int) and 0 < min_ms < limit * 1000 + 1:
        # A block's end is its last sample + 1 ms, which must not pass the head's start.
        limit = (min_ms - 1) // 1000 - (min_ms - 1) // 1000 % HOUR
    return limit


def hourly_rules(rules_file: Path) -> list[RecordingRule]:
    """The rules recording HOURLY_SERIES in `rules_file`; ValueError if one is missing."""
    from aispend.backtest.rulefiles import load_rules

    rules = [rule for rule in load_rules([rules_file]).recording if rule.record in HOURLY_SERIES]
    found = {rule.record for rule in rules}
    missing = [name for name in HOURLY_SERIES if name not in found]
    if missing:
        raise ValueError(
            f"{rules_file} records no {', '.join(missing)}: regenerate it (aispend rules generate)"
        )
    return rules


def backfill_hourly(
    prom: PrometheusAPI, rules: list[RecordingRule], output: Path, start: int, end: int
) -> int:
    """Record `rules` at the whole hours of [start, end] from `prom` into blocks in
    `output`; returns the number of samples written."""
    from aispend.backtest.openmetrics import SplitSink
    from aispend.backtest.tsdb import BLOCK_WINDOW, backfill_openmetrics, record_level

    with tempfile.TemporaryDirectory(prefix="aispend-rules-backfill-") as tmp:
        sink = SplitSink(Path(tmp), "hourly", BLOCK_WINDOW)
        count = record_level(prom, rules, start, end, HOUR, sink)
        backfill_openmetrics(sink.paths, output)
    return count


def _run(args: argparse.Namespace) -> int:
    from aispend.backtest.rulefiles import RulesError
    from aispend.backtest.tsdb import BacktestError, PrometheusAPI

    now = time.time()
    start = args.start if args.start is not None else default_start(now)
    if args.end is not None and start >= args.end:
        print(
            f"error: --from ({utc(start)}) must be before --to ({utc(args.end)})",
            file=sys.stderr,
        )
        return 2
    prom = PrometheusAPI(args.url)
    try:
        rules = hourly_rules(args.rules)
        limit = last_hour_before_head(prom, now)
        if args.end is not None and args.end > limit:
            print(
                f"error: --to ({utc(args.end)}) is after {utc(limit)}, the last whole hour"
                " Prometheus has written to a block: later hours are still in its head (or"
                " to come), and a block there would make it drop them at restart. Run this"
                " again later for them.",
                file=sys.stderr,
            )
            return 2
        end = limit if args.end is None else args.end
        if start + (-start) % HOUR > end:
            print(
                f"error: no whole hour between {utc(start)} and {utc(end)}: nothing to record",
                file=sys.stderr,
            )
            return 2
        count = backfill_hourly(prom, rules, args.output, start, end)
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
            f"no samples: Prometheus at {args.url} has no cost series between {utc(start)}"
            f" and {utc(end)}; nothing written"
            + ("" if args.end is not None else " (later hours are still in its head)"),
            file=sys.stderr,
        )
        return 1
    print(
        f"wrote {count} samples of {', '.join(HOURLY_SERIES)} to {args.output}: move its"
        " block directories into Prometheus's --storage.tsdb.path and restart Prometheus"
    )
    return 0


def add_parser(rules_sub: Any) -> None:
    from aispend.backtest.cli import time_arg

    parser = rules_sub.add_parser(
        "backfill",
        help="record the hourly series that spend to date and the baselines read over past"
        " hours, as TSDB blocks",
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
