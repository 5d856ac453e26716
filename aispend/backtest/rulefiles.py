"""The project's generated rule files, read for replay.

`load_rules(paths)` returns the recording rules (with the group interval each runs at)
and the alerting rules. `recording_levels` orders recording rules so that a rule comes
after every recorded series its expression reads: promtool's
`create-blocks-from rules` evaluates against data already in the TSDB, so each level is
backfilled in its own pass. `write_rule_file` writes one level back as a rule file with
the backtest's evaluation interval.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aispend.parsing import load_yaml

DEFAULT_INTERVAL = 60
_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_DURATION_RE = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class RulesError(Exception):
    """A rule file cannot be read or replayed."""


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)
    group: str = ""
    interval: int = DEFAULT_INTERVAL


@dataclass(frozen=True)
class AlertRule:
    alert: str
    expr: str
    for_seconds: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    group: str = ""
    interval: int = DEFAULT_INTERVAL


@dataclass
class RuleSet:
    recording: list[RecordingRule] = field(default_factory=list)
    alerting: list[AlertRule] = field(default_factory=list)


def parse_duration(text: str) -> int:
    """Seconds in a Prometheus duration such as `1h30m`, `5m`, `1w`."""
    value = str(text).strip()
    if not value or _DURATION_RE.sub("", value):
        raise RulesError(f"not a Prometheus duration: {text!r}")
    total = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(value))
    return int(total)


def load_rules(paths: Iterable[Path | str], default_interval: int = DEFAULT_INTERVAL) -> RuleSet:
    out = RuleSet()
    for path in paths:
        path = Path(path)
        try:
            data = load_yaml(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RulesError(f"{path}: cannot read rules: {exc}") from exc
        groups = (data or {}).get("groups") if isinstance(data, dict) else None
        if not isinstance(groups, list):
            raise RulesError(f"{path}: not a Prometheus rule file (no `groups:` list)")
        for group in groups:
            _add_group(out, path, group, default_interval)
    return out


def _add_group(out: RuleSet, path: Path, group: Any, default_interval: int) -> None:
    if not isinstance(group, dict):
        raise RulesError(f"{path}: a group is not a mapping (name, rules): {group!r:.60}")
    name = str(group.get("name", ""))
    where = f"{path}: group {name}"
    interval = (
        _duration(group["interval"], f"{where}: interval")
        if "interval" in group
        else default_interval
    )
    rules = group.get("rules") or []
    if not isinstance(rules, list):
        raise RulesError(f"{where}: rules is not a list")
    for index, rule in enumerate(rules):
        at = f"{where}: rule {index + 1}"
        if not isinstance(rule, dict):
            raise RulesError(f"{at}: not a mapping")
        if "record" not in rule and "alert" not in rule:
            raise RulesError(f"{at}: a rule with neither record nor alert")
        at = f"{where}: {rule.get('record') or rule.get('alert')}"
        expr = rule.get("expr")
        if not isinstance(expr, (str, int, float)) or not str(expr).strip():
            raise RulesError(f"{at}: no expr")
        raw_labels = rule.get("labels") or {}
        if not isinstance(raw_labels, dict):
            raise RulesError(f"{at}: labels is not a mapping")
        labels = {str(k): str(v) for k, v in raw_labels.items()}
        if "record" in rule:
            out.recording.append(
                RecordingRule(str(rule["record"]), str(expr), labels, name, interval)
            )
        else:
            for_s = _duration(rule["for"], f"{at}: for") if rule.get("for") else 0
            out.alerting.append(
                AlertRule(str(rule["alert"]), str(expr), for_s, labels, name, interval)
            )


def _duration(value: Any, where: str) -> int:
    try:
        return parse_duration(value)
    except RulesError as exc:
        raise RulesError(f"{where}: {exc}") from None


def referenced_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression (a superset of the metric names it reads)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    return set(_NAME_RE.findall(without_strings))


_RANGE_RE = re.compile(r"\[\s*([0-9a-z]+)\s*(?::[0-9a-z]*)?\s*\]|\boffset\s+([0-9a-z]+)")


def longest_range(expr: str) -> int:
    """The longest range selector, subquery range or offset in `expr`, in seconds."""
    longest = 0
    for a, b in _RANGE_RE.findall(expr):
        try:
            longest = max(longest, parse_duration(a or b))
        except RulesError:
            continue
    return longest


_AT_RANGE_END_RE = re.compile(r"@\s*(start|end)\s*\(\s*\)")


def reads_query_bounds(expr: str) -> bool:
    """Whether `expr` uses `@ start()` or `@ end()`: a rule evaluation (an instant query)
    resolves them to the evaluation time, a range query to the range's bounds at every
    step, so such a rule is replayed one instant query per step."""
    return bool(_AT_RANGE_END_RE.search(expr))


def with_inputs(rules: Sequence[RecordingRule], names: Iterable[str]) -> list[RecordingRule]:
    """The rules recording `names`, and every recording rule they read, at any depth."""
    by_name: dict[str, list[RecordingRule]] = {}
    for rule in rules:
        by_name.setdefault(rule.record, []).append(rule)
    wanted: set[str] = set()
    todo = [name for name in names if name in by_name]
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            for rule in by_name[name]:
                todo.extend(ref for ref in referenced_names(rule.expr) if ref in by_name)
    return [rule for rule in rules if rule.record in wanted]


def recording_levels(rules: Sequence[RecordingRule]) -> list[list[RecordingRule]]:
    """Recording rules grouped so each only reads series recorded at earlier levels."""
    by_name: dict[str, list[RecordingRule]] = {}
    for rule in rules:
        by_name.setdefault(rule.record, []).append(rule)
    level: dict[str, int] = {}

    def depth(name: str, stack: tuple[str, ...]) -> int:
        if name in level:
            return level[name]
        if name in stack:
            raise RulesError(f"recording rules form a cycle: {' -> '.join((*stack, name))}")
        deps = {
            ref
            for rule in by_name[name]
            for ref in referenced_names(rule.expr)
            if ref in by_name and ref != name
        }
        level[name] = 1 + max((depth(d, (*stack, name)) for d in deps), default=-1)
        return level[name]

    for name in by_name:
        depth(name, ())
    out: list[list[RecordingRule]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for rule in rules:
        out[level[rule.record]].append(rule)
    return out


def write_rule_file(path: Path, rules: Sequence[RecordingRule], interval: int) -> None:
    """One group per original group, each evaluated every `max(group, interval)` s."""
    groups: dict[str, dict[str, Any]] = {}
    for rule in rules:
        every = max(rule.interval, interval)
        group = groups.setdefault(
            f"{rule.group}@{every}",
            {"name": f"{rule.group or 'rules'}-{every}s", "interval": f"{every}s", "rules": []},
        )
        entry: dict[str, Any] = {"record": rule.record, "expr": rule.expr}
        if rule.labels:
            entry["labels"] = rule.labels
        group["rules"].append(entry)
    path.write_text(yaml.safe_dump({"groups": list(groups.values())}, sort_keys=False))
