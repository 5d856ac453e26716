"""FOCUS cost exports (CSV, CSV.gz, Parquet; Azure, AWS, GCP) read with DuckDB.

`FocusReader` validates that every file carries the FOCUS 1.0 mandatory columns
(naming each one that is missing), then aggregates the chosen cost column
(EffectiveCost or BilledCost) per provider, billing account, service category,
service, UTC day and `Tags`. A row's day is that of its ChargePeriodStart, or the first
day of its billing period when it is charged before it (FOCUS files corrections of a
closed period in the billing period that invoices them). Tags (a JSON object; a MAP in
some Parquet exports) are parsed once per distinct value, after the aggregation, into
team / project / environment through the configured tag keys. Cost without a team tag
is kept under team `untagged` (`metrics.UNTAGGED_TEAM`), never dropped.

CSV files are read with an explicit dialect and explicit column types (no sniffing),
so a malformed file fails with the file, the line and the column: DuckDB's own error,
shortened by `_explain`. Charge periods are grouped as read and parsed (as UTC, which
FOCUS requires) only after the aggregation, once per distinct value; a value that is
not a timestamp is then looked up on its lines (a Python scan, only on that error).
"""

from __future__ import annotations

import csv
import datetime as dt
import glob
import gzip
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from aispend import metrics
from aispend.exporters.billing.model import (
    CostLabels,
    DailyCost,
    ResourceCost,
    Snapshot,
    build_snapshot,
    data_timestamp,
    served_month,
)
from aispend.exporters.billing.settings import (
    CostColumn,
    FocusSettings,
    FocusTags,
    remote_url_error,
)
from aispend.parsing import loads_json

MANDATORY_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)
"""The FOCUS 1.0 columns whose feature level is Mandatory."""

DERIVED_COLUMNS = ("team", "project", "environment")
"""Columns `summarize --by` accepts on top of the file's: parsed from `Tags`."""

NULL_STRINGS = ("NULL", "")
TIME_COLUMNS = {
    "start": "ChargePeriodStart",
    "end": "ChargePeriodEnd",
    "billing_start": "BillingPeriodStart",
}
"""Timestamps of the exporter's aggregate (alias -> FOCUS column), checked as such."""
DAY_SECONDS = 86400
FUTURE_TOLERANCE_SECONDS = DAY_SECONDS
"""How far after the read time a ChargePeriodStart may be (clock skew, or a day that
has begun in a time zone ahead). A later row is refused: its cost would fall outside
every figure (month to date, last day) and it would make stale data look fresh."""
EXACT = "DECIMAL(38,18)"
FAST = "DOUBLE"


class FocusError(Exception):
    """A FOCUS file cannot be used: the message names the file, line and column."""


@dataclass(frozen=True)
class FocusFile:
    path: Path
    columns: tuple[str, ...]
    column_types: dict[str, str]
    parquet: bool


@dataclass(frozen=True)
class DailyResult:
    rows: list[DailyCost]
    newest_period_end: float | None  # of the charge periods of a day or less
    resources: tuple[ResourceCost, ...]
    currencies: tuple[str, ...]


def expand_paths(patterns: Sequence[str]) -> list[Path]:
    """Paths and globs -> sorted distinct files; a pattern that matches nothing is an error.

    A file reached twice (two patterns, `./x` and its absolute path, a symlink) is read
    once: its cost would otherwise be counted twice. A URL is refused (naming it without
    its query: a SAS token), not looked for as a file."""
    found: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        remote = remote_url_error(pattern)
        if remote:
            raise FocusError(remote)
        matches = (
            sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        )
        files = [Path(m) for m in matches if Path(m).is_file()]
        if not files and matches == [pattern] and Path(pattern).is_dir():
            raise FocusError(
                f"{pattern}: is a directory; give a glob of its files, such as"
                f" {Path(pattern) / '**' / '*.parquet'}"
            )
        if not files:
            raise FocusError(
                f"{pattern}: no such file" + (" (glob matched none)" if matches == [] else "")
            )
        for file in files:
            real = file.resolve()
            if real not in seen:
                seen.add(real)
                found.append(file)
    return found


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _csv_header(path: Path) -> list[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise FocusError(f"{path}: cannot read the CSV header: {exc}") from exc
    if not header:
        raise FocusError(f"{path}: empty file (no header line)")
    return [h.strip() for h in header]


def inspect_file(con: Any, path: Path) -> FocusFile:
    if _is_parquet(path):
        try:
            described = con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_sql_str(str(path))})"
            ).fetchall()
        except Exception as exc:
            raise FocusError(f"{path}: not a readable Parquet file: {_explain(exc)}") from exc
        types = {row[0]: str(row[1]) for row in described}
        return FocusFile(path, tuple(types), types, True)
    header = _csv_header(path)
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise FocusError(f"{path}: duplicate columns in the header: {', '.join(dupes)}")
    return FocusFile(path, tuple(header), {h: "VARCHAR" for h in header}, False)


def check_columns(file: FocusFile, needed: Sequence[str] = MANDATORY_COLUMNS) -> None:
    missing = [c for c in needed if c not in file.columns]
    if missing:
        raise FocusError(
            f"{file.path}: not a FOCUS export: missing column{'s' if len(missing) > 1 else ''}"
            f" {', '.join(missing)} ({len(file.columns)} columns found)"
        )


def _source_sql(file: FocusFile, wanted: Sequence[str], cost_type: str) -> str:
    """One file as a relation of the `wanted` columns, costs and timestamps typed."""
    if file.parquet:
        exprs = []
        for col in wanted:
            if col not in file.columns:
                exprs.append(f"NULL::VARCHAR AS {_ident(col)}")
            elif col in ("EffectiveCost", "BilledCost"):
                exprs.append(f"CAST({_ident(col)} AS {cost_type}) AS {_ident(col)}")
            elif col == "Tags" and file.column_types[col].upper().startswith(("MAP", "STRUCT")):
                exprs.append(f"CAST(to_json({_ident(col)}) AS VARCHAR) AS {_ident(col)}")
            else:
                exprs.append(f"CAST({_ident(col)} AS VARCHAR) AS {_ident(col)}")
        return f"SELECT {', '.join(exprs)} FROM read_parquet({_sql_str(str(file.path))})"
    types = {}
    for col in file.columns:
        if col in ("EffectiveCost", "BilledCost") and col in wanted:
            types[col] = cost_type
        else:
            types[col] = "VARCHAR"
    columns = "{" + ", ".join(f"{_sql_str(c)}: {_sql_str(t)}" for c, t in types.items()) + "}"
    nulls = "[" + ", ".join(_sql_str(n) for n in NULL_STRINGS) + "]"
    reader = (
        f"read_csv({_sql_str(str(file.path))}, header=true, delim=',', quote='\"',"
        f" escape='\"', nullstr={nulls}, auto_detect=false, columns={columns})"
    )
    exprs = [_ident(c) if c in file.columns else f"NULL::VARCHAR AS {_ident(c)}" for c in wanted]
    return f"SELECT {', '.join(exprs)} FROM {reader}"


_LINE_RE = re.compile(r"CSV Error on Line: (\d+)")
_KEEP_RE = re.compile(
    r"(Error when converting column .*|Expected Number of Columns.*|"
    r"Could not convert .*|Conversion Error: (?!CSV).*|Value with unterminated quote.*|"
    r"Invalid unicode.*)"
)


def _explain(exc: Exception) -> str:
    """DuckDB's long error text -> the line and the sentence that says what is wrong."""
    text = str(exc)
    parts = []
    line = _LINE_RE.search(text)
    if line:
        parts.append(f"line {line.group(1)}")
    kept = [m.group(1).strip() for m in _KEEP_RE.finditer(text)]
    parts.extend(dict.fromkeys(kept))
    if not kept:
        parts.append(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    return ": ".join(parts)


class FocusReader:
    """Reads a set of FOCUS files; every method opens its own DuckDB connection."""

    def __init__(
        self,
        patterns: Sequence[str],
        cost_column: CostColumn = "EffectiveCost",
        tags: FocusTags | None = None,
        threads: int | None = None,
        memory_limit: str | None = None,
    ):
        self.patterns = list(patterns)
        self.cost_column = cost_column
        self.tags = tags or FocusTags()
        self.threads = threads
        self.memory_limit = memory_limit

    def _connect(self) -> Any:
        import duckdb

        con = duckdb.connect(":memory:")
        con.execute("SET TimeZone='UTC'")
        if self.threads:
            con.execute(f"SET threads={int(self.threads)}")
        if self.memory_limit:
            con.execute(f"SET memory_limit={_sql_str(self.memory_limit)}")
        return con

    def _files(self, con: Any, needed: Sequence[str]) -> list[FocusFile]:
        files = [inspect_file(con, p) for p in expand_paths(self.patterns)]
        for f in files:
            check_columns(f, needed)
        return files

    def _union(self, files: Sequence[FocusFile], wanted: Sequence[str], cost_type: str) -> str:
        return " UNION ALL ".join(f"({_source_sql(f, wanted, cost_type)})" for f in files)

    def _run(self, con: Any, sql: str, files: Sequence[FocusFile]) -> list[tuple[Any, ...]]:
        try:
            return list(con.execute(sql).fetchall())
        except Exception as exc:
            if isinstance(exc, FocusError):
                raise
            names = ", ".join(str(f.path) for f in files)
            where = _failing_file(str(exc), files) or names
            raise FocusError(f"{where}: {_explain(exc)}") from exc

    def _tag_sql(self, column: str) -> str:
        keys = (self.tags.team, self.tags.project, self.tags.environment)
        # DuckDB's JSON paths do not decode \u escapes: keep the key's own characters.
        paths = ", ".join(_sql_str("$." + json.dumps(k, ensure_ascii=False)) for k in keys)
        return f"json_extract_string({column}, [{paths}])"

    def _check_tags(self, con: Any, table: str, files: Sequence[FocusFile]) -> None:
        bad = self._run(
            con,
            f"SELECT tags FROM {table} WHERE tags IS NOT NULL AND NOT json_valid(tags) LIMIT 1",
            files,
        )
        if bad:
            raise FocusError(_bad_tags_message(files, str(bad[0][0])))

    def _check_daily(
        self, con: Any, table: str, files: Sequence[FocusFile], read_at: float
    ) -> None:
        """One scan for what the exporter refuses: Tags that are not JSON; NaN, Infinity
        or an overflowing sum (DOUBLE takes them, an exporter must not); an empty cost
        (FOCUS: never null; a sum would count it as 0); no start; a period that is not a
        timestamp (DuckDB's cast error would not say where; DuckDB reads `infinity`);
        a start in the future (FUTURE_TOLERANCE_SECONDS after `read_at`)."""
        times = [
            f"list(DISTINCT {_ident(alias)}) FILTER (WHERE {_ident(alias)} IS NOT NULL"
            f" AND NOT coalesce(isfinite(TRY_CAST({_ident(alias)} AS TIMESTAMPTZ)), false))"
            for alias in TIME_COLUMNS
        ]
        latest = read_at + FUTURE_TOLERANCE_SECONDS
        bad_tags, bad_costs, null_costs, no_start, future, *bad_times = self._run(
            con,
            f"""SELECT any_value(tags) FILTER (WHERE tags IS NOT NULL AND NOT json_valid(tags)),
                       count(*) FILTER (WHERE NOT isfinite(cost)),
                       coalesce(sum(null_costs), 0),
                       count(*) FILTER (WHERE start IS NULL),
                       list(DISTINCT start) FILTER (WHERE
                           TRY_CAST(start AS TIMESTAMPTZ) > to_timestamp({float(latest)})),
                       {", ".join(times)}
                FROM {table}""",
            files,
        )[0]
        for column, bad in zip(TIME_COLUMNS.values(), bad_times, strict=True):
            if bad:
                raise FocusError(_bad_times_message(files, column, {str(v).strip() for v in bad}))
        if future:
            raise FocusError(_future_message(files, {str(v).strip() for v in future}, read_at))
        if bad_tags is not None:
            raise FocusError(_bad_tags_message(files, str(bad_tags)))
        if null_costs:
            raise FocusError(_null_costs_message(files, self.cost_column))
        if bad_costs:
            raise FocusError(_bad_costs_message(files, self.cost_column))
        if no_start:
            raise FocusError(
                f"{', '.join(str(f.path) for f in files)}: rows without ChargePeriodStart"
            )

    # ------------------------------------------------------------ exporter figures

    def daily(self, resource_cap: int | None = None, read_at: float | None = None) -> DailyResult:
        """Cost per label set and UTC day; with `resource_cap`, top resources too: their
        cost in the month `build_snapshot(..., read_at)` serves (`read_at`: when the data
        is read, by default now)."""
        con = self._connect()
        try:
            return self._daily(con, resource_cap, time.time() if read_at is None else read_at)
        finally:
            con.close()

    def _daily(self, con: Any, resource_cap: int | None, read_at: float) -> DailyResult:
        files = self._files(con, MANDATORY_COLUMNS)
        cost = _ident(self.cost_column)
        wanted = [
            "ProviderName",
            "BillingAccountId",
            "ServiceCategory",
            "ServiceName",
            "ChargePeriodStart",
            "ChargePeriodEnd",
            "BillingPeriodStart",
            "BillingCurrency",
            "Tags",
            self.cost_column,
        ]
        resource_key = ""
        if resource_cap:
            wanted.append("ResourceId")
            resource_key = ", ResourceId AS resource"
        src = self._union(files, wanted, FAST)
        self._run(
            con,
            f"""CREATE TEMP TABLE agg AS
            SELECT ProviderName AS provider, BillingAccountId AS account,
                   ServiceCategory AS category, ServiceName AS service, Tags AS tags,
                   ChargePeriodStart AS start, ChargePeriodEnd AS "end",
                   BillingPeriodStart AS billing_start{resource_key},
                   BillingCurrency AS currency, sum({cost}) AS cost,
                   count(*) - count({cost}) AS null_costs
            FROM ({src}) GROUP BY ALL""",
            files,
        )
        self._check_daily(con, "agg", files, read_at)
        tag = self._tag_sql("tags")
        untagged = _sql_str(metrics.UNTAGGED_TEAM)
        # A row charged before its billing period (a correction or late usage of a period
        # already invoiced) counts in the period that invoices it: on that period's first
        # day. On its own day it would fall in a month no figure shows any more.
        day = (
            "greatest(CAST(CAST(start AS TIMESTAMPTZ) AS DATE),"
            " CAST(CAST(billing_start AS TIMESTAMPTZ) AS DATE))"
        )
        labelled = f"""SELECT coalesce(provider, '') AS provider, coalesce(account, '') AS account,
                   coalesce(category, '') AS category, coalesce(service, '') AS service,
                   coalesce(nullif(trim(t[1]), ''), {untagged}) AS team,
                   coalesce(trim(t[2]), '') AS project, coalesce(trim(t[3]), '') AS environment,
                   {day} AS day,
                   epoch(CAST(start AS TIMESTAMPTZ)) AS period_start,
                   epoch(CAST("end" AS TIMESTAMPTZ)) AS period_end,
                   cost, currency{", resource" if resource_cap else ""}
            FROM (SELECT *, {tag} AS t FROM agg)"""
        self._run(con, f"CREATE TEMP TABLE labelled AS {labelled}", files)
        rows = self._run(
            con,
            """SELECT provider, account, category, service, team, project, environment,
                      day, sum(cost) FROM labelled GROUP BY ALL""",
            files,
        )
        # The data reaches as far as its rows of a day or less: a longer row (a month's
        # tax or fee, booked on its first day) ends where the month ends, whatever the
        # export covers so far. No such row: the end of the newest day (data_timestamp).
        stats = self._run(
            con,
            f"SELECT max(period_end) FILTER (WHERE period_end - period_start <= {DAY_SECONDS}),"
            " list(DISTINCT cur ORDER BY cur) FROM (SELECT period_start, period_end,"
            " coalesce(trim(currency), '') AS cur FROM labelled)",
            files,
        )
        newest_end = float(stats[0][0]) if stats[0][0] is not None else None
        currencies = tuple(stats[0][1] or [])  # "": rows without a BillingCurrency
        daily = [DailyCost(CostLabels(*(str(v) for v in r[:7])), r[7], float(r[8])) for r in rows]
        resources: tuple[ResourceCost, ...] = ()
        if resource_cap and daily:
            # Of the month the figures' month to date is of (not the newest booked day's:
            # a row billed next month is booked on a day the data has not reached).
            newest = max(d.day for d in daily)
            month = served_month(newest, data_timestamp(newest, newest_end, read_at))
            resources = self._resources(con, files, month, resource_cap)
        return DailyResult(daily, newest_end, resources, currencies)

    def _resources(
        self, con: Any, files: Sequence[FocusFile], month: tuple[int, int], cap: int
    ) -> tuple[ResourceCost, ...]:
        start = dt.date(month[0], month[1], 1)
        end = dt.date(month[0] + month[1] // 12, month[1] % 12 + 1, 1)
        rows = self._run(
            con,
            f"""SELECT provider, account, service, team, coalesce(resource, '') AS resource,
                       sum(cost) AS cost
                FROM labelled
                WHERE day >= DATE '{start.isoformat()}' AND day < DATE '{end.isoformat()}'
                GROUP BY ALL ORDER BY abs(sum(cost)) DESC, resource""",
            files,
        )
        top = [
            ResourceCost(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), float(r[5]))
            for r in rows[:cap]
        ]
        rest: dict[tuple[str, str, str, str], float] = {}
        for r in rows[cap:]:
            key = (str(r[0]), str(r[1]), str(r[2]), str(r[3]))
            rest[key] = rest.get(key, 0.0) + float(r[5])
        top += [ResourceCost(*k, metrics.OTHER, v) for k, v in sorted(rest.items())]
        return tuple(top)

    # ------------------------------------------------------------ summarize

    def summarize(self, by: Sequence[str]) -> tuple[list[str], list[tuple[str, ...]]]:
        """Exact (decimal) totals of the cost column grouped by `by` and the currency."""
        con = self._connect()
        try:
            return self._summarize(con, by)
        finally:
            con.close()

    def _summarize(self, con: Any, by: Sequence[str]) -> tuple[list[str], list[tuple[str, ...]]]:
        by = list(dict.fromkeys(by))
        derived = [c for c in by if c in DERIVED_COLUMNS]
        direct = [c for c in by if c not in DERIVED_COLUMNS]
        files = self._files(con, [*MANDATORY_COLUMNS, *direct])
        group = [*by, *([] if "BillingCurrency" in by else ["BillingCurrency"])]
        direct_group = [c for c in group if c not in DERIVED_COLUMNS]
        wanted = list(
            dict.fromkeys([*direct_group, self.cost_column, *(["Tags"] if derived else [])])
        )
        src = self._union(files, wanted, EXACT)
        key = ", ".join(_ident(c) for c in direct_group)
        tags = ", Tags AS tags" if derived else ""
        self._run(
            con,
            f"CREATE TEMP TABLE agg AS SELECT {key}{tags}, sum({_ident(self.cost_column)}) AS cost,"
            f" count(*) AS n, count(*) - count({_ident(self.cost_column)}) AS null_costs"
            f" FROM ({src}) GROUP BY ALL",
            files,
        )
        if self._run(con, "SELECT coalesce(sum(null_costs), 0) FROM agg", files)[0][0]:
            raise FocusError(_null_costs_message(files, self.cost_column))
        if derived:
            self._check_tags(con, "agg", files)
        outs = []
        for col in group:
            if col in DERIVED_COLUMNS:
                index = DERIVED_COLUMNS.index(col) + 1
                default = _sql_str(metrics.UNTAGGED_TEAM if col == "team" else "")
                outs.append(f"coalesce(nullif(trim(t[{index}]), ''), {default}) AS {_ident(col)}")
            else:
                outs.append(f"CAST({_ident(col)} AS VARCHAR) AS {_ident(col)}")
        inner = (
            f"SELECT *, {self._tag_sql('tags')} AS t FROM agg" if derived else "SELECT * FROM agg"
        )
        cols = ", ".join(_ident(c) for c in group)
        rows = self._run(
            con,
            f"SELECT {cols}, CAST(sum(cost) AS VARCHAR) FROM (SELECT {', '.join(outs)}, cost FROM"
            f" ({inner})) GROUP BY ALL ORDER BY ALL",
            files,
        )
        header = [*group, self.cost_column]
        out = [(*("" if v is None else str(v) for v in r[:-1]), _plain(r[-1])) for r in rows]
        return header, out


def _plain(value: str | None) -> str:
    """A decimal as plain text without trailing zeros (`0.150000` -> `0.15`)."""
    if value is None:
        return "0"
    d = Decimal(value)
    if d == 0:
        return "0"
    text = format(d.normalize(), "f")
    return text


def _failing_file(text: str, files: Sequence[FocusFile]) -> str | None:
    match = re.search(r"file = (.+)", text)
    if match:
        return match.group(1).strip()
    for f in files:
        if str(f.path) in text:
            return str(f.path)
    return None


def _bad_tags_message(files: Sequence[FocusFile], sample: str) -> str:
    """Find the lines with invalid Tags JSON (only on this error path: a Python scan)."""
    for f in files:
        lines = list(_bad_lines(f, "Tags", _not_json, limit=5))
        if lines:
            return f"{f.path}: column Tags is not a JSON object on {_lines(lines)}"
    return f"column Tags is not valid JSON: {sample[:80]!r}"


def _bad_costs_message(files: Sequence[FocusFile], column: str) -> str:
    """Find the lines whose cost is not a finite number (only on this error path)."""
    return _column_lines_message(
        files, column, _not_finite, "is NaN or infinite", "is NaN or infinite, or its sum overflows"
    )


def _bad_times_message(files: Sequence[FocusFile], column: str, bad: set[str]) -> str:
    """`FILE: column C is not a timestamp on lines ...: 'value'` (only on this error path)."""
    problem, sample = "is not a timestamp", f": {sorted(bad)[0]!r}"
    return _column_lines_message(files, column, lambda v: v in bad, problem, problem, sample)


def _future_message(files: Sequence[FocusFile], bad: set[str], read_at: float) -> str:
    """`FILE: column ChargePeriodStart is more than 1 day after ... on lines ...`."""
    read = dt.datetime.fromtimestamp(read_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    days = FUTURE_TOLERANCE_SECONDS / DAY_SECONDS
    problem = f"is more than {days:g} day{'s' if days != 1 else ''} after the read time ({read})"
    note = (
        f": {sorted(bad)[0]!r} (a row from the future would be left out of every figure:"
        " check the clock of this host and of the export)"
    )
    column = TIME_COLUMNS["start"]
    return _column_lines_message(files, column, lambda v: v in bad, problem, problem, note)


def _null_costs_message(files: Sequence[FocusFile], column: str) -> str:
    """Find the lines whose cost is empty or NULL (only on this error path)."""
    never = " (FOCUS: never null)"
    return _column_lines_message(
        files, column, _is_null, "is empty", "is empty on some rows", never
    )


def _column_lines_message(
    files: Sequence[FocusFile],
    column: str,
    is_bad: Callable[[str], bool],
    problem: str,
    unplaced: str,
    note: str = "",
) -> str:
    """`FILE: column C <problem> on lines ...`, or without lines (Parquet, or a sum)."""
    for f in files:
        lines = list(_bad_lines(f, column, is_bad, limit=5))
        if lines:
            return f"{f.path}: column {column} {problem} on {_lines(lines)}{note}"
    paths = ", ".join(str(f.path) for f in files)
    return f"{paths}: column {column} {unplaced}{note}"


def _lines(numbers: list[int]) -> str:
    return ("line " if len(numbers) == 1 else "lines ") + ", ".join(str(n) for n in numbers)


def _not_json(value: str) -> bool:
    if value in NULL_STRINGS:
        return False
    try:
        loads_json(value)
    except ValueError:
        return True
    return False


def _is_null(value: str) -> bool:
    return value in NULL_STRINGS


def _not_finite(value: str) -> bool:
    if value in NULL_STRINGS:
        return False
    try:
        return not math.isfinite(float(value))
    except ValueError:
        return False  # not a number at all: DuckDB's cast reports that itself


def _bad_lines(
    file: FocusFile, column: str, is_bad: Callable[[str], bool], limit: int
) -> Iterator[int]:
    """Line numbers of a CSV file (not Parquet) whose `column` value (stripped) `is_bad`."""
    if file.parquet or column not in file.columns:
        return
    opener = gzip.open if file.path.name.lower().endswith(".gz") else open
    found = 0
    with opener(file.path, "rt", encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            value = (row.get(column) or "").strip()
            if not is_bad(value):
                continue
            found += 1
            yield reader.line_num
            if found >= limit:
                return


class FocusSource:
    """A billing source that re-reads the FOCUS files on each fetch."""

    name = "focus"
    throttled = 0

    def __init__(
        self, settings: FocusSettings, currency: str, clock: Callable[[], float] = time.time
    ):
        self.settings = settings
        self.currency = currency
        self.refresh_interval = settings.refresh_interval_seconds
        self._clock = clock
        self.reader = FocusReader(settings.paths, settings.cost_column, settings.tags)

    def fetch(self) -> Snapshot:
        fetched_at = self._clock()
        cap = self.settings.max_resources if self.settings.resource_series else None
        result = self.reader.daily(resource_cap=cap, read_at=fetched_at)
        other = [c or "(empty)" for c in result.currencies if c != self.currency]
        if other:
            raise FocusError(
                f"{', '.join(self.settings.paths)}: BillingCurrency {', '.join(other)}, but the"
                f" config's currency is {self.currency}"
            )
        return build_snapshot(result.rows, result.newest_period_end, fetched_at, result.resources)
