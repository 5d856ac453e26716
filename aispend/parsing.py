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
import re
from collections.abc import Callable, Mapping, Sequence
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

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A value its tag cannot hold (`!!int x`, `!!timestamp 2024-13-45`) raises a
        # plain ValueError in PyYAML: report it as bad YAML, where it is.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.tag.rsplit(':', 1)[-1]}: {exc}", node.start_mark
            ) from None

    def construct_yaml_str(self, node: yaml.Node) -> str:
        value = str(super().construct_yaml_str(node))
        try:  # a surrogate pair written as two escapes is one character
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "found a lone surrogate escape (\\ud800-\\udfff): not text",
                node.start_mark,
            ) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:str", _UniqueKeyLoader.construct_yaml_str)

_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _CoreSchemaLoader(_UniqueKeyLoader):
    """YAML 1.2's core schema for plain scalars, as Prometheus and most tools read YAML
    today: PyYAML's 1.1 rules read `amount: 0500` as 320 (octal), `1:30` as 90
    (base 60) and `on`/`no` as booleans, did not read `1e6` as a number, and turned a
    date-like value into a date. Only true/false are booleans, numbers are decimal
    (0o / 0x prefixes for octal and hex; `_` may group digits), and dates stay
    strings."""

    def construct_yaml_int(self, node: yaml.Node) -> int:
        text = str(self.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
        sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
        base = {"0o": 8, "0x": 16}.get(body[:2].lower(), 10)
        return sign * int(body[2:] if base != 10 else body, base)


_CoreSchemaLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CoreSchemaLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreSchemaLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7_]+|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
_CoreSchemaLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9_]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_CoreSchemaLoader.add_constructor(_INT, _CoreSchemaLoader.construct_yaml_int)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` with YAML 1.2's core schema (`_CoreSchemaLoader`) and without
    duplicate keys; yaml.YAMLError for any input that is not YAML, too deep, with a
    repeated key, a value its tag cannot hold or a lone surrogate included."""
    return _load(text, _CoreSchemaLoader)


def load_yaml_1_1(text: str) -> Any:
    """`load_yaml` with PyYAML's YAML 1.1 rules, for files whose own tools read them so
    (kubeconfig: kubectl reads `insecure-skip-tls-verify: no` as false)."""
    return _load(text, _UniqueKeyLoader)


def _load(text: str, loader: type[_UniqueKeyLoader]) -> Any:
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader: no arbitrary objects
    except RecursionError:
        raise yaml.YAMLError(f"YAML {TOO_DEEP}") from None


def yaml_lines(text: str) -> Callable[[Sequence[int | str]], int | None]:
    """A lookup of lines in YAML `text` (read once, as `load_yaml` reads it): `path`
    (keys and list indexes) -> the 1-based line of its value; for a path that goes past
    what the file holds (a missing key), the line of the deepest part it does hold; None
    for the document itself, or when the text is not YAML."""
    try:
        root: yaml.Node | None = yaml.compose(text, Loader=_CoreSchemaLoader)
    except (yaml.YAMLError, RecursionError):
        root = None
    return lambda path: _node_line(root, path)


def _node_line(node: yaml.Node | None, path: Sequence[int | str]) -> int | None:
    line = None
    for part in path:
        # A key's line for a mapping entry (a list under `teams:` starts a line lower).
        entry: tuple[yaml.Node, yaml.Node] | None = None
        if isinstance(node, yaml.MappingNode):
            keyed = ((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode))
            entry = next(((k, v) for k, v in keyed if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part >= 0:
            items = node.value[part : part + 1]
            entry = (items[0], items[0]) if items else None
        if entry is None:
            break
        line, node = entry[0].start_mark.line + 1, entry[1]
    return line


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
