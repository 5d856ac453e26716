"""aispend.parsing: input nested deeper than the parsers recurse is the caller's
bad-input error (ValueError for JSON, yaml.YAMLError for YAML), not RecursionError."""

from __future__ import annotations

import pytest
import yaml

from aispend.parsing import load_yaml, loads_json


def test_json_parses_and_too_deep_is_a_value_error() -> None:
    assert loads_json(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    with pytest.raises(ValueError, match="JSON nested too deeply to parse"):
        loads_json("[" * 100_000)
    with pytest.raises(ValueError):
        loads_json("{not json")


def test_yaml_parses_and_too_deep_is_a_yaml_error() -> None:
    assert load_yaml("a: [1, {b: 2}]\n") == {"a": [1, {"b": 2}]}
    with pytest.raises(yaml.YAMLError, match="YAML nested too deeply to parse"):
        load_yaml("[" * 100_000)
    with pytest.raises(yaml.YAMLError, match="YAML nested too deeply to parse"):
        load_yaml("".join(" " * i + "a:\n" for i in range(3_000)))


def test_yaml_key_written_twice_is_an_error_naming_both_lines() -> None:
    text = "budgets:\n  - {team: a}\ncurrency: USD\nbudgets: []\n"
    with pytest.raises(yaml.YAMLError, match=r"found key 'budgets' again \(first on line 1\)"):
        load_yaml(text)
    with pytest.raises(yaml.YAMLError, match="found key 'x' again"):
        load_yaml("outer:\n  inner: {x: 1, x: 2}\n")


def test_yaml_merge_keys_still_override() -> None:
    text = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n"
    assert load_yaml(text) == {"base": {"x": 1, "y": 2}, "d": {"x": 3, "y": 2}}
