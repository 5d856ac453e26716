"""A temporary Prometheus TSDB holding the history and the recorded series.

`build_tsdb` backfills the history (OpenMetrics) with
`promtool tsdb create-blocks-from openmetrics`, then the recording rules level by level
with `promtool tsdb create-blocks-from rules`, which reads the data already recorded
from a temporary real Prometheus (`TempPrometheus`) started over the TSDB. Prometheus
is restarted between levels so it serves the blocks the previous level wrote.

Prometheus runs with retention off in effect (100 years: the history is old) and block
compaction disabled (min = max block duration = 2h), so the blocks promtool writes are
served as they are and nothing works in the background while the backtest queries.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aispend.backtest.openmetrics import Sink, SplitSink
from aispend.backtest.rulefiles import (
    RecordingRule,
    longest_range,
    reads_query_bounds,
    recording_levels,
    write_rule_file,
)
from aispend.procs import ManagedProcess
from aispend.tsdb import label_text

log = logging.getLogger(__name__)


HISTORY_BLOCK = "1000h"
BLOCK_WINDOW = 486 * 3600
"""The block length promtool picks for HISTORY_BLOCK (the largest 2h x 3^n <= it)."""
SLOW_RANGE = 86400
"""Rules reading a range or offset of a day or more are evaluated every `slow_interval`."""
DEFAULT_SLOW_INTERVAL = 300
RECORD_CHUNK_STEPS = 1440
PER_STEP_QUERIES = 4
"""Instant queries in flight at once for a rule replayed one step at a time."""


class BacktestError(Exception):
    """The replay itself failed (a tool, Prometheus, a query); the message says which."""


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BacktestError(
            f"{name} not found on PATH: install the Debian package `prometheus` (make setup does)"
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: Sequence[str], what: str, timeout: float = 3600) -> str:
    log.debug("running %s", " ".join(argv))
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BacktestError(f"{what}: timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BacktestError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


class PrometheusAPI:
    """Queries to a Prometheus's HTTP API at `url`."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def api(self, path: str, params: dict[str, str], timeout: float = 900) -> Any:
        """GET /api/v1/<path>; the `data` of a success, BacktestError otherwise."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            try:
                detail = json.load(exc).get("error", "")
            except (ValueError, OSError):
                detail = ""
            raise BacktestError(
                f"Prometheus {path} answered {exc.code}: {detail} (query {params.get('query')})"
            ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise BacktestError(f"Prometheus {path} failed: {exc}") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else "not a Prometheus answer"
            raise BacktestError(f"Prometheus {path}: {error}")
        return body["data"]

    def label_values(self, label: str, match: str, start: int, end: int) -> list[str]:
        """The values of `label` on the series matching `match` between start and end."""
        params = {"match[]": match, "start": str(start), "end": str(end)}
        values = self.api(f"label/{label}/values", params)
        return sorted(str(v) for v in values or [])


class TempPrometheus(PrometheusAPI):
    """A real Prometheus over `data_dir` on a free loopback port, for queries only."""

    def __init__(self, data_dir: Path, work_dir: Path, timeout: float = 120.0):
        self.data_dir = data_dir
        self.work_dir = work_dir
        self.timeout = timeout
        self.port = _free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        config = work_dir / "prometheus.yml"
        config.write_text("global: {}\n")
        self.proc = ManagedProcess(
            "prometheus",
            [
                require_tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                "--storage.tsdb.retention.time=100y",
                "--storage.tsdb.min-block-duration=2h",
                "--storage.tsdb.max-block-duration=2h",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--query.timeout=10m",
                "--query.max-samples=200000000",
                "--log.level=warn",
            ],
            work_dir / f"prometheus-{self.port}.log",
            ready_url=f"{self.url}/-/ready",
        )

    def __enter__(self) -> TempPrometheus:
        self.proc.start()
        try:
            self.proc.wait_ready(self.timeout)
        except BaseException as exc:  # Ctrl-C or SIGTERM too: no Prometheus left behind
            self.proc.stop()
            if isinstance(exc, Exception):
                raise BacktestError(str(exc)) from exc
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.proc.stop()


@dataclass(frozen=True)
class BuildStats:
    samples: int
    levels: int
    seconds_history: float
    seconds_rules: float


def backfill_openmetrics(files: Sequence[Path], data_dir: Path) -> None:
    """Blocks from OpenMetrics files (one per block window: see openmetrics.SplitSink)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        _run(
            [
                require_tool("promtool"),
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "-q",
                f"--max-block-duration={HISTORY_BLOCK}",
                str(path),
                str(data_dir),
            ],
            f"promtool tsdb create-blocks-from openmetrics {path.name}",
        )
        path.unlink()


def backfill_rules(
    data_dir: Path,
    work_dir: Path,
    rules: Sequence[RecordingRule],
    start: int,
    end: int,
    interval: int,
    recorder: str = "query",
    slow_interval: int = DEFAULT_SLOW_INTERVAL,
) -> int:
    """Record every rule into `data_dir`, one level per pass; returns the level count.

    `recorder="query"` evaluates each rule with `query_range` (in day-long chunks, at
    the rule's interval) and backfills the results with `create-blocks-from openmetrics`
    in a few large blocks; `recorder="promtool"` runs `create-blocks-from rules`, which
    gives the same samples (except for rules using `@ end()`, which its range queries
    resolve to the range end: see record_level) but writes one 2-hour block per rule and
    window (measured: about 2 minutes per rule for 3 months of one team, against
    seconds).
    """
    levels = recording_levels(rules)
    for index, level in enumerate(levels):
        out_dir = work_dir / f"level-{index}-blocks"
        began = time.monotonic()
        with TempPrometheus(data_dir, work_dir) as prom:
            if recorder == "promtool":
                _record_with_promtool(prom, work_dir, index, level, start, end, interval, out_dir)
            else:
                sink = SplitSink(work_dir, f"level-{index}", BLOCK_WINDOW)
                record_level(prom, level, start, end, interval, sink, slow_interval)
        if recorder != "promtool":
            backfill_openmetrics(sink.paths, out_dir)
        _move_blocks(out_dir, data_dir)
        log.info(
            "recorded level %d (%d rules) in %.1fs", index, len(level), time.monotonic() - began
        )
    return len(levels)


def eval_times(start: int, end: int, step: int) -> tuple[int, int]:
    """First and last evaluation time in [start, end] on the `step` grid."""
    first = start + (-start) % step
    return first, end - end % step


def record_level(
    prom: PrometheusAPI,
    rules: Sequence[RecordingRule],
    start: int,
    end: int,
    interval: int,
    out: Sink,
    slow_interval: int = DEFAULT_SLOW_INTERVAL,
) -> int:
    """Evaluate the rules over [start, end]; write their samples as OpenMetrics.

    Each rule runs every max(its group interval, `interval`); a rule reading a range or
    offset of a day or more every max(that, `slow_interval`): its value moves little
    in minutes, and evaluating week-long windows every minute over months of history
    dominates the replay's run time. A rule using `@ end()` (the spend-to-date rules'
    evaluation time inside a subquery) runs one instant query per step, every
    max(that, `slow_interval`): a range query would resolve `end()` to the range's end
    at every step (all of a chunk's steps saw its last step's day, month and hour).
    """
    count = 0
    by_name: dict[str, list[RecordingRule]] = {}
    for rule in rules:
        by_name.setdefault(rule.record, []).append(rule)
    for name in sorted(by_name):
        out.family(f"# TYPE {name} unknown\n")
        for rule in by_name[name]:
            step = max(rule.interval, interval)
            per_step = reads_query_bounds(rule.expr)
            if per_step or longest_range(rule.expr) >= SLOW_RANGE:
                step = max(step, slow_interval)
            first, last = eval_times(start, end, step)
            labels = dict(rule.labels)
            if per_step:
                times = range(first, last + 1, step)

                def at(t: int, expr: str = rule.expr) -> Any:
                    return prom.api("query", {"query": expr, "time": str(t)})

                # Prometheus runs queries concurrently; this waits on it, not on Python.
                with ThreadPoolExecutor(PER_STEP_QUERIES) as pool:
                    for t, data in zip(times, pool.map(at, times), strict=True):
                        for series in data["result"]:
                            text = _recorded_labels(series["metric"], labels)
                            out.sample(t, f"{name}{text} {series['value'][1]} {t}\n")
                            count += 1
                continue
            t = first
            while t <= last:
                stop = min(last, t + (RECORD_CHUNK_STEPS - 1) * step)
                data = prom.api(
                    "query_range",
                    {"query": rule.expr, "start": str(t), "end": str(stop), "step": str(step)},
                )
                for series in data["result"]:
                    text = _recorded_labels(series["metric"], labels)
                    for ts, v in series["values"]:
                        out.sample(int(ts), f"{name}{text} {v} {ts}\n")
                    count += len(series["values"])
                t = stop + step
    out.close()
    return count


def _recorded_labels(metric: dict[str, str], rule_labels: dict[str, str]) -> str:
    """A result's labels without its name, with the rule's labels set: as label text."""
    labels = {k: v for k, v in metric.items() if k != "__name__"}
    labels.update(rule_labels)
    return label_text(labels)


def _record_with_promtool(
    prom: TempPrometheus,
    work_dir: Path,
    index: int,
    level: Sequence[RecordingRule],
    start: int,
    end: int,
    interval: int,
    out_dir: Path,
) -> None:
    rule_file = work_dir / f"level-{index}.rules.yml"
    write_rule_file(rule_file, level, interval)
    _run(
        [
            require_tool("promtool"),
            "tsdb",
            "create-blocks-from",
            "rules",
            "-q",
            f"--url={prom.url}",
            f"--start={start}",
            f"--end={end}",
            f"--output-dir={out_dir}",
            f"--eval-interval={interval}s",
            str(rule_file),
        ],
        f"promtool tsdb create-blocks-from rules (level {index}: "
        f"{', '.join(sorted({r.record for r in level}))})",
    )


def _move_blocks(src: Path, dst: Path) -> None:
    if not src.is_dir():
        return
    for block in src.iterdir():
        if (block / "meta.json").is_file():
            shutil.move(str(block), str(dst / block.name))
    shutil.rmtree(src, ignore_errors=True)


def tsdb_range(data_dir: Path) -> tuple[int, int]:
    """(min, max) time in seconds over the blocks of an existing TSDB directory."""
    times = []
    for meta in data_dir.glob("*/meta.json"):
        try:
            data = json.loads(meta.read_text())
            times.append((int(data["minTime"]) // 1000, int(data["maxTime"]) // 1000))
        except (OSError, ValueError, KeyError) as exc:
            raise BacktestError(f"{meta}: not a TSDB block's meta.json: {exc}") from exc
    if not times:
        raise BacktestError(
            f"{data_dir}: no TSDB blocks (directories with meta.json); "
            "pass a CSV or FOCUS file, or a Prometheus data directory"
        )
    return min(t[0] for t in times), max(t[1] for t in times)
