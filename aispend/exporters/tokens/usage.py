"""What a source hands back: token usage per owner and model for one counted window."""

from __future__ import annotations

from dataclasses import dataclass


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
