"""Policy: which rule an alert matches, and whether the actuator may act on it.

Pure decisions, no I/O: the caller passes what the store knows (active actions of the
team, the last time a rule acted on a workload). Order of checks:
1. first rule whose `match` / `match_re` accept the alert's labels (none: skip);
2. a team of criticality `critical` is never throttled or paused (`skipped: critical`);
3. cool-down per rule and workload scope (`skipped: cooldown`);
4. max active actions per team (`skipped: max active actions`);
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
    dry_run = settings.dry_run if rule.dry_run is None else rule.dry_run
    team = labels.get("team", "")
    if rule.mode in ("throttle", "pause") and criticality.get(team) == "critical":
        return Decision(rule, skip="critical", dry_run=dry_run)
    cooldown = settings.cooldown if rule.cooldown is None else rule.cooldown
    if cooldown > 0:
        last = last_action_time(rule.name, scope_of(labels))
        if last is not None and now - last < cooldown:
            return Decision(rule, skip="cooldown", dry_run=dry_run)
    limit = settings.max_active_per_team
    if limit is not None and team and rule.mode != "notify" and active_for_team(team) >= limit:
        return Decision(rule, skip="max active actions", dry_run=dry_run)
    return Decision(rule, dry_run=dry_run)
