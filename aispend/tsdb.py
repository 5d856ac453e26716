"""Build Prometheus TSDB history with promtool: raw series, then recording rules.

- `create_blocks_from_openmetrics`: OpenMetrics text with timestamps -> blocks
  (`promtool tsdb create-blocks-from openmetrics`).
- `backfill_recording_rules`: evaluates recording rules over the past, so recorded
  series have history from the first minute. A rule that reads another recorded
  series needs that series' blocks first: the rules are split into dependency levels
  and each level is recorded after the previous one has been loaded (the backtest's
  recorder; it gives the same samples as `promtool tsdb create-blocks-from rules`,
  which writes one 2-hour block per rule and window and is many times slower).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

HEAD_REACH_S = 3 * 3600
"""How far back a running Prometheus's head reaches (its newest 2 to 3 hours, not yet in
a block): given a block that ends later, it drops at restart every head sample older
than that end, of every series."""


def new_or_empty_dir(path: Path) -> bool:
    """Whether `path` is missing or an empty directory: a place for new TSDB blocks that
    mixes them with no other data."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def escape_label_value(value: str) -> str:
    """A label value as OpenMetrics text writes it between double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: dict[str, str]) -> str:
    """`{k="v",...}` of an OpenMetrics sample line, names sorted, values escaped ("" for
    no labels)."""
    if not labels:
        return ""
    body = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


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


def backfill_recording_rules(
    data_dir: Path,
    rule_files: Sequence[Path],
    start: float,
    end: float,
    eval_interval: str = "60s",
    only: Collection[str] | None = None,
) -> int:
    """Evaluate the recording rules over [start, end] into `data_dir`; returns levels run.

    `only`: just the rules recording these names, every `eval_interval`, after the
    rules they read (at any depth), every minute: a named rule reading a range reads
    its inputs between its own steps (the hourly spend sums the DCGM GPU cost rate at
    each minute of its hour).

    The backtest's recorder does the work (a temporary Prometheus per dependency level,
    `query_range`, blocks from OpenMetrics), so both use one implementation.
    """
    from aispend.backtest.rulefiles import RulesError, load_rules, parse_duration, with_inputs
    from aispend.backtest.tsdb import BacktestError, backfill_rules

    try:
        rules = load_rules(rule_files).recording
        interval = parse_duration(eval_interval)
        with tempfile.TemporaryDirectory(prefix="aispend-rules-backfill-") as tmp:
            if only is None:
                return backfill_rules(data_dir, Path(tmp), rules, int(start), int(end), interval)
            wanted = with_inputs(rules, only)
            inputs = [rule for rule in wanted if rule.record not in only]
            named = [rule for rule in wanted if rule.record in only]
            levels = 0
            for part, (chosen, step) in enumerate(((inputs, 60), (named, interval))):
                if chosen:
                    work = Path(tmp) / f"part-{part}"
                    work.mkdir()
                    levels += backfill_rules(data_dir, work, chosen, int(start), int(end), step)
            return levels
    except (RulesError, BacktestError) as exc:
        raise TsdbError(str(exc)) from exc
