"""Same-session A/B of gateway variants: which change moves the added latency.

The gateway's added p50 moves by up to 0.3 ms from round to round on a shared machine,
more than most changes are worth, so compare variants in one run: one simulated
upstream; stack-bare, aiohttp-bare and nginx (the floors of docs/benchmarks.md);
optionally uvicorn-bare (`--uvicorn-lib`: uvicorn + httptools with the same aiohttp client); and
`aispend gateway` from each `--tree` (a git worktree per commit to compare). Every path
runs at a fixed rate in every round, in turn; reported are the medians over rounds of
the added p50 (the path's p50 minus the direct path's in the same round) and of the
CPU per request of the path's own processes. Prints; writes nothing. Pass the same
tree twice for an A/A control: each process keeps its place on the CPUs for the whole
run, and two copies of one tree differed by 35-51 us of CPU per request in one run, so
smaller differences are not resolved by this method.

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/gateway_ab.py --tree /tmp/before --tree . --rounds 6
    pip install --target /tmp/uvicorn-lib uvicorn httptools   # then --uvicorn-lib /tmp/uvicorn-lib
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import gateway_overhead as bench


def start_bare_uvicorn(tmp: Path, upstream_base: str, lib: Path) -> bench.Target | str:
    if not (lib / "uvicorn").is_dir():
        return f"uvicorn not installed under {lib} (pip install --target {lib} uvicorn httptools)"
    env = {**os.environ, "PYTHONPATH": str(lib)}
    return bench.start_bare_proxy(
        tmp, upstream_base, "uvicorn-bare", "_bare_uvicorn_proxy.py", env=env
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", type=Path, action="append", default=[],
        help="source tree of a gateway variant (repeat it; default: this repository)",
    )  # fmt: skip
    parser.add_argument("--uvicorn-lib", type=Path, help="pip --target dir holding uvicorn")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="per path per round")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--stream", action="store_true", help="streaming requests")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree] or [bench.REPO]
    tmp = Path(tempfile.mkdtemp(prefix="aispend-ab-"))
    direct = bench.start_upstream(tmp)
    base = direct.url.rsplit("/v1/", 1)[0]
    targets = [direct]
    try:
        targets.append(bench.start_bare_stack(tmp, base))
        targets.append(bench.start_bare_aiohttp(tmp, base))
        optional = [bench.start_nginx(tmp, int(base.rsplit(":", 1)[1]))]
        if args.uvicorn_lib:
            optional.append(start_bare_uvicorn(tmp, base, args.uvicorn_lib))
        for started in optional:
            if isinstance(started, str):
                print(f"skipped: {started}")
            else:
                targets.append(started)
        for i, tree in enumerate(trees):
            name = f"aispend[{i}]"
            print(f"{name} = {tree}")
            targets.append(bench.start_aispend(tmp, base, name=name, tree=tree))
        added: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for round_no in range(args.rounds):
            direct_p50 = 0.0
            for target in targets:
                p50, _, cpu_ms = bench.measure_at_rate(target, args.stream, args.rate, args.seconds)
                cpu.setdefault(target.name, []).append(cpu_ms * 1e3)
                if target is direct:
                    direct_p50 = p50
                else:
                    added.setdefault(target.name, []).append(p50 - direct_p50)
            latest = ", ".join(f"{k} {v[-1]:+.2f}" for k, v in added.items())
            print(f"round {round_no + 1}: added p50 ms {latest}", flush=True)
    finally:
        for target in reversed(targets):
            target.stop()
    mode = "stream" if args.stream else "json"
    print(f"\nmedians over {args.rounds} rounds, {mode}, {args.rate:.0f} req/s for "
          f"{args.seconds:g} s per path per round:")  # fmt: skip
    print("| path | added p50 (ms) | CPU us per request |\n|---|---|---|")
    for target in targets:
        shown = "—" if target is direct else f"{statistics.median(added[target.name]):+.2f}"
        print(f"| {target.name} | {shown} | {statistics.median(cpu[target.name]):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
