"""Shared by the backtest benchmarks: the labelled data sets, and docs section writing.

- `spend_traces`: the 12 labelled spend traces in ../shared/data/spend-traces as one
  History (one team per file) and per-team Labels, plus each incident's type.
- `nab_histories`: the NAB realKnownCause series, values taken as spend per interval,
  one History per sampling step (the series differ: 5 min, 30 min, 1 h).
NAB timestamps are local wall-clock times, so two files repeat or go back an hour at a
daylight-saving change: such rows are dropped here (counted in the output); the
`aispend backtest` CLI itself rejects them with the line number.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aispend.backtest.history import (  # noqa: E402
    History,
    SeriesKey,
    load_history,
    parse_timestamp,
)
from aispend.backtest.labels import Labels, parse_windows  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"
TRACES = SHARED_DATA / "spend-traces"
NAB = SHARED_DATA / "nab"


@dataclass
class Dataset:
    name: str
    history: History
    labels: Labels
    incident_types: dict[tuple[str, int], str]
    """(team, window start) -> incident type, where known."""
    dropped_rows: int = 0


def _clip_days(history: History, days: int | None) -> History:
    if days is None:
        return history
    return history.clip(history.start, history.start + days * 86400)


def spend_traces(limit: int | None = None, days: int | None = None) -> Dataset:
    labels_raw = json.loads((TRACES / "labels.json").read_text())
    incidents = json.loads((TRACES / "incidents.json").read_text())
    files = sorted((TRACES / "traces").glob("spend_*.csv"))[:limit]
    merged: History | None = None
    windows: dict[str | None, list] = {}
    types: dict[tuple[str, int], str] = {}
    for path in files:
        one = load_history(path)
        key = f"traces/{path.name}"
        (team,) = one.teams
        windows[team] = parse_windows(labels_raw.get(key, []), key)
        for incident in incidents.get(key, []):
            types[(team, parse_timestamp(incident["start"]))] = incident["type"]
        if merged is None:
            merged = History(one.step)
        merged.series.update(one.series)
    assert merged is not None, f"no traces in {TRACES}"
    return Dataset("spend-traces", _clip_days(merged, days), Labels("spend-traces", windows), types)


def nab_histories(limit: int | None = None, days: int | None = None) -> list[Dataset]:
    windows_raw = json.loads((NAB / "combined_windows.json").read_text())
    by_step: dict[int, Dataset] = {}
    for path in sorted((NAB / "realKnownCause").glob("*.csv"))[:limit]:
        team = path.stem.replace("_", "-")
        points: list[tuple[int, float]] = []
        dropped = 0
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                ts = parse_timestamp(row["timestamp"])
                if points and ts <= points[-1][0]:
                    dropped += 1
                    continue
                points.append((ts, max(float(row["value"]), 0.0)))
        # The usual interval: a few irregular rows must not set the step (a 5-minute
        # series with one 1-minute pair is not a 1-minute series with 80 % gaps).
        step = statistics.mode(b[0] - a[0] for a, b in itertools.pairwise(points))
        key = f"realKnownCause/{path.name}"
        data = by_step.setdefault(
            step,
            Dataset(f"nab-{step}s", History(step, gaps_are_unknown=True), Labels("nab", {}), {}),
        )
        data.history.series[SeriesKey(team)] = points
        data.labels.windows[team] = parse_windows(windows_raw.get(key, []), key)
        data.dropped_rows += dropped
    out = []
    for data in by_step.values():
        data.history = _clip_days(data.history, days)
        out.append(data)
    return out


def write_section(path: Path, title: str, body: str) -> None:
    """Replace (or append) the `## title` section of a markdown file."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = f"## {title}\n"
    section = heading + "\n" + body.strip("\n") + "\n"
    start = text.find(heading)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    path.write_text(text)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def add_subset_arguments(parser: argparse.ArgumentParser, files: str) -> None:
    """--limit, --days, --rules and --output, shared by the backtest benchmarks."""
    parser.add_argument("--limit", type=int, help=f"only the first N {files}")
    parser.add_argument("--days", type=int, help="only the first N days of each history")
    parser.add_argument("--rules", type=Path, help="rules directory (default alert-rules/)")
    parser.add_argument(
        "--output", type=Path, default=REPO / "docs" / "benchmarks.md", help="markdown file"
    )


def measured_on(load_before: float) -> str:
    """The opening of a section: date, machine and load when the run began."""
    return (
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on this machine "
        f"({os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{load_before:.1f} at the start)"
    )


def command_line() -> str:
    """The command that reproduces this run, as the docs print it."""
    script = Path(sys.argv[0]).name
    return f".venv/bin/python benchmarks/{script}" + "".join(f" {a}" for a in sys.argv[1:])
