"""`aispend backfill focus FILE... --tsdb DIR`: a FOCUS export as Prometheus history.

The export's daily costs become the series the billing exporter would have served
at the end of each UTC day, one sample per series per day, timestamped at the day's
end (00:00 UTC of the next day). Only days complete in the data count, as in the
exporter: a last day the export covers in part (data up to 06:00) is left out, and said.
Rows are booked on days as the exporter books them (the same reader): a correction of
an earlier month on the first day of the billing period that invoices it.

- `aispend_cloud_cost_last_day`: that day's cost;
- `aispend_cloud_cost_month_to_date`: the month's cost up to and including that day;
- `aispend_cloud_cost_data_timestamp_seconds{source="focus"}`: the day's end (where the
  bill data ended, as the exporter would have said then);

with the exporter's labels (provider, account, service_category, service, team,
project, environment). They are written as OpenMetrics with timestamps and turned
into TSDB blocks by `promtool tsdb create-blocks-from openmetrics` in DIR (the
Prometheus `--storage.tsdb.path`). So `sum_over_time(aispend_cloud_cost_last_day[30d])`
is the cost of the 30 days before, and `last_over_time(...[1d])` shows the daily
figure on a dashboard. Prometheus deletes blocks older than its retention
(`--storage.tsdb.retention.time`, 15d by default): give it one longer than the history.

Where DIR already holds samples of these series (an earlier backfill), Prometheus keeps
those over new ones at the same timestamps, so a later export that restates a day could
not correct it. Before writing, the existing samples in the range are read
(`promtool tsdb dump`, which also reads a directory a running Prometheus holds); if a
day would get another value, nothing is written and the days are named, with how to
replace them. The same values again (a re-run of one export) are fine. A day whose
samples (at its end) would fall in the newest 3 hours is held back and named: a running
Prometheus may still hold those hours in its head, and a block ending there makes it drop
its older head samples, of every series, when it restarts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import re
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
from aispend.tsdb import HEAD_REACH_S, escape_label_value, label_text

DAY_SECONDS = 86400
SERIES = (metrics.CLOUD_COST_LAST_DAY, metrics.CLOUD_COST_MONTH_TO_DATE)

SampleKey = tuple[str, frozenset[tuple[str, str]], int]
"""(metric name, labels with a value, timestamp in ms): one sample of the backfill."""


def add_parser(sub: Any) -> None:
    from aispend.focus_cli import add_tag_arguments

    backfill = sub.add_parser("backfill", help="turn cost history into Prometheus TSDB blocks")
    kinds = backfill.add_subparsers(dest="backfill_kind", metavar="KIND", required=True)
    focus = kinds.add_parser("focus", help="daily cost series from FOCUS files")
    focus.add_argument("files", nargs="+", metavar="FILE", help="FOCUS files or globs")
    focus.add_argument(
        "--tsdb",
        required=True,
        metavar="DIR",
        help="Prometheus data dir to write blocks into; days it already holds with other"
        " values (an earlier backfill of a since restated export) are refused",
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


def day_end(day: dt.date) -> int:
    """The timestamp (Unix seconds) every sample of `day` is written at: its end."""
    return int(utc_midnight(day)) + DAY_SECONDS


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
                ts = day_end(point[0])
                yield f"{spec.name}{text} {point[index]!r} {ts}\n"
    from aispend.exporters.billing.focus import FocusSource

    # Where the bill data ended, as the exporter would have said then: the day's end.
    stamp = metrics.CLOUD_COST_DATA_TIMESTAMP
    yield f"# HELP {stamp.name} {escape_label_value(stamp.full_help)}\n"
    yield f"# TYPE {stamp.name} gauge\n"
    source = label_text({metrics.SOURCE: FocusSource.name})
    for day in sorted({point[0] for points in series.values() for point in points}):
        ts = day_end(day)
        yield f"{stamp.name}{source} {float(ts)!r} {ts}\n"
    yield "# EOF\n"


def planned_samples(
    series: dict[CostLabels, list[tuple[dt.date, float, float]]],
) -> dict[SampleKey, float]:
    """The samples `openmetrics` writes, keyed as Prometheus stores them (no empty labels)."""
    out: dict[SampleKey, float] = {}
    for labels, points in series.items():
        pairs = zip(metrics.CLOUD_COST_LABELS, labels, strict=True)
        key = frozenset((k, v) for k, v in pairs if v)
        for day, last_day, month_to_date in points:
            ts = day_end(day) * 1000
            out[(metrics.CLOUD_COST_LAST_DAY.name, key, ts)] = last_day
            out[(metrics.CLOUD_COST_MONTH_TO_DATE.name, key, ts)] = month_to_date
    return out


def _newest_block_end(tsdb: Path) -> int | None:
    """The largest maxTime (ms, exclusive) of the blocks in `tsdb`; None without blocks."""
    ends = []
    for meta in tsdb.glob("*/meta.json"):
        try:
            ends.append(int(json.loads(meta.read_text(encoding="utf-8"))["maxTime"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a block (or one being written): promtool reads what it can
    return max(ends) if ends else None


_DUMP_LINE = re.compile(r"^\{(.*)\} (\S+) (-?\d+)$")
_DUMP_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"(?:, |$)')
_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
_GO_CHARS = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _go_unquote(text: str) -> str:
    """A label value as `promtool tsdb dump` prints it (Go strconv.Quote) -> the value."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) > 1:
            return chr(int(code[1:], 16))
        return _GO_CHARS.get(code, code)

    return _GO_ESCAPE.sub(one, text)


def existing_samples(
    promtool: str, tsdb: Path, first_ms: int, last_ms: int
) -> dict[SampleKey, float]:
    """Samples of the backfill's two series already in `tsdb` from `first_ms` to
    `last_ms`. A backfill writes blocks, never the write-ahead log, so the range ends
    before the newest block's end: promtool then has no WAL to replay (it would in a
    Prometheus' live range, and fail where there is no WAL). Scraped series (job,
    instance labels) are skipped. Raises OSError when promtool fails."""
    newest = _newest_block_end(tsdb)
    if newest is None or first_ms > min(last_ms, newest - 1):
        return {}
    names = "|".join(spec.name for spec in SERIES)
    argv = [
        promtool,
        "tsdb",
        "dump",
        f"--min-time={first_ms}",
        f"--max-time={min(last_ms, newest - 1)}",
        f'--match={{__name__=~"{names}"}}',
        str(tsdb),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OSError(f"promtool tsdb dump failed ({done.returncode}): {done.stderr.strip()}")
    allowed = {"__name__", *metrics.CLOUD_COST_LABELS}
    out: dict[SampleKey, float] = {}
    for line in done.stdout.splitlines():
        match = _DUMP_LINE.match(line)
        if match is None:
            continue
        labels = {k: _go_unquote(v) for k, v in _DUMP_LABEL.findall(match.group(1))}
        if not labels.keys() <= allowed:
            continue  # a scraped series (job, instance): not written by a backfill
        name = labels.pop("__name__", "")
        key = (name, frozenset(labels.items()), int(match.group(3)))
        out[key] = float(match.group(2))
    return out


def restated_days(
    planned: dict[SampleKey, float], existing: dict[SampleKey, float]
) -> list[dt.date]:
    """Days (ending at a planned timestamp) whose existing samples differ from the
    planned ones; a series the backfill does not write there counts as 0."""
    stamps = {key[2] for key in planned}
    days = set()
    for key, value in existing.items():
        if key[2] not in stamps:
            continue
        if not math.isclose(value, planned.get(key, 0.0), rel_tol=1e-9, abs_tol=1e-9):
            days.add(dt.datetime.fromtimestamp(key[2] / 1000 - DAY_SECONDS, dt.UTC).date())
    return sorted(days)


def _days_text(days: list[dt.date]) -> str:
    if len(days) <= 6:
        return ", ".join(str(d) for d in days)
    return f"{len(days)} days from {days[0]} to {days[-1]}"


def restated_message(tsdb: Path, days: list[dt.date]) -> str:
    names = "|".join(spec.name for spec in SERIES)
    start, end = (f"{d + dt.timedelta(days=1)}T00:00:00Z" for d in (days[0], days[-1]))
    return (
        f"aispend backfill: {tsdb} already holds other values for {_days_text(days)}"
        " (an earlier backfill; this export restates them), and Prometheus keeps the"
        " samples it holds: nothing written. To replace those days, delete the old samples"
        " and run this again: with Prometheus running with --web.enable-admin-api, POST"
        f' /api/v1/admin/tsdb/delete_series?match[]={{__name__=~"{names}"}}'
        f"&start={start}&end={end} (a day's samples are at its end). Or backfill into an"
        f" empty directory and, with Prometheus stopped, replace the blocks in {tsdb} that"
        " hold those days with the new ones (`promtool tsdb list` shows their time ranges;"
        " the new backfill must cover every day they hold)."
    )


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
    # A day whose samples (at its end) fall in a running Prometheus's head waits.
    latest = time.time() - HEAD_REACH_S
    held = sorted({row.day for row in rows if day_end(row.day) > latest})
    rows = [row for row in rows if day_end(row.day) <= latest]
    if held:
        after = dt.datetime.fromtimestamp(day_end(held[-1]) + HEAD_REACH_S, dt.UTC)
        held_note = (
            f"held back {', '.join(str(d) for d in held)}: its samples, at its end, would be"
            f" in the newest {HEAD_REACH_S // 3600} hours, which a running Prometheus may"
            " still hold in its head (a block there makes it drop its older head samples,"
            " of every series, at restart); backfill it again after"
            f" {after.strftime('%Y-%m-%d %H:%M UTC')}"
        )
        if not rows:
            print(f"aispend backfill: {held_note}; nothing written", file=sys.stderr)
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
    planned = planned_samples(series)
    if tsdb.is_dir():
        stamps = [key[2] for key in planned]
        try:
            existing = existing_samples(promtool, tsdb, min(stamps), max(stamps))
        except OSError as exc:
            print(
                f"aispend backfill: cannot read the samples already in {tsdb} (to check that"
                f" this export does not restate days written before): {exc}",
                file=sys.stderr,
            )
            return 1
        restated = restated_days(planned, existing)
        if restated:
            print(restated_message(tsdb, restated), file=sys.stderr)
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
    if held:
        print(held_note)
    if partial:
        print(
            f"left out {', '.join(str(d) for d in partial)}: not complete in the data"
            f" (up to {data_end}); backfill a later export into the same --tsdb for it"
            " (if that export restates days written now, it is refused and says how to"
            " replace them)"
        )
    return 0
