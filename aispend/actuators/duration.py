"""Durations as people write them: `90s`, `15m`, `2h`, `1d`, `1h30m`, or plain seconds."""

from __future__ import annotations

import re

_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds in `value`; ValueError with the accepted forms when it is not a duration."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 15m, 2h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    pos = 0
    total = 0.0
    for match in _PART_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"must be a duration such as 30s, 15m, 2h or 1d, got {value!r}")
    return total
