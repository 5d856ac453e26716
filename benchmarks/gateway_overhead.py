"""Gateway overhead benchmark: direct vs aispend vs nginx vs the LiteLLM proxy.

All four paths front the same simulated upstream (`aispend demo upstream`) on
loopback, one worker each. For each path, non-streaming and streaming:
  * added latency at a fixed 100 req/s (open-loop generator, p50 / p99 of the path
    minus the direct path's p50 / p99 in the same round);
  * maximum req/s with 64 concurrent connections (wrk);
in interleaved rounds (every path once per round), reporting the median over rounds.
Then the gateway's RSS after N requests (memory must not grow with request count).

    .venv/bin/python benchmarks/gateway_overhead.py --rounds 5 --write docs/benchmarks.md

nginx: Debian's `nginx` binary (apt-get install nginx-light). LiteLLM: a separate
venv (`python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install
'litellm[proxy]'`), run with LITELLM_LOCAL_MODEL_COST_MAP=True and no database.
Missing tools are reported as skipped, never faked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aispend.procs import ManagedProcess, wait_until  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import write_section as write_doc_section  # noqa: E402

CLIENT_KEY = "sk-aispend-demo-search-ranker"
LITELLM_VENV = Path("/tmp/litellm-venv")
SECTION = "## Gateway overhead"
WARM_UP_SECONDS = 1.0
"""`fixed_rate` first sends this many seconds' worth of requests, one at a time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(stream: bool) -> bytes:
    data: dict[str, object] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Rank these documents for the query."}],
    }
    if stream:
        data["stream"] = True
    return json.dumps(data).encode()


@dataclass
class Target:
    name: str
    url: str  # .../v1/chat/completions
    key: str = CLIENT_KEY
    procs: list[ManagedProcess] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


# ---------------------------------------------------------------- starting things


def start_upstream(tmp: Path) -> Target:
    port = free_port()
    proc = ManagedProcess(
        "demo-upstream",
        [sys.executable, "-m", "aispend", "demo", "upstream", "--listen", f"127.0.0.1:{port}"],
        tmp / "upstream.log",
        ready_url=f"http://127.0.0.1:{port}/healthz",
        cwd=REPO,
    )
    proc.start()
    proc.wait_ready(60)
    return Target("direct", f"http://127.0.0.1:{port}/v1/chat/completions", procs=[proc])


def start_aispend(
    tmp: Path, upstream_base: str, event_loop: str = "auto", name: str = "aispend",
    tree: Path = REPO,
) -> Target:  # fmt: skip
    """`aispend gateway` from the source tree `tree` (`python -m` runs the package in
    its working directory: a git worktree of another commit runs that commit's code)."""
    data = yaml.safe_load((tree / "aispend.example.yaml").read_text())
    data["sources"] = {
        "gateway": {
            "upstreams": {"openai": {"base_url": upstream_base}},
            "throttle_db": str(tmp / f"{name}-throttles.sqlite3"),
        }
    }
    if "shutdown_scrape_wait_s" in (tree / "aispend/gateway/settings.py").read_text():
        # Nothing scrapes it after the run: exit without waiting for a last scrape.
        data["sources"]["gateway"]["shutdown_scrape_wait_s"] = 0
    data["actions"] = {}
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    proc = ManagedProcess(
        name,
        [sys.executable, "-m", "aispend", "gateway", "--config", str(config),
         "--listen", f"127.0.0.1:{port}", "--event-loop", event_loop],
        tmp / f"{name}.log",
        ready_url=f"http://127.0.0.1:{port}/healthz",
        cwd=tree,
    )  # fmt: skip
    proc.start()
    proc.wait_ready(60)
    return Target(name, f"http://127.0.0.1:{port}/v1/chat/completions", procs=[proc])


def start_bare_proxy(
    tmp: Path, upstream_base: str, name: str, script: str, env: dict[str, str] | None = None
) -> Target:
    """One of the bare pass-through proxies of benchmarks/ (argv: UPSTREAM_BASE_URL PORT)."""
    port = free_port()
    proc = ManagedProcess(
        name,
        [sys.executable, str(Path(__file__).parent / script), upstream_base, str(port)],
        tmp / f"{name}.log",
        ready_url=f"http://127.0.0.1:{port}/healthz",
        cwd=REPO,
        env=env,
    )
    proc.start()
    proc.wait_ready(60)
    return Target(name, f"http://127.0.0.1:{port}/v1/chat/completions", procs=[proc])


def start_bare_aiohttp(tmp: Path, upstream_base: str) -> Target:
    return start_bare_proxy(tmp, upstream_base, "aiohttp-bare", "_bare_aiohttp_proxy.py")


def start_bare_stack(tmp: Path, upstream_base: str) -> Target:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return start_bare_proxy(tmp, upstream_base, "stack-bare", "_bare_httptools_proxy.py", env=env)


def start_nginx(tmp: Path, upstream_port: int) -> Target | str:
    binary = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if binary is None:
        return "nginx not installed (apt-get install -y nginx-light)"
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  upstream llm {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://llm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
    proc = ManagedProcess("nginx", [binary, "-c", str(conf), "-e", str(tmp / "nginx-error.log")],
                          tmp / "nginx.log")  # fmt: skip
    proc.start()
    wait_until(lambda: _port_open(port) or None, 20, what="nginx")
    return Target("nginx", f"http://127.0.0.1:{port}/v1/chat/completions", procs=[proc])


def start_litellm(tmp: Path, upstream_base: str) -> Target | str:
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        return f"LiteLLM not installed at {binary}"
    config = tmp / "litellm.yaml"
    config.write_text(yaml.safe_dump({
        "model_list": [{
            "model_name": "gpt-4o-mini",
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": upstream_base + "/v1",
                               "api_key": "sk-upstream"},
        }],
        "litellm_settings": {"drop_params": True},
    }))  # fmt: skip
    port = free_port()
    master_key = "sk-bench-" + os.urandom(16).hex()  # LiteLLM refuses to start without one
    env = dict(
        os.environ,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        LITELLM_MASTER_KEY=master_key,
    )
    env.pop("DATABASE_URL", None)
    proc = ManagedProcess(
        "litellm",
        [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
         "--num_workers", "1"],
        tmp / "litellm.log",
        ready_url=f"http://127.0.0.1:{port}/health/liveliness",
        env=env,
    )  # fmt: skip
    proc.start()
    try:
        proc.wait_ready(180)
    except Exception as exc:  # report why, do not fake a number
        proc.stop()
        return f"LiteLLM did not start: {str(exc)[-600:]}"
    return Target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions", master_key, [proc])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- measuring


async def _fixed_rate(url: str, key: str, stream: bool, rate: float, seconds: float) -> list[float]:
    """Open loop: start one request every 1/rate s; latency of each to its last byte."""
    payload = body(stream)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            t0 = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status}")
            latencies.append(time.perf_counter() - t0)

        for _ in range(int(rate * WARM_UP_SECONDS)):  # warm the connection pool and caches
            await one()
        latencies.clear()
        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies


def fixed_rate(
    url: str, key: str, stream: bool, rate: float, seconds: float
) -> tuple[float, float]:
    lat = sorted(asyncio.run(_fixed_rate(url, key, stream, rate, seconds)))
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return p50 * 1000, p99 * 1000


def measure_at_rate(
    target: Target, stream: bool, rate: float, seconds: float
) -> tuple[float, float, float]:
    """`fixed_rate`'s p50 and p99 (ms), and the CPU time of the target's own processes
    per request sent (ms), the warm-up requests included."""
    before = target_cpu_ns(target)
    p50, p99 = fixed_rate(target.url, target.key, stream, rate, seconds)
    sent = int(rate * WARM_UP_SECONDS) + int(rate * seconds)
    return p50, p99, (target_cpu_ns(target) - before) / sent / 1e6


def max_rps(
    url: str, stream: bool, concurrency: int, seconds: float, tmp: Path, key: str = CLIENT_KEY
) -> float:
    script = tmp / f"wrk-{'stream' if stream else 'json'}-{key[:12]}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body(stream).decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(concurrency), "-d", f"{seconds}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}: wrk saw non-2xx answers:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (load on the machine does not inflate it)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of a process, its threads and its children (nginx's worker),
    from /proc schedstat: finer than the 10 ms ticks of cpu_seconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
            children = (task / "children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended
        total += sum(tree_cpu_ns(int(child)) for child in children)
    return total


def target_cpu_ns(target: Target) -> int:
    return sum(tree_cpu_ns(proc.pid) for proc in target.procs if proc.pid is not None)


def gateway_requests(metrics_url: str) -> float:
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("aispend_llm_requests_total{")
    )


def rss_growth(
    target: Target, total: int, concurrency: int, tmp: Path
) -> list[tuple[int, int, float]]:
    """(requests served, RSS KiB, CPU s) samples until the gateway has served `total`
    requests, and at least `total` / 2 of them here (the rounds before may have served
    more than `total` already: a single sample would show no growth)."""
    pid = target.procs[0].pid
    assert pid is not None
    base = target.url.rsplit("/v1/", 1)[0]
    samples: list[tuple[int, int, float]] = []
    while True:
        served = int(gateway_requests(base + "/metrics"))
        samples.append((served, rss_kib(pid), cpu_seconds(pid)))
        if served >= max(total, samples[0][0] + total // 2):
            return samples
        max_rps(target.url, False, concurrency, 5, tmp)


# ---------------------------------------------------------------- report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def run(args: argparse.Namespace) -> str:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not installed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="aispend-bench-"))
    direct = start_upstream(tmp)
    upstream_base = direct.url.rsplit("/v1/", 1)[0]
    upstream_port = int(upstream_base.rsplit(":", 1)[1])
    targets: list[Target] = [direct]
    skipped: dict[str, str] = {}
    try:
        targets.append(start_aispend(tmp, upstream_base))
        starters: list[tuple[str, Callable[[], Target | str]]] = []
        if not args.smoke:
            starters.append(
                ("aispend-asyncio", lambda: start_aispend(tmp, upstream_base, "asyncio",
                                                          "aispend-asyncio"))
            )  # fmt: skip
            starters.append(("stack-bare", lambda: start_bare_stack(tmp, upstream_base)))
            starters.append(("aiohttp-bare", lambda: start_bare_aiohttp(tmp, upstream_base)))
            starters.append(("nginx", lambda: start_nginx(tmp, upstream_port)))
            if "litellm" not in args.skip:
                starters.append(("litellm", lambda: start_litellm(tmp, upstream_base)))
        for name, start in starters:
            started = start()
            if isinstance(started, str):
                skipped[name] = started
            else:
                targets.append(started)

        modes = [False, True]
        lat: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        cpu_at_rate: dict[tuple[str, bool], list[float]] = {}
        rps: dict[tuple[str, bool], list[float]] = {}
        for round_no in range(args.rounds):
            for stream in modes:
                for target in targets:
                    rate_s = args.rate_seconds
                    if target.name == "litellm":
                        rate_s = min(rate_s, args.litellm_seconds)
                    p50, p99, cpu = measure_at_rate(target, stream, args.rate, rate_s)
                    lat.setdefault((target.name, stream), []).append((p50, p99))
                    cpu_at_rate.setdefault((target.name, stream), []).append(cpu)
                    rps.setdefault((target.name, stream), []).append(
                        max_rps(
                            target.url, stream, args.concurrency, args.duration, tmp, target.key
                        )
                    )
                    print(f"round {round_no + 1} {target.name:8s} stream={stream!s:5s} "
                          f"p50={lat[(target.name, stream)][-1][0]:.2f}ms "
                          f"rps={rps[(target.name, stream)][-1]:.0f}", file=sys.stderr)  # fmt: skip

        aispend = next(t for t in targets if t.name == "aispend")
        samples = rss_growth(aispend, args.rss_requests, args.concurrency, tmp)
    finally:
        for target in targets:
            target.stop()

    return report(args, targets, lat, rps, cpu_at_rate, samples, skipped)


def report(
    args: argparse.Namespace,
    targets: list[Target],
    lat: dict[tuple[str, bool], list[tuple[float, float]]],
    rps: dict[tuple[str, bool], list[float]],
    cpu_at_rate: dict[tuple[str, bool], list[float]],
    samples: list[tuple[int, int, float]],
    skipped: dict[str, str],
) -> str:
    lines = [
        SECTION,
        "",
        "Measured by `benchmarks/gateway_overhead.py`: one simulated upstream "
        "(`aispend demo upstream`, no latency, 40 output tokens, 8 stream chunks) on "
        "loopback; each path one worker process; "
        f"{args.rounds} interleaved rounds, median reported. Added latency = the path's "
        f"p50/p99 minus the direct path's in the same round, at a fixed {args.rate:.0f} "
        f"req/s open loop for {args.rate_seconds:.0f} s. Max req/s: `wrk -t2 -c"
        f"{args.concurrency} -d{args.duration}s`. aispend runs with metering, pricing and "
        "the throttle check on every request (uvloop event loop, the default); "
        "aispend-asyncio is the same gateway on the standard asyncio loop; stack-bare "
        "is a pass-through proxy on the gateway's own HTTP stack (its httptools listener "
        "and upstream client, uvloop) doing none of the gateway's work "
        "(`benchmarks/_bare_httptools_proxy.py`), the floor of that stack; aiohttp-bare "
        "is the same pass-through on aiohttp's server and client "
        "(`benchmarks/_bare_aiohttp_proxy.py`), the stack the gateway ran on before; "
        "nginx is the floor of a plain reverse proxy. CPU per request at the fixed "
        "rate: time on CPU of the path's own processes (the direct row: the upstream's) "
        "over the fixed-rate run, from /proc schedstat, divided by the requests sent.",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
        f"{platform.python_version()}. The load generators run on the same machine.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/gateway_overhead.py "
        + " ".join(sys.argv[1:])
        + "`",
        "",
        "| path | mode | added p50 (ms) | added p99 (ms) | p50 (ms) | CPU ms per request "
        f"at {args.rate:.0f} req/s | max req/s at {args.concurrency} conns |",
        "|---|---|---|---|---|---|---|",
    ]
    for stream in (False, True):
        direct_rounds = lat[("direct", stream)]
        for target in targets:
            rounds = lat[(target.name, stream)]
            added50 = median([r[0] - d[0] for r, d in zip(rounds, direct_rounds, strict=True)])
            added99 = median([r[1] - d[1] for r, d in zip(rounds, direct_rounds, strict=True)])
            p50 = median([r[0] for r in rounds])
            mode = "stream" if stream else "json"
            added = "— | —" if target.name == "direct" else f"{added50:+.2f} | {added99:+.2f}"
            cpu = median(cpu_at_rate[(target.name, stream)])
            lines.append(
                f"| {target.name} | {mode} | {added} | {p50:.2f} | {cpu:.3f} | "
                f"{median(rps[(target.name, stream)]):,.0f} |"
            )
    lines += ["", "aispend gateway RSS while serving requests (KiB):", ""]
    lines += ["| requests served | RSS KiB |", "|---|---|"]
    step = max(1, len(samples) // 6)
    picks = samples if len(samples) <= 8 else [samples[0], *samples[1:-1:step], samples[-1]]
    lines += [f"| {n:,} | {kib:,} |" for n, kib, _ in picks]
    if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
        cpu = (samples[-1][2] - samples[0][2]) / (samples[-1][0] - samples[0][0])
        lines += [
            "",
            f"aispend gateway CPU per non-streaming request (user + system time of the "
            f"gateway process over the last {samples[-1][0] - samples[0][0]:,} requests): "
            f"{cpu * 1000:.3f} ms, i.e. at most {1 / cpu:,.0f} req/s on one fully available "
            "core. This figure does not depend on other load on the machine.",
        ]
    for name, why in skipped.items():
        lines += ["", f"**{name} skipped:** {why}"]
    lines.append("")
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    write_doc_section(path, SECTION.removeprefix("## "), section.removeprefix(SECTION))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--litellm-seconds", type=float, default=10.0)
    parser.add_argument("--duration", type=int, default=10, help="wrk seconds per run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rss-requests", type=int, default=100_000)
    parser.add_argument("--skip", action="append", default=[], choices=["litellm"])
    parser.add_argument("--smoke", action="store_true", help="direct and aispend only")
    parser.add_argument("--write", type=Path, help="update this markdown file's section")
    args = parser.parse_args()
    section = run(args)
    print(section)
    if args.write:
        write_section(args.write, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
