"""Where each source has been counted up to, and the counter totals, on disk.

One JSON file holds both, so a restart resumes exactly where the last completed poll
stopped: nothing counted twice, nothing skipped, and the counters continue instead of
resetting. The file is replaced atomically (write a temp file in the same directory,
fsync, rename, fsync the directory), so a crash leaves the old or the new state,
never a torn one. A state file that cannot be read is an error the user must resolve
(deleting it means recounting from `initial_lookback_seconds`), never silently reset.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aispend.files import write_atomically
from aispend.parsing import loads_json, to_utc

TokenKey = tuple[str, str, str, str, str, str, str]
"""team, project, agent, provider, model, source, token_type"""
CostKey = tuple[str, str, str, str, str, str]
"""team, project, agent, provider, model, source"""

VERSION = 1
FUTURE_TOLERANCE = timedelta(days=1)
"""How far ahead of this host's clock a stored watermark may be (clock skew)."""


class StateError(Exception):
    """The state file exists but cannot be used."""


@dataclass
class State:
    watermarks: dict[str, datetime] = field(default_factory=dict)
    tokens: dict[TokenKey, float] = field(default_factory=dict)
    cost: dict[CostKey, float] = field(default_factory=dict)
    cost_created: dict[CostKey, float] = field(default_factory=dict)
    """When each cost series was first counted (Unix seconds; exported as `_created`, so
    that the rules count its first value). Files written before it have none."""

    def copy(self) -> State:
        return State(
            dict(self.watermarks), dict(self.tokens), dict(self.cost), dict(self.cost_created)
        )


def load_state(path: Path) -> State:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise StateError(f"{path}: cannot read the tokens state file: {exc}") from exc
    try:
        data = loads_json(text)
        if data.get("version") != VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        return State(
            watermarks={k: _watermark(v) for k, v in data["watermarks"].items()},
            tokens={_key(row[:-1], 7): _total(row[-1]) for row in data["tokens"]},  # type: ignore[misc]
            cost={_key(row[:-1], 6): _total(row[-1]) for row in data["cost"]},  # type: ignore[misc]
            cost_created={
                _key(row[:-1], 6): _total(row[-1])  # type: ignore[misc]
                for row in data.get("cost_created", [])
            },
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(
            f"{path}: tokens state file is damaged ({exc}); fix or delete it (deleting "
            "recounts from initial_lookback_seconds)"
        ) from exc


def _watermark(value: str) -> datetime:
    """An ISO 8601 time with its UTC offset, not in the future (it would stop counting),
    in UTC: the queries print it as UTC, so a hand-edited -05:00 would recount 5 hours."""
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise ValueError(f"watermark {value!r} has no UTC offset (e.g. +00:00)")
    try:
        at = to_utc(at)
    except ValueError as exc:
        raise ValueError(f"watermark {value!r} {exc}") from None
    if at > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise ValueError(f"watermark {value!r} is in the future")
    return at


def _total(value: object) -> float:
    """A counter total: a finite number >= 0 (NaN, or a negative reads as a reset)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"total {value!r} is not a number")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"total {value!r} is not a finite number >= 0")
    return float(value)


def _key(values: list[str], size: int) -> tuple[str, ...]:
    if len(values) != size or not all(isinstance(v, str) for v in values):
        raise ValueError(f"bad row {values!r}")
    return tuple(values)


def save_state(path: Path, state: State) -> None:
    data = {
        "version": VERSION,
        "watermarks": {k: v.isoformat() for k, v in sorted(state.watermarks.items())},
        "tokens": [[*k, v] for k, v in sorted(state.tokens.items())],
        "cost": [[*k, v] for k, v in sorted(state.cost.items())],
        "cost_created": [[*k, v] for k, v in sorted(state.cost_created.items())],
    }
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(data))
