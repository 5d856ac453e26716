"""`aispend demo history`: realistic spend history for the demo teams, as OpenMetrics.

The series are the ones the live stack scrapes, with the same labels (job and instance
included), so history and live data join into one series per workload and the
production rules (1-week baselines, burn windows) have real history from the first
minute (the baselines' weekly means once the hourly rates are recorded over it, as
`aispend demo` does). Spend follows `workload.cost_per_hour` with multiplicative noise;
requests and tokens follow from each agent's tokens per request. Budgets and team
metadata are written over the same window from the config.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aispend import metrics as m
from aispend.config import Config, Prices
from aispend.demo.workload import AGENTS, DemoAgent, cost_per_hour
from aispend.parsing import number_argument
from aispend.pricing import Pricer, TokenUsage
from aispend.tsdb import label_text, new_or_empty_dir

NOISE_SIGMA = 0.15
GAUGE_STEP = 240.0


@dataclass(frozen=True)
class Targets:
    """The job/instance labels the live stack's scrapes attach."""

    gateway: str = "127.0.0.1:9120"
    budgets: str = "127.0.0.1:9110"
    gateway_job: str = "aispend-gateway"
    budgets_job: str = "aispend-budgets"


def usage_of(agent: DemoAgent) -> TokenUsage:
    """The usage the simulated upstream reports for one of this agent's requests
    (a quarter of the prompt as cache reads, as the upstream does)."""
    cached = agent.input_tokens // 4
    return TokenUsage(
        input=agent.input_tokens - cached, cached_input=cached, output=agent.output_tokens
    )


def cost_per_request(agent: DemoAgent, prices: Prices) -> float:
    return Pricer(prices).price(agent.provider, agent.model, usage_of(agent)).total


def generate(
    config: Config,
    end: float,
    days: float,
    step: float = 60.0,
    targets: Targets = Targets(),
    seed: int = 7,
) -> Iterator[str]:
    """OpenMetrics lines for [end - days, end) at `step` seconds."""
    start = end - days * 86400
    steps = int((end - start) // step)
    times = [start + i * step for i in range(steps)]
    # Gauges only need a sample within Prometheus' 5-minute lookback.
    gauge_times = times[:: max(1, int(GAUGE_STEP // step))]
    gw = {"instance": targets.gateway, "job": targets.gateway_job}

    cost_lines: list[str] = []
    request_lines: list[str] = []
    token_lines: list[str] = []
    pricer = Pricer(config.prices)
    for agent in AGENTS:
        rng = random.Random(f"{seed}:{agent.key_name}")
        usage = usage_of(agent)
        priced = pricer.price(agent.provider, agent.model, usage)
        per_request = priced.total
        base = {
            m.TEAM: agent.team,
            m.PROJECT: agent.project,
            m.AGENT: agent.agent,
            m.PROVIDER: agent.provider,
            m.MODEL: priced.model,  # the label the gateway gives it
        }
        cost_l = label_text({**base, m.SOURCE: "gateway", **gw})
        req_l = label_text({**base, m.STATUS: "200", **gw})
        tok_l = {
            kind: label_text({**base, m.SOURCE: "gateway", m.TOKEN_TYPE: kind, **gw})
            for kind in ("input", "cached_input", "output")
        }
        cost = requests = 0.0
        for t in times:
            noise = math.exp(rng.gauss(0, NOISE_SIGMA) - NOISE_SIGMA**2 / 2)
            cost += cost_per_hour(agent, t, end) * step / 3600 * noise
            requests = math.floor(cost / per_request)
            ts = f"{t:.0f}"
            cost_lines.append(f"{m.LLM_COST.name}{cost_l} {cost:.6f} {ts}\n")
            request_lines.append(f"{m.LLM_REQUESTS.name}{req_l} {requests} {ts}\n")
            for kind, per in (
                ("input", usage.input),
                ("cached_input", usage.cached_input),
                ("output", usage.output),
            ):
                token_lines.append(f"{m.LLM_TOKENS.name}{tok_l[kind]} {requests * per} {ts}\n")

    for spec, lines in (
        (m.LLM_COST, cost_lines),
        (m.LLM_REQUESTS, request_lines),
        (m.LLM_TOKENS, token_lines),
    ):
        yield f"# HELP {spec.family_name} {spec.full_help}\n"
        yield f"# TYPE {spec.family_name} counter\n"
        yield from lines

    bud = {"instance": targets.budgets, "job": targets.budgets_job}
    yield f"# HELP {m.BUDGET.name} {m.BUDGET.full_help}\n# TYPE {m.BUDGET.name} gauge\n"
    for b in config.budgets:
        scope = {m.TEAM: b.team, m.PROJECT: b.project or "", m.AGENT: b.agent or ""}
        lab = label_text({**scope, m.PERIOD: b.period, **bud})
        yield from (f"{m.BUDGET.name}{lab} {b.amount} {t:.0f}\n" for t in gauge_times)
    spec = m.BUDGET_SOFT_RATIO
    yield f"# HELP {spec.name} {spec.full_help}\n# TYPE {spec.name} gauge\n"
    for b in config.budgets:
        if b.soft_ratio is None:
            continue
        scope = {m.TEAM: b.team, m.PROJECT: b.project or "", m.AGENT: b.agent or ""}
        lab = label_text({**scope, m.PERIOD: b.period, **bud})
        yield from (f"{spec.name}{lab} {b.soft_ratio} {t:.0f}\n" for t in gauge_times)
    info = m.TEAM_INFO
    yield f"# HELP {info.name} {info.full_help}\n# TYPE {info.name} gauge\n"
    for team in config.teams:
        lab = label_text(
            {
                m.COST_CENTER: team.cost_center,
                m.CRITICALITY: team.criticality,
                m.OWNER: team.owner,
                m.TEAM: team.name,
                **bud,
            }
        )
        yield from (f"{info.name}{lab} 1 {t:.0f}\n" for t in gauge_times)
    yield "# EOF\n"


def write_history(
    config: Config, out: Path, days: float, end: float | None = None, targets: Targets = Targets()
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "history.om.txt"
    end = time.time() if end is None else end
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(generate(config, end, days, targets=targets))
    return path


MAX_DAYS = 60


def history_days(text: str) -> float:
    """argparse type of --days: a number of days in (0, MAX_DAYS]."""
    return number_argument(text, lambda days: 0 < days <= MAX_DAYS, f"in (0, {MAX_DAYS}]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aispend.config_cli import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--days", type=history_days, default=14, help="history length (default 14)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    parser.add_argument(
        "--tsdb",
        metavar="DIR",
        help="also load it into this empty directory, a Prometheus data dir to start on"
        " (promtool create-blocks-from; raw"
        " series only: `aispend demo` also records the hourly series that spend to date and"
        " the baselines read, see `aispend rules backfill`)",
    )


def _not_an_empty_dir(path: Path) -> str | None:
    """Why the history cannot be loaded into `path` (None: it can). It ends now, with the
    live stack's series: beside data already there (an earlier load, a Prometheus's own
    scrapes) the two sets of counter samples interleave, and every dip reads as a reset
    (a day's spend came out 58 times too high), and a running Prometheus drops its head
    samples older than the new blocks' end when it restarts."""
    if new_or_empty_dir(path):
        return None
    if not path.is_dir():
        return "is a file, not a directory"
    return (
        "is not empty: load the demo history into an empty directory, then start"
        " Prometheus on it (its series would overlap the data there)"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from aispend.config import ConfigError, load_config, resolve_config_path
    from aispend.tsdb import TsdbError, create_blocks_from_openmetrics

    try:
        config = load_config(resolve_config_path(args.config))
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    problem = args.tsdb and _not_an_empty_dir(Path(args.tsdb))
    if problem:
        print(f"aispend demo history: --tsdb {args.tsdb}: {problem}", file=sys.stderr)
        return 1
    path = write_history(config, Path(args.out), args.days)
    print(f"wrote {path}")
    if args.tsdb:
        try:
            create_blocks_from_openmetrics(path, Path(args.tsdb))
        except TsdbError as exc:
            print(f"aispend demo history: {exc}", file=sys.stderr)
            return 1
        print(f"loaded into {args.tsdb}")
    return 0
