"""JSON and YAML parsing in which input nested too deeply is bad input, not a crash.

`json.loads` and `yaml.safe_load` recurse once per level of nesting, so a request
body or a file of 100,000 `[` raises RecursionError. Callers catch ValueError (JSON)
or yaml.YAMLError (YAML) as "bad input"; RecursionError is neither, so such input
turned a 400 into a 500 and `aispend config check` into a traceback. These two
functions raise the callers' own bad-input error instead.

YAML mappings must not repeat a key: PyYAML keeps the last one silently, so a second
`budgets:` block at the end of aispend.yaml dropped the first block's budgets.
Prometheus and kubectl refuse duplicate keys in their files too.

Pydantic prefixes a validator's own message with "Value error, ";
`validation_message` gives the message as the validator wrote it.

`number_argument` is the body of an argparse type for a number within bounds (NaN and
infinity are numbers to float(), so the bounds must refuse them).

A time with a UTC offset can be valid and still have no UTC form (9999-12-31T23:59:59
at -01:00 is past year 9999): `to_utc` makes that a ValueError, not an OverflowError.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

TOO_DEEP = "nested too deeply to parse"


def loads_json(data: str | bytes) -> Any:
    """`json.loads`; ValueError for any input that is not JSON, too deep included."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"JSON {TOO_DEEP}") from None


def validation_message(error: Mapping[str, Any]) -> str:
    """One pydantic error's message; a ValueError raised by a validator without the
    "Value error, " pydantic puts in front of it."""
    if error.get("type") == "value_error":
        raised = (error.get("ctx") or {}).get("error")
        if raised is not None:
            return str(raised)
    return str(error["msg"])


def to_utc(value: datetime) -> datetime:
    """An aware `value` in UTC; ValueError when it falls outside years 1-9999 there."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once in UTC: must be within years 1-9999") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key written twice (merge keys `<<` excepted)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: construction below reports it
                continue
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found key {key!r} again (first on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` without duplicate keys; yaml.YAMLError for any input that is not
    YAML, too deep or with a repeated key included."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except RecursionError:
        raise yaml.YAMLError(f"YAML {TOO_DEEP}") from None


def number_argument(text: str, accept: Callable[[float], bool], expected: str) -> float:
    """`text` as a float that `accept` takes, else argparse.ArgumentTypeError ("not a
    number: 'x'", or "must be EXPECTED, got 'x'")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value
