"""Incident labels in the NAB `combined_windows.json` shape.

The file maps a key (a data file's path, e.g. `traces/spend_0001.csv` or
`realKnownCause/nyc_taxi.csv`) to a list of `[start, end]` windows. The entry used for
a history is the one whose key is a path suffix of the history file (the longest such
key; the path as given, then with symlinks resolved), or the one named by
`--label-key`. The windows apply to every team of that history unless the value is an
object mapping team to windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aispend.backtest.history import format_timestamp, parse_timestamp
from aispend.parsing import loads_json


class LabelsError(Exception):
    """The labels file cannot be used for this history."""


@dataclass(frozen=True)
class Window:
    start: int
    end: int

    def __str__(self) -> str:
        return f"{format_timestamp(self.start)}..{format_timestamp(self.end)}"


@dataclass(frozen=True)
class Labels:
    """Incident windows per team; `None` team means every team of the history."""

    key: str
    windows: dict[str | None, list[Window]]

    def for_team(self, team: str) -> list[Window]:
        return self.windows.get(team, self.windows.get(None, []))


def read_labels_file(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    try:
        data = loads_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # not JSON, too deep, or not UTF-8
        raise LabelsError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LabelsError(f"{path}: must be a JSON object of key -> list of [start, end]")
    return data


def choose_key(data: dict[str, Any], history: Path | str, key: str | None = None) -> str:
    """The explicit key, or the longest key that is a path suffix of `history`."""
    if key is not None:
        if key not in data:
            raise LabelsError(f"--label-key {key!r} is not in the labels file")
        return key
    # As typed first: a symlink's own path is the one its label key names.
    for path in (Path(history).absolute(), Path(history).resolve()):
        best = _longest_suffix_key(data, path)
        if best is not None:
            return best
    raise LabelsError(
        f"no key in the labels file is a path suffix of {history}; pass --label-key KEY"
    )


def _longest_suffix_key(data: dict[str, Any], path: Path) -> str | None:
    parts = path.parts
    best: str | None = None
    for candidate in data:
        cparts = Path(candidate).parts
        matches = bool(cparts) and tuple(parts[-len(cparts) :]) == cparts
        if matches and (best is None or len(cparts) > len(Path(best).parts)):
            best = candidate
    return best


def parse_windows(raw: Any, where: str) -> list[Window]:
    if not isinstance(raw, list):
        raise LabelsError(f"{where}: must be a list of [start, end] windows")
    out = []
    for i, item in enumerate(raw):
        if not (isinstance(item, list) and len(item) == 2):
            raise LabelsError(f"{where}[{i}]: must be [start, end]")
        try:
            start, end = (parse_timestamp(str(v)) for v in item)
        except ValueError as exc:
            raise LabelsError(f"{where}[{i}]: {exc}") from None
        if end < start:
            raise LabelsError(f"{where}[{i}]: end is before start")
        out.append(Window(start, end))
    return sorted(out, key=lambda w: w.start)


def load_labels(path: Path | str, history: Path | str, key: str | None = None) -> Labels:
    data = read_labels_file(path)
    chosen = choose_key(data, history, key)
    value = data[chosen]
    if isinstance(value, dict):
        windows: dict[str | None, list[Window]] = {
            str(team): parse_windows(raw, f"{chosen}.{team}") for team, raw in value.items()
        }
    else:
        windows = {None: parse_windows(value, chosen)}
    return Labels(chosen, windows)
