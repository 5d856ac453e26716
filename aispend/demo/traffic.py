"""`aispend demo traffic`: simulated agents calling the gateway with the openai SDK.

Each demo agent sends chat completions at the spend rate `workload.cost_per_hour`
gives for the current time, so live spend continues the backfilled history. Requests
are evenly spaced (not random) to keep short-window rates steady. An agent can be
made to run away: `surge(requests=4, tokens=5)` multiplies its tokens per minute by
20, as an agent stuck in a loop would. Every response status is counted, and the
first 429 after a surge is timestamped (that is when a throttle bit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from aispend.config import Prices
from aispend.demo.history import usage_of
from aispend.demo.workload import AGENTS, DemoAgent, cost_per_hour
from aispend.pricing import Pricer

log = logging.getLogger(__name__)
# The openai SDK logs every request at INFO through httpx; the demo prints its own summary.
for _noisy in ("httpx", "httpx2", "openai"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

MIN_INTERVAL = 0.05
MAX_INTERVAL = 60.0


@dataclass
class AgentState:
    agent: DemoAgent
    cost_per_request: float
    request_multiplier: float = 1.0
    token_multiplier: int = 1
    statuses: Counter[int] = field(default_factory=Counter)
    surge_started_at: float | None = None
    first_429_at: float | None = None
    last_429_at: float | None = None
    last_200_at: float | None = None
    throttle_reasons: list[str] = field(default_factory=list)

    def surge(self, requests: float = 4.0, tokens: int = 5) -> None:
        self.request_multiplier = requests
        self.token_multiplier = tokens
        self.surge_started_at = time.time()
        self.first_429_at = None

    def calm(self) -> None:
        self.request_multiplier = 1.0
        self.token_multiplier = 1

    def interval(self, now: float) -> float:
        """Seconds between requests for the current spend rate and multipliers."""
        per_hour = cost_per_hour(self.agent, now, now) * self.request_multiplier
        if per_hour <= 0:
            return MAX_INTERVAL
        per_request = self.cost_per_request  # tokens scale cost and count alike
        return min(MAX_INTERVAL, max(MIN_INTERVAL, per_request * 3600 / per_hour))


class Traffic:
    """Drives every demo agent against one gateway until `stop()`."""

    def __init__(self, gateway_url: str, prices: Prices, timeout: float = 15.0):
        from openai import AsyncOpenAI  # here, not at the top: `aispend --help` stays fast

        pricer = Pricer(prices)
        self.states = {
            a.key_name: AgentState(a, pricer.price(a.provider, a.model, usage_of(a)).total)
            for a in AGENTS
        }
        self._clients = {
            a.key_name: AsyncOpenAI(
                base_url=gateway_url.rstrip("/") + "/v1",
                api_key=a.api_key,
                max_retries=0,
                timeout=timeout,
            )
            for a in AGENTS
        }
        self._stop = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        loops = [asyncio.create_task(self._loop(name)) for name in self.states]
        await self._stop.wait()
        for task in loops:
            task.cancel()
        for task in [*loops, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._clients.values():
            await client.close()

    def stop(self) -> None:
        self._stop.set()

    async def _loop(self, name: str) -> None:
        state = self.states[name]
        # Spread the agents' first requests over a second.
        await asyncio.sleep(0.15 * list(self.states).index(name))
        while not self._stop.is_set():
            task = asyncio.create_task(self._one(state))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            await asyncio.sleep(state.interval(time.time()))

    async def _one(self, state: AgentState) -> None:
        from openai import APIConnectionError, APIStatusError, APITimeoutError

        agent = state.agent
        input_tokens = agent.input_tokens * state.token_multiplier
        output_tokens = agent.output_tokens * state.token_multiplier
        prompt = "x" * (4 * (input_tokens - 1))  # the upstream counts 1 + chars // 4
        try:
            await self._clients[agent.key_name].chat.completions.create(
                model=agent.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=output_tokens,
                extra_headers={"X-Demo-Output-Tokens": str(output_tokens)},
            )
            status = 200
            state.last_200_at = time.time()
        except APIStatusError as exc:
            status = exc.status_code
            if status == 429:
                now = time.time()
                state.last_429_at = now
                if state.first_429_at is None:
                    state.first_429_at = now
                    state.throttle_reasons.append(str(exc.message)[:200])
        except (APIConnectionError, APITimeoutError):
            status = 0
        state.statuses[status] += 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aispend.config_cli import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--gateway", required=True, help="gateway base URL")
    parser.add_argument("--duration", type=float, default=0, help="seconds; 0 = until Ctrl-C")
    parser.add_argument("--runaway", metavar="KEY_NAME", help="make this agent loop (x20)")


def run(args: argparse.Namespace) -> int:
    import sys

    from aispend.config import ConfigError, load_config, resolve_config_path

    try:
        config = load_config(resolve_config_path(args.config))
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1

    async def main() -> None:
        traffic = Traffic(args.gateway, config.prices)
        if args.runaway:
            traffic.states[args.runaway].surge()
        runner = asyncio.create_task(traffic.run())
        try:
            if args.duration:
                await asyncio.sleep(args.duration)
            else:
                await asyncio.Event().wait()
        finally:
            traffic.stop()
            await runner
            for name, state in traffic.states.items():
                print(f"{name:20s} {dict(state.statuses)}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
