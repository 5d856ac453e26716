"""`promtool test rules` on every file under alert-rules/tests/ (real promtool), and a
check that those files test every alerting rule: each rule (alert name and its fixed
labels, e.g. action=throttle and action=notify) fires in some case with exactly those
labels, and each alert name has a case where it must stay silent."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, require_binary

TESTS_DIR = REPO / "alert-rules" / "tests"
TEST_FILES = sorted(TESTS_DIR.glob("*.test.yml"))


def _run_promtool(promtool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "test", "rules", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def promtool_runs() -> Iterator[dict[Path, Future[subprocess.CompletedProcess[str]]]]:
    """Every file's `promtool test rules`, started at once, one per CPU: each promtool
    evaluates on one core, and these files are the slowest part of the suite."""
    promtool = require_binary("promtool")
    pool = ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0)))
    try:
        yield {path: pool.submit(_run_promtool, promtool, path) for path in TEST_FILES}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(
    path: Path, promtool_runs: dict[Path, Future[subprocess.CompletedProcess[str]]]
) -> None:
    out = promtool_runs[path].result()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def _alert_cases() -> list[dict[str, Any]]:
    cases = []
    for path in TEST_FILES:
        for group in yaml.safe_load(path.read_text())["tests"]:
            cases += group.get("alert_rule_test") or []
    return cases


def test_every_alerting_rule_has_a_firing_and_a_silent_case() -> None:
    rules = [
        rule
        for group in yaml.safe_load((REPO / "alert-rules" / "aispend.alerts.yml").read_text())[
            "groups"
        ]
        for rule in group["rules"]
    ]
    cases = _alert_cases()
    fired = [
        (case["alertname"], {k: str(v) for k, v in alert["exp_labels"].items()})
        for case in cases
        for alert in case.get("exp_alerts") or []
    ]
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    untested = [
        (rule["alert"], rule["labels"])
        for rule in rules
        if not any(
            name == rule["alert"] and rule["labels"].items() <= labels.items()
            for name, labels in fired
        )
    ]
    assert untested == []
    assert {rule["alert"] for rule in rules} - silent == set()
