"""JSON and YAML parsing in which input nested too deeply is bad input, not a crash.

`json.loads` and `yaml.safe_load` recurse once per level of nesting, so a request
body or a file of 100,000 `[` raises RecursionError. Callers catch ValueError (JSON)
or yaml.YAMLError (YAML) as "bad input"; RecursionError is neither, so such input
turned a 400 into a 500 and `aispend config check` into a traceback. These two
functions raise the callers' own bad-input error instead.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

TOO_DEEP = "nested too deeply to parse"


def loads_json(data: str | bytes) -> Any:
    """`json.loads`; ValueError for any input that is not JSON, too deep included."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON {TOO_DEEP}") from None


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`; yaml.YAMLError for any input that is not YAML, too deep included."""
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise yaml.YAMLError(f"YAML {TOO_DEEP}") from None
