"""Time to act: spike-to-firing and spike-to-throttle of the demo's runaway agent.

Runs `aispend demo --once` N times with production settings (scrape and rule
evaluation every 15 s, the generated rules and deploy/alertmanager.yml unchanged) and
reports the median and max beside the theoretical floor, with the 1-minute load
average at the start and end of the benchmark. Each run is a fresh stack with fresh
history. It writes only what it measured or read from the repo's files; the native
cloud tools' documented delays sit in their own section of docs/benchmarks.md.

    .venv/bin/python benchmarks/time_to_act.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import DOCS, write_section

REPO = Path(__file__).resolve().parent.parent
TITLE = "Time to act (closed loop, issue 6)"


def production_floor() -> dict[str, float]:
    """scrape interval + evaluation interval + `for` + group_wait, from the repo's files."""
    from aispend.rules.promql import seconds
    from aispend.rules.tunables import Tunables

    prom = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    am = yaml.safe_load((REPO / "deploy" / "alertmanager.yml").read_text())
    actuator_route = next(
        r for r in am["route"]["routes"] if any("throttle" in m for m in r.get("matchers", []))
    )
    parts = {
        "scrape_interval": seconds(prom["global"]["scrape_interval"]),
        "evaluation_interval": seconds(prom["global"]["evaluation_interval"]),
        "for": seconds(Tunables().runaway_for),
        "group_wait": seconds(actuator_route.get("group_wait", am["route"]["group_wait"])),
    }
    parts["total"] = sum(parts.values())
    return parts


def one_run(days: float, warmup: float, port_base: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="aispend-tta-") as tmp:
        result = Path(tmp) / "result.json"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "aispend",
                "demo",
                "--once",
                "--config",
                str(REPO / "aispend.example.yaml"),
                "--run-dir",
                str(Path(tmp) / "run"),
                "--port-base",
                str(port_base),
                "--days",
                str(days),
                "--rules-backfill-hours",
                "0",
                "--warmup",
                str(warmup),
                "--result",
                str(result),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if not result.exists():
            raise RuntimeError(
                f"demo run failed ({done.returncode}):\n{done.stdout[-2000:]}"
                f"\n{done.stderr[-2000:]}"
            )
        data = json.loads(result.read_text())
        data["exit"] = done.returncode
        return data


def stat(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.1f} s / {max(values):.1f} s"


def report(
    *,
    runs: int,
    days: float,
    started: str,
    detect: list[float],
    act: list[float],
    closed: int,
    floor: dict[str, float],
    cpus: int | None,
    load: tuple[float, float],
) -> str:
    """The section's text: the measured figures, the floor and the machine's load."""
    return f"""
Command: `.venv/bin/python benchmarks/time_to_act.py --runs {runs}` ({started}, this
machine: {cpus} CPUs, 1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at
the end; each run is `aispend demo --once` on a fresh stack with {days:g} days of
history, production scrape/evaluation intervals and the committed rules and routes).
The spike is the demo's runaway: one agent's tokens per minute x20 or more (at least 4x
its team's budget pace).

| measure | median / max over {len(act)} runs |
| --- | --- |
| spike -> RunawaySpend firing in Prometheus | {stat(detect)} |
| spike -> throttle applied (first 429 seen by the agent) | {stat(act)} |
| loop closed (throttled, critical only notified, lifted) | {closed} of {runs} |

Theoretical floor with these settings: scrape {floor["scrape_interval"]:.0f} s + evaluation
{floor["evaluation_interval"]:.0f} s + `for` {floor["for"]:.0f} s + group_wait
{floor["group_wait"]:.0f} s = **{floor["total"]:.0f} s**, plus the time the runaway needs
to lift the agent's 2-minute spend rate over its team's budget pace (the rule's burn
guard), which depends on how far the agent's normal spend is from that pace.
Goal: median spike-to-throttle <= 120 s.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--days", type=float, default=8.0, help="history per run")
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--port-base", type=int, default=39090)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    detect: list[float] = []
    act: list[float] = []
    closed = 0
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = os.getloadavg()[0]
    for i in range(args.runs):
        data = one_run(args.days, args.warmup, args.port_base)
        closed += bool(data["loop_closed"])
        if data["time_to_detect_s"] is not None:
            detect.append(data["time_to_detect_s"])
        if data["time_to_act_s"] is not None:
            act.append(data["time_to_act_s"])
        print(
            f"run {i + 1}: detect {data['time_to_detect_s']} s, act {data['time_to_act_s']} s,"
            f" loop closed {data['loop_closed']}",
            flush=True,
        )

    body = report(
        runs=args.runs,
        days=args.days,
        started=started,
        detect=detect,
        act=act,
        closed=closed,
        floor=production_floor(),
        cpus=os.cpu_count(),
        load=(load_start, os.getloadavg()[0]),
    )
    print(body)
    if not args.no_docs:
        write_section(DOCS, TITLE, body)
    return 0 if closed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
