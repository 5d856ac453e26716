"""Build Prometheus TSDB history with promtool: raw series, then recording rules.

- `create_blocks_from_openmetrics`: OpenMetrics text with timestamps -> blocks
  (`promtool tsdb create-blocks-from openmetrics`).
- `backfill_recording_rules`: evaluates recording rules over the past, so baselines
  and burn-rate windows are valid from the first minute
  (`promtool tsdb create-blocks-from rules`, against a temporary Prometheus serving
  the data dir). promtool evaluates each rule against the raw data only, so a rule
  that reads another recorded series needs that series' blocks first: the rules are
  split into dependency levels and each level is backfilled after the previous one
  has been loaded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from aispend.procs import ManagedProcess


class TsdbError(RuntimeError):
    """promtool or the temporary Prometheus failed; the message has its output."""


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        raise TsdbError("promtool is not on PATH: run `make setup` (Debian package prometheus)")
    return path


def _run(argv: Sequence[str], timeout: float = 600) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        out = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise TsdbError(f"{' '.join(argv[:4])} failed ({done.returncode}):\n{out}")


def create_blocks_from_openmetrics(
    openmetrics: Path, data_dir: Path, max_block_duration: str = "24h"
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    _run(
        [
            _promtool(),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--quiet",
            f"--max-block-duration={max_block_duration}",
            str(openmetrics),
            str(data_dir),
        ]
    )


def rule_levels(rule_files: Sequence[Path]) -> list[list[dict[str, Any]]]:
    """Recording rules grouped by dependency level (level 0 reads only raw series)."""
    rules: list[dict[str, Any]] = []
    for path in rule_files:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            rules += [r for r in group.get("rules", []) if "record" in r]
    recorded = {r["record"] for r in rules}
    level: dict[str, int] = {}

    def level_of(rule: dict[str, Any], seen: frozenset[str] = frozenset()) -> int:
        name = rule["record"]
        if name in level:
            return level[name]
        used = {n for n in recorded if _mentions(rule["expr"], n)} - {name} - seen
        deps = [r for r in rules if r["record"] in used]
        result = 1 + max((level_of(d, seen | {name}) for d in deps), default=-1)
        level[name] = max(level.get(name, 0), result)
        return level[name]

    out: list[list[dict[str, Any]]] = []
    for rule in rules:
        n = level_of(rule)
        while len(out) <= n:
            out.append([])
        out[n].append(rule)
    return out


def _mentions(expr: str, name: str) -> bool:
    return re.search(r"(?<![\w:])" + re.escape(name) + r"(?![\w:])", expr) is not None


def backfill_recording_rules(
    data_dir: Path,
    rule_files: Sequence[Path],
    start: float,
    end: float,
    port: int,
    eval_interval: str = "60s",
    log_dir: Path | None = None,
) -> int:
    """Evaluate the recording rules over [start, end] into `data_dir`; returns levels run."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise TsdbError("prometheus is not on PATH: run `make setup`")
    levels = rule_levels(rule_files)
    with tempfile.TemporaryDirectory(prefix="aispend-rules-backfill-") as tmp:
        work = Path(tmp)
        (work / "prometheus.yml").write_text("global: {}\n")
        for i, rules in enumerate(levels):
            rule_file = work / f"level{i}.yml"
            groups = [{"name": f"backfill-level-{i}", "rules": rules}]
            rule_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
            out_dir = work / f"blocks{i}"
            server = ManagedProcess(
                "prometheus (backfill)",
                [
                    prometheus,
                    f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={data_dir}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=3650d",
                ],
                (log_dir or work) / "prometheus-backfill.log",
                ready_url=f"http://127.0.0.1:{port}/-/ready",
            )
            server.start()
            try:
                server.wait_ready(120)
                _run(
                    [
                        _promtool(),
                        "tsdb",
                        "create-blocks-from",
                        "rules",
                        f"--start={int(start)}",
                        f"--end={int(end)}",
                        f"--url=http://127.0.0.1:{port}",
                        f"--output-dir={out_dir}",
                        f"--eval-interval={eval_interval}",
                        str(rule_file),
                    ]
                )
            finally:
                server.stop()
            for block in out_dir.iterdir() if out_dir.exists() else []:
                if block.is_dir():
                    shutil.move(str(block), data_dir / block.name)
    return len(levels)
