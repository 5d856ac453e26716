"""The demo's simulated workload: who spends what, when.

One `DemoAgent` per demo API key of aispend.example.yaml. `cost_per_hour(agent, t)` is
the spend-rate model both the history generator and the live traffic follow, so the
live stack continues the backfilled history without a jump: business-hour and weekday
rhythm (UTC), one team growing steadily, one quiet experimental team.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime

DEMO_KEY_PREFIX = "sk-aispend-demo-"

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class DemoAgent:
    key_name: str
    """The key's description in aispend.example.yaml; the key is DEMO_KEY_PREFIX + it."""
    team: str
    project: str
    agent: str
    provider: str
    model: str
    peak_cost_per_hour: float
    """Weekday business-hours spend rate at the end of the history window."""
    input_tokens: int
    output_tokens: int
    growth_per_day: float = 0.0

    @property
    def api_key(self) -> str:
        return DEMO_KEY_PREFIX + self.key_name

    @property
    def key_sha256(self) -> str:
        return hashlib.sha256(self.api_key.encode()).hexdigest()


def _agent(
    key_name: str, scope: str, model: str, peak: float, tokens: tuple[int, int], growth: float = 0
) -> DemoAgent:
    team, _, rest = scope.partition("/")
    project, _, agent = rest.rpartition(":") if ":" in rest else ("", "", rest)
    return DemoAgent(key_name, team, project, agent, "openai", model, peak, *tokens, growth)


# key name, team/[project:]agent, model, peak $/h, (input, output) tokens per request.
# Tokens per request put every agent near 0.1-0.3 requests/s at peak.
AGENTS: tuple[DemoAgent, ...] = (
    _agent("search-ranker", "search/rerank-agent", "gpt-4o", 6.0, (1500, 225)),
    _agent("search-crawler", "search/crawler-agent", "gpt-4o-mini", 3.0, (15000, 1300)),
    _agent("support-triage", "support/triage-agent", "gpt-4o-mini", 4.0, (19000, 1900)),
    _agent("support-reply", "support/reply-agent", "gpt-4o", 8.0, (2000, 300)),
    _agent("research-evals", "research/evals:", "gpt-4o", 0.6, (500, 70)),
    _agent("growth-copywriter", "growth/copywriter-agent", "gpt-4o-mini", 2.0, (8400, 1250), 0.04),
    _agent("growth-summarizer", "growth/summarizer-agent", "gpt-4o-mini", 1.2, (6300, 470)),
)

RUNAWAY = "search-crawler"
"""The standard team's agent that loops in the scenario."""
CRITICAL_RUNAWAY = "support-triage"
"""The critical team's agent that also loops: notified, never throttled."""


def by_key_name(name: str) -> DemoAgent:
    for agent in AGENTS:
        if agent.key_name == name:
            return agent
    raise KeyError(name)


def hour_factor(t: float) -> float:
    """Business-hour rhythm: 1.0 from 08 to 18 UTC, 0.25 at night, ramps between."""
    hour = (t % DAY) / HOUR
    if 8 <= hour < 18:
        return 1.0
    if 6 <= hour < 8:
        return 0.25 + 0.75 * (hour - 6) / 2
    if 18 <= hour < 21:
        return 1.0 - 0.75 * (hour - 18) / 3
    return 0.25


def weekday_factor(t: float) -> float:
    return 0.35 if datetime.fromtimestamp(t, UTC).weekday() >= 5 else 1.0


def cost_per_hour(agent: DemoAgent, t: float, now: float) -> float:
    """Expected spend rate of `agent` at time `t`; growth is relative to `now`."""
    growth = math.exp(agent.growth_per_day * (t - now) / DAY)
    return agent.peak_cost_per_hour * hour_factor(t) * weekday_factor(t) * growth
