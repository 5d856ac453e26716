"""`aispend demo`: the closed loop, live: a runaway agent caught and throttled.

1. Writes 14 days of spend history for the demo teams, loads it into the stack's
   Prometheus data dir, and backfills the recording rules over it, so the production
   rules (1-week baselines, burn windows) are valid from the first minute.
2. Starts the local stack (simulated upstream, chat sink, budgets exporter, gateway,
   actuator with dry-run off, Alertmanager, Prometheus) with production intervals.
3. Drives every demo agent through the gateway with the openai SDK, then makes one
   agent of a `standard` team loop (tokens per minute x20 or more) and one agent of the
   `critical` team too.
4. Prints a live timeline (spike, alert pending and firing, notification delivered,
   throttle applied, spend after, resolve and lift) and a summary.

`--once` exits after the summary with status 0 only if the loop closed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aispend import metrics as m
from aispend import ports
from aispend.config import Config
from aispend.demo.history import Targets, history_days, write_history
from aispend.demo.traffic import AgentState, Traffic
from aispend.demo.workload import CRITICAL_RUNAWAY, RUNAWAY, cost_per_hour
from aispend.stack.components import COMPONENTS
from aispend.stack.supervisor import Stack, StackOptions

if TYPE_CHECKING:
    import aiohttp  # imported where used: building the CLI parser must not load it

log = logging.getLogger(__name__)

RUNAWAY_ALERT = "AISpendRunawaySpend"
DEMO_COMPONENTS = (
    "demo-upstream",
    "chat-sink",
    "exporter-budgets",
    "gateway",
    "actuator",
    "alertmanager",
    "prometheus",
)
DEMO_CONFIG = "aispend.example.yaml"
"""The demo's config when neither --config nor $AISPEND_CONFIG names one."""
RUNAWAY_REQUEST_FACTOR = 4.0
RUNAWAY_TOKEN_FACTOR = 5
MIN_BUDGET_MULTIPLE = 4.0
"""A runaway burns at least this many times its team's budget rate (so it is one)."""


@dataclass
class DemoOptions:
    config: Path
    run_dir: Path = Path(".run/demo")
    port_base: int = 9090
    history_days: float = 14.0
    rules_backfill_hours: float = 24.0
    """Recorded series are backfilled over this much of the history (for dashboards).
    The hourly series that spend to date, the forecast and the weekly and daily
    baselines read (`aispend.rules.backfill.HOURLY_SERIES`) are backfilled over the
    whole history, at whole hours before this, so those are valid at once whatever this
    is (unless 0: then nothing is backfilled)."""
    warmup_s: float = 45.0
    act_timeout_s: float = 300.0
    resolve_timeout_s: float = 420.0
    wait_for_lift: bool = True
    once: bool = True
    result_path: Path | None = None
    """Where to write the result as JSON (for the e2e test and the benchmark)."""


@dataclass
class Timeline:
    spike_at: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    printer: Callable[[str], None] = print

    def mark(self, key: str, text: str, at: float | None = None) -> None:
        if key in self.marks:
            return
        at = time.time() if at is None else at
        self.marks[key] = at
        self.events.append((at, text))
        offset = at - self.spike_at if self.spike_at else 0.0
        self.printer(f"  T{offset:+7.1f}s  {text}")

    def since_spike(self, key: str) -> float | None:
        at = self.marks.get(key)
        return None if at is None else at - self.spike_at


@dataclass
class DemoResult:
    loop_closed: bool
    critical_notified_not_throttled: bool
    lifted: bool | None
    time_to_detect_s: float | None
    time_to_act_s: float | None
    spent_before_throttle: float | None
    avoided_by_end_of_day: float | None
    rate_before_per_hour: float | None
    rate_after_per_hour: float | None
    timeline: Timeline
    audit: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    statuses: dict[str, dict[int, int]]


def prepare_history(options: DemoOptions, config: Config, stack: Stack) -> tuple[int, int]:
    """Write and load history and backfilled rules; returns (series lines, rule levels)."""
    from aispend.rules.backfill import HOURLY_SERIES
    from aispend.tsdb import backfill_recording_rules, create_blocks_from_openmetrics

    ctx = stack.ctx
    data_dir = ctx.run_dir / "prometheus-data"
    if data_dir.exists():
        shutil.rmtree(data_dir)  # a fresh history each run: blocks would overlap
    now = time.time()
    targets = Targets(gateway=ctx.address("gateway"), budgets=ctx.address("exporter-budgets"))
    path = write_history(config, ctx.run_dir / "history", options.history_days, now, targets)
    create_blocks_from_openmetrics(path, data_dir)
    rule_file = ctx.repo_root / "alert-rules" / "aispend.rules.yml"
    if options.rules_backfill_hours <= 0:
        path.unlink()
        return 0, 0
    recent = now - options.rules_backfill_hours * 3600
    history_start = now - options.history_days * 86400
    if history_start < recent:
        # Month to date, the forecast and the weekly baselines read only whole hours there.
        backfill_recording_rules(
            data_dir,
            [rule_file],
            start=history_start,
            end=recent - 1,
            eval_interval="1h",
            only=HOURLY_SERIES,
        )
    levels = backfill_recording_rules(data_dir, [rule_file], start=recent, end=now)
    path.unlink()  # hundreds of MB of text, now in the TSDB
    return 0, levels


class Observer:
    """Polls Prometheus, Alertmanager's chat sink, the gateway and the actuator."""

    def __init__(self, stack: Stack, session: aiohttp.ClientSession):
        self.stack = stack
        self.session = session
        secrets = stack.ctx.run_dir / "secrets"
        self.gateway_token = (secrets / "gateway_admin_token").read_text().strip()

    def url(self, component: str) -> str:
        return self.stack.ctx.url(component)

    async def _json(self, url: str, **kwargs: Any) -> Any:
        import aiohttp

        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=5), **kwargs) as r:
                if r.status != 200:
                    return None
                return await r.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def alerts(self) -> list[dict[str, Any]]:
        data = await self._json(self.url("prometheus") + "/api/v1/alerts")
        return list(data["data"]["alerts"]) if data else []

    async def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = await self._json(self.url("prometheus") + "/api/v1/query", params=params)
        return list(data["data"]["result"]) if data else []

    async def scalar(self, promql: str, at: float | None = None) -> float | None:
        rows = await self.query(promql, at)
        return float(rows[0]["value"][1]) if rows else None

    async def notifications(self) -> list[dict[str, Any]]:
        data = await self._json(self.url("chat-sink") + "/notifications")
        return list(data) if data else []

    async def throttles(self) -> list[dict[str, Any]] | None:
        headers = {"Authorization": f"Bearer {self.gateway_token}"}
        data = await self._json(self.url("gateway") + "/admin/throttles", headers=headers)
        return list(data["throttles"]) if data else None


def agent_cost_query(state: AgentState) -> str:
    a = state.agent
    return (
        f'sum({m.LLM_COST.name}{{{m.TEAM}="{a.team}",{m.AGENT}="{a.agent}",'
        f'{m.PROJECT}="{a.project}"}})'
    )


def _notified(notifications: list[dict[str, Any]], team: str) -> bool:
    """Did a chat/pager receiver get a RunawaySpend notification for `team`?"""
    for note in notifications:
        text = str(note.get("body"))
        if RUNAWAY_ALERT in text and team in text:
            return True
    return False


def _end_of_day(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp() + 86400


async def drive(
    options: DemoOptions,
    config: Config,
    stack: Stack,
    out: Timeline,
    report: Callable[[DemoResult], None],
) -> DemoResult:
    """Run the scenario and `report` its result; without --once, keep the steady traffic
    going (and the stack watched) until Ctrl-C."""
    import aiohttp

    traffic = Traffic(stack.ctx.url("gateway"), config.prices)
    runner = asyncio.create_task(traffic.run())
    runaway = traffic.states[RUNAWAY]
    critical = traffic.states[CRITICAL_RUNAWAY]
    async with aiohttp.ClientSession() as session:
        obs = Observer(stack, session)
        try:
            result = await _scenario(options, config, traffic, runaway, critical, obs, out)
            report(result)
            if not options.once:
                out.printer("steady traffic goes on and the stack stays up; Ctrl-C stops it:")
                for name in ("prometheus", "alertmanager", "gateway", "chat-sink"):
                    out.printer(f"  {name:18s} {stack.ctx.url(name)}")
                while True:
                    await asyncio.sleep(1.0)
                    stack.check()
            return result
        finally:
            traffic.stop()
            await runner


def _surge_factor(state: AgentState, config: Config, now: float) -> float:
    """x20 tokens per minute, more if that would not even reach 4x the team budget."""
    agent = state.agent
    team_budget_per_hour = min(
        (b.amount / (24 if b.period == "day" else 24 * 30))
        for b in config.budgets
        if b.team == agent.team and b.project is None and b.agent is None
    )
    normal = cost_per_hour(agent, now, now)
    needed = MIN_BUDGET_MULTIPLE * team_budget_per_hour / max(normal, 1e-9)
    return max(RUNAWAY_REQUEST_FACTOR, needed / RUNAWAY_TOKEN_FACTOR)


async def _scenario(
    options: DemoOptions,
    config: Config,
    traffic: Traffic,
    runaway: AgentState,
    critical: AgentState,
    obs: Observer,
    out: Timeline,
) -> DemoResult:
    out.printer(f"steady traffic from {len(traffic.states)} agents for {options.warmup_s:.0f}s")
    await asyncio.sleep(options.warmup_s)

    now = time.time()
    cost_before = await obs.scalar(agent_cost_query(runaway))
    for state in (runaway, critical):
        state.surge(_surge_factor(state, config, now), RUNAWAY_TOKEN_FACTOR)
    out.spike_at = runaway.surge_started_at or now
    rate_normal = cost_per_hour(runaway.agent, now, now)
    rate_spike = rate_normal * runaway.request_multiplier * runaway.token_multiplier
    out.mark(
        "spike",
        f"spike: {runaway.agent.team}/{runaway.agent.agent} loops: "
        f"{rate_normal:.2f} -> {rate_spike:.2f} {config.currency}/h "
        f"(x{runaway.request_multiplier * runaway.token_multiplier:.0f} tokens/min); "
        f"{critical.agent.team}/{critical.agent.agent} (critical team) too",
        out.spike_at,
    )

    deadline = out.spike_at + options.act_timeout_s
    throttle_id: str | None = None
    while time.time() < deadline:
        await _observe_alerts(obs, out, runaway, critical)
        notes = await obs.notifications()
        if _notified(notes, runaway.agent.team):
            out.mark("notified", f"notification delivered for team {runaway.agent.team}")
        if _notified(notes, critical.agent.team):
            out.mark(
                "critical_notified",
                f"notification delivered for critical team {critical.agent.team}",
            )
        throttles = await obs.throttles() or []
        mine = [t for t in throttles if t.get("agent") == runaway.agent.agent]
        if mine and throttle_id is None:
            throttle_id = str(mine[0].get("id"))
            out.mark("throttle_rule", f"gateway throttle rule {throttle_id} in place")
        if runaway.first_429_at:
            out.mark(
                "throttled",
                f"throttle applied: first 429 seen by {runaway.agent.agent}",
                runaway.first_429_at,
            )
        if "throttled" in out.marks and "critical_notified" in out.marks:
            break
        await asyncio.sleep(1.0)

    throttled_at = out.marks.get("throttled")
    spent_before = None
    avoided = None
    rate_after = None
    if throttled_at is not None and cost_before is not None:
        cost_at_throttle = await obs.scalar(agent_cost_query(runaway), throttled_at)
        if cost_at_throttle is not None:
            spent_before = cost_at_throttle - cost_before
        avoided = rate_spike * max(0.0, _end_of_day(throttled_at) - throttled_at) / 3600
        # Spend rate after: what the throttle lets through over the next minute.
        await asyncio.sleep(max(0.0, throttled_at + 75 - time.time()))
        a = runaway.agent
        rate = await obs.scalar(
            f'sum(rate({m.LLM_COST.name}{{{m.TEAM}="{a.team}",{m.AGENT}="{a.agent}"}}[1m])) * 3600'
        )
        rate_after = rate
        if rate is not None:
            out.mark("rate_after", f"spend rate after: {rate:.2f} {config.currency}/h")

    lifted: bool | None = None
    if throttled_at is not None and options.wait_for_lift:
        # The runaway is fixed (its loop stops); the alert resolves and the throttle lifts.
        runaway.calm()
        critical.calm()
        out.mark("fixed", f"{runaway.agent.agent} fixed by its team: back to normal traffic")
        lifted = await _wait_for_lift(options, obs, out, runaway, throttle_id)

    audit = _read_audit(obs.stack)
    notes = await obs.notifications()
    loop_closed = throttled_at is not None and critical.first_429_at is None
    return DemoResult(
        loop_closed=loop_closed and lifted is not False,
        critical_notified_not_throttled=(
            "critical_notified" in out.marks and critical.statuses.get(429, 0) == 0
        ),
        lifted=lifted,
        time_to_detect_s=out.since_spike("firing"),
        time_to_act_s=out.since_spike("throttled"),
        spent_before_throttle=spent_before,
        avoided_by_end_of_day=avoided,
        rate_before_per_hour=rate_spike,
        rate_after_per_hour=rate_after,
        timeline=out,
        audit=audit,
        notifications=notes,
        statuses={name: dict(s.statuses) for name, s in traffic.states.items()},
    )


async def _observe_alerts(
    obs: Observer, out: Timeline, runaway: AgentState, critical: AgentState
) -> None:
    for alert in await obs.alerts():
        labels = alert.get("labels", {})
        if labels.get("alertname") != RUNAWAY_ALERT:
            continue
        who = f"{labels.get('team')}/{labels.get('agent')}"
        state = str(alert.get("state"))
        if labels.get("agent") == runaway.agent.agent:
            out.mark(state, f"{RUNAWAY_ALERT} {state} for {who} (action={labels.get('action')})")
        elif labels.get("agent") == critical.agent.agent:
            out.mark(
                f"critical_{state}",
                f"{RUNAWAY_ALERT} {state} for {who} (action={labels.get('action')})",
            )


async def _wait_for_lift(
    options: DemoOptions,
    obs: Observer,
    out: Timeline,
    runaway: AgentState,
    throttle_id: str | None,
) -> bool:
    deadline = time.time() + options.resolve_timeout_s
    while time.time() < deadline:
        alerts = await obs.alerts()
        firing = any(
            a.get("labels", {}).get("alertname") == RUNAWAY_ALERT
            and a.get("labels", {}).get("agent") == runaway.agent.agent
            for a in alerts
        )
        if not firing:
            out.mark("resolved", f"{RUNAWAY_ALERT} resolved for {runaway.agent.agent}")
        throttles = await obs.throttles()
        if throttles is not None and not any(
            t.get("agent") == runaway.agent.agent for t in throttles
        ):
            out.mark("lifted", f"throttle {throttle_id} lifted at the gateway")
        if (
            "lifted" in out.marks
            and runaway.last_200_at
            and runaway.last_200_at > out.marks["lifted"]
        ):
            out.mark("ok_again", f"{runaway.agent.agent} gets 200s again")
            return True
        await asyncio.sleep(1.0)
    return False


def _read_audit(stack: Stack) -> list[dict[str, Any]]:
    import json
    import subprocess

    db = stack.ctx.run_dir / "actuator.sqlite3"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aispend",
            "actuator",
            "audit",
            "--config",
            str(stack.ctx.config_path),
            "--state-db",
            str(db),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        log.warning("aispend actuator audit failed: %s", done.stderr.strip())
        return []
    text = done.stdout.strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(data)


def print_summary(result: DemoResult, currency: str, printer: Callable[[str], None]) -> None:
    def fmt(value: float | None, unit: str = "s") -> str:
        if value is None:
            return "n/a"
        return f"{value:.1f} {unit}" if unit == "s" else f"{value:.2f} {unit}"

    printer("")
    printer("summary")
    printer(f"  time to detect (spike -> firing):        {fmt(result.time_to_detect_s)}")
    printer(f"  time to act (spike -> first 429):        {fmt(result.time_to_act_s)}")
    printer(
        f"  spent by the runaway before throttle:    {fmt(result.spent_before_throttle, currency)}"
    )
    printer(
        f"  it would have spent by end of UTC day:   {fmt(result.avoided_by_end_of_day, currency)}"
    )
    before = fmt(result.rate_before_per_hour, currency + "/h")
    after = fmt(result.rate_after_per_hour, currency + "/h")
    printer(f"  runaway rate before / after throttle:    {before} / {after}")
    printer(f"  critical team notified, not throttled:   {result.critical_notified_not_throttled}")
    printer(f"  throttle lifted on resolve:              {result.lifted}")
    printer(f"  audit records:                           {len(result.audit)}")
    printer(f"  loop closed:                             {result.loop_closed}")


def write_result(result: DemoResult, path: Path) -> None:
    import dataclasses
    import json

    data = dataclasses.asdict(result)
    timeline = result.timeline
    data["timeline"] = {
        "spike_at": timeline.spike_at,
        "marks": timeline.marks,
        "events": [{"at": at, "text": text} for at, text in timeline.events],
    }
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


def demo_stack(options: DemoOptions) -> Stack:
    return Stack(
        StackOptions(
            config=options.config,
            run_dir=options.run_dir,
            port_base=options.port_base,
            components=DEMO_COMPONENTS,
            extra_args={"actuator": ["--dry-run", "false"]},
        )
    )


def run_demo(options: DemoOptions, config: Config, printer: Callable[[str], None] = print) -> int:
    stack = demo_stack(options)
    printer(f"history: {options.history_days:.0f} days for {len(config.teams)} teams")
    t0 = time.time()
    _, levels = prepare_history(options, config, stack)
    printer(f"  loaded, recording rules backfilled ({levels} levels) in {time.time() - t0:.0f}s")
    stack.start()
    try:
        printer("stack is up:")
        for name, url in stack.urls().items():
            printer(f"  {name:18s} {url}   ({COMPONENTS[name].summary})")
        timeline = Timeline(printer=printer)

        def report(result: DemoResult) -> None:
            print_summary(result, config.currency, printer)
            if options.result_path:
                write_result(result, options.result_path)

        try:
            result = asyncio.run(drive(options, config, stack, timeline, report))
        except KeyboardInterrupt:
            return 0
        return 0 if result.loop_closed else 1
    finally:
        stack.stop()


def _non_negative(text: str) -> float:
    from aispend.parsing import number_argument

    return number_argument(text, lambda v: 0 <= v < math.inf, "a finite number >= 0")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aispend.config_cli import add_config_argument

    add_config_argument(parser, fallback=DEMO_CONFIG)
    parser.add_argument("--once", action="store_true", help="exit after the summary")
    parser.add_argument("--run-dir", default=".run/demo")
    parser.add_argument("--port-base", type=ports.port_base, default=9090)
    parser.add_argument(
        "--warmup", type=_non_negative, default=45.0, help="seconds of steady traffic"
    )
    parser.add_argument(
        "--days", type=history_days, default=14.0, help="days of history (default 14)"
    )
    parser.add_argument(
        "--rules-backfill-hours",
        type=_non_negative,
        default=24.0,
        help="backfill recorded series over this many hours (default 24; 0 = none)",
    )
    parser.add_argument("--result", metavar="FILE", help="write the result as JSON here")


def run(args: argparse.Namespace) -> int:
    from aispend.config import ConfigError, load_config, resolve_config_path
    from aispend.procs import ChildFailed
    from aispend.stack.components import MissingBinary, MissingCheckout, PortInUse
    from aispend.tsdb import TsdbError

    # The demo runs on the example config unless told otherwise.
    config_path = resolve_config_path(args.config, fallback=DEMO_CONFIG)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    options = DemoOptions(
        config=config_path,
        run_dir=Path(args.run_dir),
        port_base=args.port_base,
        warmup_s=args.warmup,
        once=args.once,
        history_days=args.days,
        rules_backfill_hours=args.rules_backfill_hours,
        result_path=Path(args.result) if args.result else None,
    )
    # The demo prints its own timeline; the parts' progress logs go to their log files.
    if logging.getLogger().level >= logging.INFO:
        for name in ("aispend.stack", "aispend.backtest", "aispend.tsdb"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return run_demo(options, config, lambda line: print(line, flush=True))
    except (ChildFailed, MissingBinary, MissingCheckout, PortInUse, TsdbError) as exc:
        print(f"aispend demo: {exc}", file=sys.stderr)
        return 1
