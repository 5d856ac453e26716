"""Policy: which rule an alert matches, and whether the actuator may act on it.

Pure decisions, no I/O: the caller passes what the store knows (active actions of the
team, the last time a rule acted on a workload). Order of checks:
1. first rule whose `match` / `match_re` accept the alert's labels (none: skip);
2. a team of criticality `critical` is never throttled or paused (`skipped: critical`;
   the team label is compared trimmed and lower-cased, as team names are configured),
   and neither is an alert without a team label (`skipped: no team label`): its team
   could be a critical one;
3. cool-down per rule and workload scope (`skipped: cooldown`);
4. max active actions per team (`skipped: max active actions`; the team as in 2.);
5. dry-run (rule, else global) -> record what would have happened, do nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aispend.actuators.settings import ActionsSettings, Rule

SCOPE_LABELS = ("team", "project", "agent", "model")


@dataclass(frozen=True)
class Decision:
    rule: Rule | None
    skip: str | None = None  # "critical", "cooldown", ... ; None: act
    dry_run: bool = True

    @property
    def acts(self) -> bool:
        return self.rule is not None and self.skip is None


def scope_of(labels: Mapping[str, str]) -> str:
    """The workload an action is about, as a stable string (for cool-down)."""
    return json.dumps({k: labels.get(k) for k in SCOPE_LABELS}, sort_keys=True)


def dry_run_of(rule: Rule, settings: ActionsSettings) -> bool:
    return settings.dry_run if rule.dry_run is None else rule.dry_run


def team_of(labels: Mapping[str, str]) -> str:
    """The alert's team as teams are configured: its label trimmed and lower-cased."""
    return labels.get("team", "").strip().lower()


def forbidden(rule: Rule, labels: Mapping[str, str], criticality: Mapping[str, str]) -> str | None:
    """Why `rule` may never act on these labels, whatever the timing; None if it may."""
    if rule.mode not in ("throttle", "pause"):
        return None
    team = team_of(labels)
    if not team:
        return "no team label"
    if criticality.get(team) == "critical":
        return "critical"
    return None


def decide(
    labels: Mapping[str, str],
    settings: ActionsSettings,
    criticality: Mapping[str, str],
    active_for_team: Callable[[str], int],
    last_action_time: Callable[[str, str], float | None],
    now: float,
) -> Decision:
    rule = next((r for r in settings.rules if r.matches(dict(labels))), None)
    if rule is None:
        return Decision(None, skip="no matching rule")
    dry_run = dry_run_of(rule, settings)
    never = forbidden(rule, labels, criticality)
    if never is not None:
        return Decision(rule, skip=never, dry_run=dry_run)
    cooldown = settings.cooldown if rule.cooldown is None else rule.cooldown
    if cooldown > 0:
        last = last_action_time(rule.name, scope_of(labels))
        if last is not None and now - last < cooldown:
            return Decision(rule, skip="cooldown", dry_run=dry_run)
    team = team_of(labels)
    limit = settings.max_active_per_team
    if limit is not None and team and rule.mode != "notify" and active_for_team(team) >= limit:
        return Decision(rule, skip="max active actions", dry_run=dry_run)
    return Decision(rule, dry_run=dry_run)
