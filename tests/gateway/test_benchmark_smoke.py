"""Smoke run of benchmarks/gateway_overhead.py (direct and aispend only, tiny load).

It checks that the benchmark runs end to end and reports what it measured; it asserts
no timing (figures come from full runs written to docs/benchmarks.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_benchmark_smoke() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed (apt-get install -y wrk); the benchmark needs it")
    result = subprocess.run(
        [sys.executable, "benchmarks/gateway_overhead.py", "--smoke", "--rounds", "1",
         "--rate", "20", "--rate-seconds", "0.5", "--duration", "1", "--rss-requests", "10"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.startswith("## Gateway overhead")
    rows = re.findall(r"^\| (direct|aispend) \| (json|stream) \|", out, re.M)
    assert rows == [("direct", "json"), ("aispend", "json"), ("direct", "stream"),
                    ("aispend", "stream")]  # fmt: skip
    assert re.search(r"^\| [\d,]+ \| [\d,]+ \|$", out, re.M)  # an RSS sample
    # CPU per request at the fixed rate, read from /proc: a real, positive figure per row.
    cpu = re.findall(r"^\| (?:direct|aispend) \| \w+ \|(?: [^|]+ \|){3} ([\d.]+) \|", out, re.M)
    assert len(cpu) == 4 and all(float(c) > 0 for c in cpu), out


def test_ab_benchmark_smoke() -> None:
    """benchmarks/gateway_ab.py on this tree, one tiny round: every path gets a row with
    its added p50 and a positive CPU figure; uvicorn-bare is skipped with the reason."""
    result = subprocess.run(
        [sys.executable, "benchmarks/gateway_ab.py", "--rounds", "1", "--rate", "20",
         "--seconds", "0.5", "--uvicorn-lib", "/nonexistent/uvicorn-lib"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "skipped: uvicorn not installed under /nonexistent/uvicorn-lib" in out
    names = r"direct|stack-bare|aiohttp-bare|aispend\[0\]"
    rows = dict(re.findall(rf"^\| ({names}) \| (.+) \|$", out, re.M))
    assert set(rows) == {"direct", "stack-bare", "aiohttp-bare", "aispend[0]"}, out
    for name, cells in rows.items():
        added, cpu = (c.strip() for c in cells.split("|"))
        assert added == "—" if name == "direct" else re.fullmatch(r"[+-]\d+\.\d\d", added)
        assert float(cpu) > 0
