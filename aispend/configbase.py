"""Shared base for the pydantic models of aispend.yaml.

Section models that live next to their component (gateway, actuator, exporters)
derive from `StrictModel` so that every section rejects unknown keys the same way.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            "must be 1-63 characters of a-z, 0-9, '_', '-', '.', starting with a letter or digit"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]
"""A team, project or agent name: safe to use as a Prometheus label value."""
