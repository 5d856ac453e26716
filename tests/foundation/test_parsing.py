"""aispend.parsing: input nested deeper than the parsers recurse is the caller's
bad-input error (ValueError for JSON, yaml.YAMLError for YAML), not RecursionError."""

from __future__ import annotations

import pytest
import yaml

from aispend.parsing import load_yaml, load_yaml_1_1, loads_json


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


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0500", 500),  # YAML 1.1: 320 (octal)
        ("1:30", "1:30"),  # YAML 1.1: 90 (base 60)
        ("1e6", 1_000_000.0),  # YAML 1.1: the string '1e6'
        ("1.5e6", 1_500_000.0),
        ("10_000", 10_000),
        ("0o17", 15),
        ("0x1F", 31),
        ("-12", -12),
        (".5", 0.5),
        ("-.inf", float("-inf")),
        ("true", True),
        ("False", False),
        ("on", "on"),  # YAML 1.1: True
        ("no", "no"),  # YAML 1.1: False
        ("2024-01-01", "2024-01-01"),  # YAML 1.1: a date
        ("'0500'", "0500"),
    ],
)
def test_plain_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    """A budget of `amount: 0500` was served as 320 and `1:30` as 90 without a word;
    aispend's files are read as Prometheus reads YAML (1.2's core schema)."""
    loaded = load_yaml(f"a: {text}\n")["a"]
    assert loaded == value and type(loaded) is type(value)


def test_kubeconfig_reading_keeps_yaml_1_1_booleans() -> None:
    """kubectl reads `insecure-skip-tls-verify: no` as false: read as the string "no"
    (truthy), it would turn TLS checks off."""
    assert load_yaml_1_1("insecure-skip-tls-verify: no\n") == {"insecure-skip-tls-verify": False}
    with pytest.raises(yaml.YAMLError, match="found key 'a' again"):
        load_yaml_1_1("a: 1\na: 2\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!int x\n", "cannot read int"),
        ("a: !!timestamp 2024-13-45\n", "cannot read timestamp: month must be in 1..12"),
        ("a: !!float [1]\n", "expected a scalar node"),
    ],
)
def test_a_value_its_tag_cannot_hold_is_a_yaml_error_with_its_line(text: str, message: str) -> None:
    """PyYAML raised a plain ValueError for these: `aispend config check` printed a
    traceback, and a live reload ended the config watcher's thread."""
    with pytest.raises(yaml.YAMLError, match=message) as err:
        load_yaml("x: 1\n" + text)
    assert "line 2" in str(err.value)


def test_lone_surrogate_escapes_are_refused_and_pairs_joined() -> None:
    """A lone "\\ud800" passed `config check` and then made every scrape of the budgets
    exporter a 500 (it cannot be written as UTF-8)."""
    with pytest.raises(yaml.YAMLError, match="lone surrogate") as err:
        load_yaml('teams:\n  - owner: "a\\ud800b"\n')
    assert "line 2" in str(err.value)
    assert load_yaml('a: "\\ud83d\\ude00"\n') == {"a": "\U0001f600"}
