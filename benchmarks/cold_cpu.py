"""How much slower Python code runs right after the process slept.

At a fixed 100 req/s the gateway sleeps about 10 ms between requests, and each
request then runs on cold caches (and, in a VM, a vCPU that was idle). This prints
the median time of the same small piece of work (10 `json.loads` of a chat request
body) back to back and after sleeping 1 ms and 10 ms, to explain why the gateway's
CPU per request at 100 req/s is several times its CPU per request when saturated
(docs/benchmarks.md, "Gateway overhead"). Not a test: nothing is asserted.

    .venv/bin/python benchmarks/cold_cpu.py
"""

from __future__ import annotations

import json
import statistics
import time

BODY = json.dumps(
    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Rank these documents."}]}
).encode()
REPEATS = 300


def work_us() -> float:
    started = time.perf_counter()
    for _ in range(10):
        json.loads(BODY)
    return (time.perf_counter() - started) * 1e6


def main() -> None:
    for sleep_s in (0.0, 0.001, 0.01):
        samples = []
        for _ in range(REPEATS):
            if sleep_s:
                time.sleep(sleep_s)
            samples.append(work_us())
        median = statistics.median(samples)
        print(f"after sleeping {sleep_s * 1000:4.0f} ms: median {median:6.1f} us")


if __name__ == "__main__":
    main()
