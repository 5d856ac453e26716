"""Spend history files: CSV `timestamp,team,cost[,project,agent,model,source]` or FOCUS.

`load_history(path)` returns a `History`: one cost-per-interval series per workload
(team, project, agent, model, source) at a regular step. Every problem is a
`HistoryError` naming the file and line, e.g.
`spend.csv line 7: timestamp 2026-08-01T00:05:00Z is not after line 6 (...)`.

Timestamps may be RFC 3339 (`2026-08-01T00:05:00Z`), `YYYY-MM-DD HH:MM:SS[.ffffff]`
(taken as UTC, as in NAB) or Unix seconds. A row's cost is the money spent in the
interval that starts at its timestamp.

A FOCUS export (CSV with `ChargePeriodStart` and `BilledCost` columns) is summed per
UTC day and per team tag (rows without the tag go to team `untagged`).
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aispend import metrics
from aispend.parsing import loads_json

REQUIRED_COLUMNS = ("timestamp", "team", "cost")
OPTIONAL_COLUMNS = ("project", "agent", "model", "source")
FOCUS_MARKERS = ("ChargePeriodStart", "BilledCost")
DAY = 86400


class HistoryError(Exception):
    """A history file cannot be used; the message names the file and line."""


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One workload whose spend is a series: empty strings for absent labels."""

    team: str
    project: str = ""
    agent: str = ""
    model: str = ""
    source: str = ""

    def labels(self) -> dict[str, str]:
        """The non-empty labels, by their metric-contract names."""
        pairs = {
            metrics.TEAM: self.team,
            metrics.PROJECT: self.project,
            metrics.AGENT: self.agent,
            metrics.MODEL: self.model,
            metrics.SOURCE: self.source,
        }
        return {k: v for k, v in pairs.items() if v}


@dataclass
class History:
    """Cost per interval, per series, at a regular `step` (seconds)."""

    step: int
    series: dict[SeriesKey, list[tuple[int, float]]] = field(default_factory=dict)
    gaps_are_unknown: bool = False
    """False: an interval with no row spent nothing (billing exports omit zero rows).
    True: it is unknown (measurements such as NAB's): no samples, no daily total."""

    @property
    def start(self) -> int:
        return min(points[0][0] for points in self.series.values())

    @property
    def end(self) -> int:
        """End of the last interval (exclusive)."""
        return max(points[-1][0] for points in self.series.values()) + self.step

    @property
    def teams(self) -> list[str]:
        return sorted({key.team for key in self.series})

    def team_spans(self) -> dict[str, tuple[int, int]]:
        """Per team, (start of its first interval, end of its last): where it has data."""
        out: dict[str, tuple[int, int]] = {}
        for key, points in self.series.items():
            first, last = points[0][0], points[-1][0] + self.step
            lo, hi = out.get(key.team, (first, last))
            out[key.team] = (min(lo, first), max(hi, last))
        return dict(sorted(out.items()))

    def clip(self, start: int | None, end: int | None) -> History:
        """Only the intervals starting in [start, end)."""
        lo = start if start is not None else -math.inf
        hi = end if end is not None else math.inf
        out = History(self.step, gaps_are_unknown=self.gaps_are_unknown)
        for key, points in self.series.items():
            kept = [p for p in points if lo <= p[0] < hi]
            if kept:
                out.series[key] = kept
        if not out.series:
            raise HistoryError("no history left between --from and --to")
        return out

    def runs(self, points: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
        """`points` split at unknown gaps (more than 1.5 steps between rows) when gaps
        are unknown; else all of them as one run."""
        if not self.gaps_are_unknown:
            return [points]
        out: list[list[tuple[int, float]]] = []
        for point in points:
            if out and point[0] - out[-1][-1][0] <= 1.5 * self.step:
                out[-1].append(point)
            else:
                out.append([point])
        return out

    def team_rows(self, step: int) -> dict[str, dict[int, int]]:
        """Rows per team in buckets of `step` seconds (aligned to the epoch)."""
        out: dict[str, dict[int, int]] = {}
        for key, points in self.series.items():
            buckets = out.setdefault(key.team, {})
            for ts, _ in points:
                buckets[ts - ts % step] = buckets.get(ts - ts % step, 0) + 1
        return out

    def team_totals(self, step: int) -> dict[str, list[tuple[int, float]]]:
        """Cost per team summed into buckets of `step` seconds (aligned to the epoch)."""
        out: dict[str, dict[int, float]] = {}
        for key, points in self.series.items():
            buckets = out.setdefault(key.team, {})
            for ts, cost in points:
                bucket = ts - ts % step
                buckets[bucket] = buckets.get(bucket, 0.0) + cost
        return {team: sorted(b.items()) for team, b in sorted(out.items())}


MAX_UNIX_SECONDS = 1e11
"""Year 5138: a larger Unix number is milliseconds or nanoseconds, not seconds."""


def parse_timestamp(text: str) -> int:
    """Unix seconds from RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]` (UTC) or a Unix number."""
    value = text.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"timestamp {text!r} is not a time")
        if not 0 <= number < MAX_UNIX_SECONDS:
            raise ValueError(
                f"timestamp {text!r} is not Unix seconds from 1970 to 5138"
                + (" (milliseconds? divide by 1000)" if number >= MAX_UNIX_SECONDS else "")
            )
        return int(number)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"timestamp {text!r} is not RFC 3339 (2026-08-01T00:05:00Z), "
            "'YYYY-MM-DD HH:MM:SS' or Unix seconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp())


def format_timestamp(ts: float) -> str:
    """RFC 3339 UTC with a Z, seconds precision."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_cost(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"cost {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"cost {text!r} is not a finite number")
    if value < 0:
        raise ValueError(f"cost {text!r} is negative (spend counters only grow)")
    return value


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs, the header being line 1."""
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise HistoryError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        try:
            fieldnames = reader.fieldnames
        except UnicodeDecodeError as exc:
            raise _not_utf8(path) from exc
        if fieldnames is None:
            raise HistoryError(f"{path}: empty file (expected a header line)")
        # As _header reads them: "timestamp, team, cost" names the same columns.
        reader.fieldnames = [name.strip() for name in fieldnames]
        try:
            for row in reader:
                if None in row:  # DictReader's key for the fields past the header's
                    raise HistoryError(
                        f"{path} line {reader.line_num}: too many fields"
                        f" (expected {len(reader.fieldnames)}; quote a value that holds a comma)"
                    )
                yield reader.line_num, row
        except UnicodeDecodeError as exc:
            # The decoder reads ahead in blocks: reader.line_num is not the bad line.
            raise _not_utf8(path) from exc
        except csv.Error as exc:
            raise HistoryError(f"{path} line {reader.line_num}: not CSV: {exc}") from exc


def _not_utf8(path: Path) -> HistoryError:
    """The error for the first line of `path` that is not UTF-8, found in its bytes."""
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return HistoryError(
                        f"{path} line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at"
                        f" column {exc.start + 1}); re-save the file as UTF-8"
                    )
    except OSError as exc:
        return HistoryError(f"{path}: cannot read: {exc.strerror or exc}")
    return HistoryError(f"{path}: not UTF-8; re-save the file as UTF-8")


def _header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            first = next(csv.reader(handle), None)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path) from exc
    except (OSError, csv.Error) as exc:
        raise HistoryError(f"{path}: cannot read: {exc}") from exc
    if not first:
        raise HistoryError(f"{path}: empty file (expected a header line)")
    names = [name.strip() for name in first]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise HistoryError(
                f"{path} line 1: column {name!r} appears twice (columns"
                f" {names.index(name) + 1} and {index + 1}); keep one"
            )
    return names


def load_history(path: Path | str) -> History:
    """Read a spend CSV or a FOCUS CSV export (detected by its columns)."""
    path = Path(path)
    if path.is_dir():
        raise HistoryError(f"{path}: is a directory (a TSDB is read by the tsdb module)")
    header = _header(path)
    if all(marker in header for marker in FOCUS_MARKERS):
        return load_focus(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise HistoryError(
            f"{path} line 1: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (a history CSV needs timestamp,team,cost; optional "
            f"{','.join(OPTIONAL_COLUMNS)}; or a FOCUS export with "
            f"{' and '.join(FOCUS_MARKERS)})"
        )
    return _load_spend_csv(path, header)


def _load_spend_csv(path: Path, header: list[str]) -> History:
    optional = [c for c in OPTIONAL_COLUMNS if c in header]
    series: dict[SeriesKey, list[tuple[int, float]]] = {}
    lines: dict[SeriesKey, list[int]] = {}
    for line, row in _rows(path):
        if any(row.get(c) is None for c in REQUIRED_COLUMNS):
            raise HistoryError(f"{path} line {line}: too few fields (expected {len(header)})")
        try:
            ts = parse_timestamp(row["timestamp"])
            cost = parse_cost(row["cost"])
        except ValueError as exc:
            raise HistoryError(f"{path} line {line}: {exc}") from None
        team = row["team"].strip()
        if not team:
            raise HistoryError(f"{path} line {line}: empty team")
        key = SeriesKey(team, **{c: (row.get(c) or "").strip() for c in optional})
        points = series.setdefault(key, [])
        row_lines = lines.setdefault(key, [])
        if points and ts <= points[-1][0]:
            what = "duplicate" if ts == points[-1][0] else "unsorted"
            raise HistoryError(
                f"{path} line {line}: {what} timestamp {row['timestamp'].strip()}: "
                f"not after line {row_lines[-1]} ({format_timestamp(points[-1][0])}) "
                f"for {_describe(key)}; rows of one series must be in increasing time order"
            )
        points.append((ts, cost))
        row_lines.append(line)
    if not series:
        raise HistoryError(f"{path}: no rows after the header")
    return History(_infer_step(path, series, lines), series)


def _describe(key: SeriesKey) -> str:
    return ",".join(f"{k}={v}" for k, v in key.labels().items())


def _infer_step(
    path: Path,
    series: dict[SeriesKey, list[tuple[int, float]]],
    lines: dict[SeriesKey, list[int]],
) -> int:
    """The file's step: the smallest gap between two rows of a series. Every gap must be
    a multiple of it (a missing row is an interval of no spend: a series may be sparse).
    A series whose rows are all one larger gap apart (3 rows or more) is at another step,
    not sparse: read at the file's step, each of its rows' cost would be spent in one
    short interval (an hourly team beside a 5-minute one paged every hour)."""
    gaps = {
        key: [b[0] - a[0] for a, b in itertools.pairwise(points)] for key, points in series.items()
    }
    smallest = [(min(g), key) for key, g in gaps.items() if g]
    if not smallest:
        raise HistoryError(f"{path}: a single row per series: cannot tell the step")
    step, example = min(smallest, key=lambda pair: (pair[0], lines[pair[1]][0]))
    example_line = lines[example][gaps[example].index(step) + 1]
    for key, series_gaps in gaps.items():
        for index, gap in enumerate(series_gaps):
            if gap % step:
                raise HistoryError(
                    f"{path} line {lines[key][index + 1]}: irregular step for {_describe(key)}:"
                    f" {gap} s after line {lines[key][index]}, not a multiple of the smallest"
                    f" gap, {step} s ({_describe(example)}, line {example_line}); a history"
                    " needs one regular step (an interval without a row is read as no spend)"
                )
        if len(series_gaps) >= 2 and len(set(series_gaps)) == 1 and series_gaps[0] > step:
            raise HistoryError(
                f"{path} line {lines[key][1]}: {_describe(key)} has a step of"
                f" {series_gaps[0]} s, but {_describe(example)} has {step} s (line"
                f" {example_line}): all series of a history need the same step; resample them"
                " to one (with rows of cost 0 where nothing was spent)"
            )
    return step


def load_focus(path: Path, team_tag: str = "team", cost_column: str = "BilledCost") -> History:
    """Daily cost per team (by the `team_tag` tag) from a FOCUS 1.x CSV export."""
    header = _header(path)
    if cost_column not in header:
        raise HistoryError(f"{path} line 1: missing column {cost_column} (FOCUS cost column)")
    days: dict[str, dict[int, float]] = {}
    currency: tuple[str, int] | None = None  # the first row's, and its line
    check_currency = "BillingCurrency" in header
    for line, row in _rows(path):
        row_currency = (row.get("BillingCurrency") or "").strip()
        if currency is None:
            currency = (row_currency, line)
        if check_currency and (row_currency != currency[0] or not row_currency):
            raise HistoryError(
                f"{path} line {line}: BillingCurrency {row_currency or '(empty)'!s}, but line"
                f" {currency[1]} has {currency[0] or '(empty)'}: one currency per history"
                " (the costs would be added up)"
            )
        start_text = (row.get("ChargePeriodStart") or "").strip()
        try:
            ts = parse_timestamp(start_text)
        except ValueError as exc:
            raise HistoryError(f"{path} line {line}: ChargePeriodStart: {exc}") from None
        text = (row.get(cost_column) or "").strip()
        try:
            cost = float(text)
        except ValueError:
            raise HistoryError(
                f"{path} line {line}: {cost_column} {text!r} is not a number"
            ) from None
        if not math.isfinite(cost):
            raise HistoryError(f"{path} line {line}: {cost_column} is not a finite number")
        team = _focus_team(path, line, row.get("Tags"), team_tag)
        day = ts - ts % DAY
        per_team = days.setdefault(team, {})
        per_team[day] = per_team.get(day, 0.0) + cost
    if not days:
        raise HistoryError(f"{path}: no rows after the header")
    series: dict[SeriesKey, list[tuple[int, float]]] = {}
    for team, per_day in sorted(days.items()):
        first, last = min(per_day), max(per_day)
        # Credits can make a day negative: a spend counter only grows, so clamp at 0.
        series[SeriesKey(team, source="focus")] = [
            (day, max(per_day.get(day, 0.0), 0.0)) for day in range(first, last + DAY, DAY)
        ]
    return History(DAY, series)


def _focus_team(path: Path, line: int, tags: str | None, team_tag: str) -> str:
    if not tags or tags.strip() in ("", "NULL"):
        return metrics.UNTAGGED_TEAM
    try:
        parsed = loads_json(tags)
    except ValueError:
        raise HistoryError(f"{path} line {line}: Tags is not a JSON object") from None
    if not isinstance(parsed, dict):
        raise HistoryError(f"{path} line {line}: Tags is not a JSON object")
    value = parsed.get(team_tag)
    team = str(value).strip() if value is not None else ""
    return team or metrics.UNTAGGED_TEAM  # a blank tag as the billing exporter reads it
