"""`aispend backfill focus FILE... --tsdb DIR`: a FOCUS export as Prometheus history.

The export's daily costs become the series the billing exporter would have served
at the end of each UTC day, one sample per series per day, timestamped at the day's
end (00:00 UTC of the next day). Only days complete in the data count, as in the
exporter: a last day the export covers in part (data up to 06:00) is left out, and said.
Rows are booked on days as the exporter books them (the same reader): a correction of
an earlier month on the first day of the billing period that invoices it.

- `aispend_cloud_cost_last_day`: that day's cost;
- `aispend_cloud_cost_month_to_date`: the month's cost up to and including that day;

with the exporter's labels (provider, account, service_category, service, team,
project, environment). They are written as OpenMetrics with timestamps and turned
into TSDB blocks by `promtool tsdb create-blocks-from openmetrics` in DIR (the
Prometheus `--storage.tsdb.path`). So `sum_over_time(aispend_cloud_cost_last_day[30d])`
is the cost of the 30 days before, and `last_over_time(...[1d])` shows the daily
figure on a dashboard. Prometheus deletes blocks older than its retention
(`--storage.tsdb.retention.time`, 15d by default): give it one longer than the history.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from aispend import metrics
from aispend.exporters.billing.model import (
    CostLabels,
    DailyCost,
    data_timestamp,
    is_complete,
    utc_midnight,
)
from aispend.tsdb import escape_label_value, label_text

DAY_SECONDS = 86400


def add_parser(sub: Any) -> None:
    from aispend.focus_cli import add_tag_arguments

    backfill = sub.add_parser("backfill", help="turn cost history into Prometheus TSDB blocks")
    kinds = backfill.add_subparsers(dest="backfill_kind", metavar="KIND", required=True)
    focus = kinds.add_parser("focus", help="daily cost series from FOCUS files")
    focus.add_argument("files", nargs="+", metavar="FILE", help="FOCUS files or globs")
    focus.add_argument(
        "--tsdb", required=True, metavar="DIR", help="Prometheus data dir to write blocks into"
    )
    focus.add_argument(
        "--cost",
        choices=["EffectiveCost", "BilledCost"],
        default="EffectiveCost",
        help="cost column (default EffectiveCost)",
    )
    focus.add_argument(
        "--openmetrics", metavar="FILE", help="also keep the generated OpenMetrics text here"
    )
    add_tag_arguments(focus)
    focus.set_defaults(func=run_focus)


def daily_series(
    rows: Iterable[DailyCost],
) -> dict[CostLabels, list[tuple[dt.date, float, float]]]:
    """Per series: (day, that day's cost, month to date) for every day of each month
    from the series' first day in that month to the last day of data in that month."""
    cost: dict[CostLabels, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    last_in_month: dict[tuple[int, int], dt.date] = {}
    for row in rows:
        cost[row.labels][row.day] += row.cost
        month = (row.day.year, row.day.month)
        last_in_month[month] = max(last_in_month.get(month, row.day), row.day)
    out: dict[CostLabels, list[tuple[dt.date, float, float]]] = {}
    for labels in sorted(cost):
        days = cost[labels]
        points = []
        for month in sorted({(d.year, d.month) for d in days}):
            first = min(d for d in days if (d.year, d.month) == month)
            running = 0.0
            day = first
            while day <= last_in_month[month]:
                value = days.get(day, 0.0)
                running += value
                points.append((day, value, running))
                day += dt.timedelta(days=1)
        out[labels] = points
    return out


def openmetrics(series: dict[CostLabels, list[tuple[dt.date, float, float]]]) -> Iterator[str]:
    for spec, index in (
        (metrics.CLOUD_COST_LAST_DAY, 1),
        (metrics.CLOUD_COST_MONTH_TO_DATE, 2),
    ):
        yield f"# HELP {spec.name} {escape_label_value(spec.full_help)}\n"
        yield f"# TYPE {spec.name} gauge\n"
        for labels, points in series.items():
            text = label_text(dict(zip(metrics.CLOUD_COST_LABELS, labels, strict=True)))
            for point in points:
                ts = int(utc_midnight(point[0])) + DAY_SECONDS
                yield f"{spec.name}{text} {point[index]!r} {ts}\n"
    yield "# EOF\n"


def run_focus(args: argparse.Namespace) -> int:
    from aispend.exporters.billing.focus import FocusError, FocusReader
    from aispend.focus_cli import tags_from_arguments

    promtool = shutil.which("promtool")
    if promtool is None:
        print("aispend backfill: promtool not on PATH (Debian package prometheus)", file=sys.stderr)
        return 1
    tags = tags_from_arguments(args, "aispend backfill")
    if tags is None:
        return 2
    try:
        result = FocusReader(args.files, args.cost, tags).daily()
    except FocusError as exc:
        print(f"aispend backfill: {exc}", file=sys.stderr)
        return 1
    if not result.rows:
        print("aispend backfill: the files hold no cost rows; nothing written", file=sys.stderr)
        return 1
    if len(result.currencies) != 1 or not result.currencies[0]:
        found = ", ".join(c or "(empty)" for c in result.currencies)
        print(
            f"aispend backfill: the files' BillingCurrency must be one currency, found {found}:"
            " the series carry no currency and would add them up; backfill each currency's"
            " files on their own, into the stack whose config has that currency",
            file=sys.stderr,
        )
        return 1
    newest = max(row.day for row in result.rows)
    data_ts = data_timestamp(newest, result.newest_period_end, time.time())
    rows = [row for row in result.rows if is_complete(row.day, data_ts)]
    partial = sorted({row.day for row in result.rows if not is_complete(row.day, data_ts)})
    data_end = dt.datetime.fromtimestamp(data_ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if not rows:
        print(
            f"aispend backfill: the files hold no complete day (data up to {data_end});"
            " nothing written",
            file=sys.stderr,
        )
        return 1
    series = daily_series(rows)
    tsdb = Path(args.tsdb)
    # Checked before anything is written: no empty --tsdb left behind by a bad option.
    if tsdb.exists() and not tsdb.is_dir():
        print(f"aispend backfill: --tsdb {tsdb}: must be a directory", file=sys.stderr)
        return 1
    if args.openmetrics and Path(args.openmetrics).is_dir():
        where = args.openmetrics
        print(f"aispend backfill: --openmetrics {where}: must be a file", file=sys.stderr)
        return 1
    if args.openmetrics and not Path(args.openmetrics).parent.is_dir():
        where = Path(args.openmetrics).parent
        print(f"aispend backfill: --openmetrics: no directory {where}", file=sys.stderr)
        return 1
    try:
        tsdb.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="aispend-backfill-") as tmp:
            om = Path(args.openmetrics) if args.openmetrics else Path(tmp) / "history.om.txt"
            with om.open("w", encoding="utf-8") as fh:
                fh.writelines(openmetrics(series))
            command = ["tsdb", "create-blocks-from", "openmetrics", "--quiet", str(om), str(tsdb)]
            done = subprocess.run([promtool, *command], capture_output=True, text=True, check=False)
    except OSError as exc:
        where = exc.filename or tsdb
        print(f"aispend backfill: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if done.returncode != 0:
        print(
            f"aispend backfill: promtool failed ({done.returncode}):\n"
            f"{done.stderr.strip() or done.stdout.strip()}",
            file=sys.stderr,
        )
        return 1
    days = sorted({p[0] for points in series.values() for p in points})
    print(
        f"wrote {len(series)} series x {len(days)} days ({days[0]} to {days[-1]}),"
        f" in {result.currencies[0]}, into {tsdb};"
        " run Prometheus with a --storage.tsdb.retention.time longer than this history"
    )
    if partial:
        print(
            f"left out {', '.join(str(d) for d in partial)}: not complete in the data"
            f" (up to {data_end}); backfill a later export for it"
        )
    return 0
