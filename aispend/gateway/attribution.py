"""Who is calling: the client's API key -> team / project / agent.

The key comes from `Authorization: Bearer <key>` (OpenAI SDKs), `api-key` (Azure
SDKs) or `x-api-key` (Anthropic SDKs). It is hashed with SHA-256 and looked up in
`api_keys` of aispend.yaml; the raw key is never stored or logged.

Trust: the key's entry is authoritative. When `header_refinement` is on,
`X-Aispend-Agent` / `X-Aispend-Project` are labels the client declares: they only
fill in an agent or project the key's entry leaves unset, never replace a configured
one (else a client could step out of an agent- or project-scoped throttle), and the
team is always the key's. A header never names an agent or project that an `api_keys`
entry of the team is pinned to: that value folds into `other` (else a key without an
agent could bill its spend to another key's agent and get that key throttled). Agent
label values are capped per team (`max_agents_per_team`); later ones fold into `other`,
as do unknown projects. Labels already given keep being given after a config reload
(`keep_agent_labels`), and an agent a throttle rule names always keeps its label, also
after a restart: else, once other agents of its team took the free labels, the
throttled agent would be counted as `other` and step out of its throttle.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from aispend.config import Config
from aispend.metrics import OTHER, UNATTRIBUTED_TEAM

_LABEL_SAFE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")

AGENT_HEADER = "X-Aispend-Agent"
PROJECT_HEADER = "X-Aispend-Project"


@dataclass(frozen=True)
class Attribution:
    team: str
    project: str  # "" when unscoped (the label convention of aispend_budget)
    agent: str


UNATTRIBUTED = Attribution(UNATTRIBUTED_TEAM, "", "")

ThrottledAgents = Callable[[str], Collection[str]]
"""team -> the agents its throttle rules name (`ThrottleTable.agents_named`)."""


def _no_throttled_agents(team: str) -> Collection[str]:
    return ()


def client_key(headers: Mapping[str, str]) -> str | None:
    """The API key the client sent, from whichever header its SDK uses."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("api-key") or headers.get("x-api-key") or None


class Attributor:
    """The key table and the per-team agent cap; built once per loaded config."""

    def __init__(
        self,
        config: Config,
        header_refinement: bool = False,
        max_agents_per_team: int = 50,
    ) -> None:
        self._by_digest: dict[str, Attribution] = {
            k.sha256: Attribution(k.team, k.project or "", k.agent or "") for k in config.api_keys
        }
        self._refine = header_refinement
        self._cap = max_agents_per_team
        self._projects = {t.name: frozenset(t.projects) for t in config.teams}
        # Configured agents always keep their own label; others share the cap.
        self._configured_agents = {t.name: frozenset(t.agents) for t in config.teams}
        # Free labels given, per team, in the order given (a dict keeps it).
        self._seen_agents: dict[str, dict[str, None]] = {t.name: {} for t in config.teams}
        # Labels some key is pinned to: only that key's requests carry them.
        self._pinned_agents: dict[str, set[str]] = {}
        self._pinned_projects: dict[str, set[str]] = {}
        for k in config.api_keys:
            if k.agent:
                self._pinned_agents.setdefault(k.team, set()).add(k.agent)
            if k.project:
                self._pinned_projects.setdefault(k.team, set()).add(k.project)
        # Known keys only: the hash costs more than the rest of attribution together.
        self._known: dict[str, Attribution] = {}

    @property
    def projects_by_team(self) -> dict[str, frozenset[str]]:
        """Every team a request can be attributed to (the configured ones and
        unattributed), with the projects its requests can carry."""
        projects = {team: names | {OTHER} for team, names in self._projects.items()}
        return projects | {UNATTRIBUTED_TEAM: frozenset()}

    def lookup(self, key: str) -> Attribution | None:
        """The key's attribution, or None when the key is unknown."""
        found = self._known.get(key)
        if found is not None:
            return found
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        found = self._by_digest.get(digest)
        if found is not None and len(self._known) < len(self._by_digest):
            self._known[key] = found
        return found

    def keep_agent_labels(self, previous: Attributor) -> None:
        """Go on giving the free agent labels `previous` gave (a reload must not move an
        agent's spend to `other`), for the teams still configured, up to this cap."""
        for team, seen in self._seen_agents.items():
            configured = self._configured_agents.get(team, frozenset())
            pinned = self._pinned_agents.get(team, set())
            for agent in previous._seen_agents.get(team, {}):
                if len(seen) + len(configured) >= self._cap:
                    break
                if agent not in configured and agent not in pinned:
                    seen[agent] = None

    def attribute(
        self, headers: Mapping[str, str], throttled: ThrottledAgents = _no_throttled_agents
    ) -> Attribution | None:
        """Attribution of a request; None when it has no known key. An agent that
        `throttled(team)` names keeps its label even past the cap."""
        key = client_key(headers)
        if key is None:
            return None
        found = self.lookup(key)
        if found is None or not self._refine:
            return found
        # Client-declared labels fill only what the key leaves unset.
        agent = None if found.agent else headers.get(AGENT_HEADER)
        project = None if found.project else headers.get(PROJECT_HEADER)
        if agent is None and project is None:
            return found
        return Attribution(
            found.team,
            self._project_label(found.team, project) if project is not None else found.project,
            self._agent_label(found.team, agent, throttled) if agent is not None else found.agent,
        )

    def _project_label(self, team: str, project: str) -> str:
        project = project.strip().lower()
        if project in self._pinned_projects.get(team, ()):
            return OTHER
        return project if project in self._projects.get(team, ()) else OTHER

    def _agent_label(self, team: str, agent: str, throttled: ThrottledAgents) -> str:
        agent = agent.strip().lower()
        if not _LABEL_SAFE.fullmatch(agent) or agent in self._pinned_agents.get(team, ()):
            return OTHER
        if agent in self._configured_agents.get(team, ()):
            return agent
        seen = self._seen_agents.setdefault(team, {})
        if agent in seen:
            return agent
        if len(seen) + len(self._configured_agents.get(team, ())) < self._cap:
            seen[agent] = None  # a free label first: it stays once a throttle is lifted
            return agent
        return agent if agent in throttled(team) else OTHER
