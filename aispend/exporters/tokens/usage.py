"""What a source hands back: token usage per owner and model for one counted window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class SourceError(Exception):
    """A poll of a source failed; the watermark stays where it was."""


def token_count(value: Any, where: str) -> int:
    """A token count from an Azure answer: None is 0; negative, NaN or infinite (which
    Python's json reads) is a SourceError, so the poll fails and nothing is counted."""
    if value is None:
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        raise SourceError(f"token count {value} in {where}")
    number = int(value)
    if number < 0:
        raise SourceError(f"negative token count {number} in {where}")
    return number


@dataclass(frozen=True)
class Usage:
    team: str
    project: str
    agent: str
    model: str
    input: int = 0
    """Input tokens, cache reads excluded."""
    output: int = 0
    cached_input: int = 0
