"""Budgets exporter: exact exposition for the example config, reloads, --once + promtool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aispend import __version__
from aispend.config_watch import ConfigWatcher
from aispend.exporters.budgets import BudgetsCollector
from aispend.procs import ManagedProcess, wait_until
from tests.conftest import EXAMPLE_CONFIG, free_port, require_binary, scrape

EXPECTED_BUDGETS = {
    # (team, project, agent, period): (amount, soft ratio or None)
    ("search", "", "", "month"): (12000, 0.8),
    ("search", "", "", "day"): (500, 0.8),
    ("support", "", "", "month"): (20000, 0.9),
    ("support", "", "", "day"): (800, None),
    ("research", "", "", "month"): (3000, 0.75),
    ("growth", "", "", "month"): (6000, 0.8),
    ("growth", "", "", "day"): (250, 0.8),
    ("search", "ranking", "", "month"): (8000, None),
    ("growth", "", "copywriter-agent", "day"): (120, 0.8),
}


def registry_for(watcher: ConfigWatcher) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(BudgetsCollector(lambda: watcher.config))
    registry.register(watcher)
    return registry


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_exact_exposition_for_example_config():
    registry = registry_for(ConfigWatcher(EXAMPLE_CONFIG))
    budgets = samples(registry, "aispend_budget")
    soft = samples(registry, "aispend_budget_soft_ratio")
    expected_budget = {}
    expected_soft = {}
    for (team, project, agent, period), (amount, ratio) in EXPECTED_BUDGETS.items():
        key = tuple(
            sorted({"team": team, "project": project, "agent": agent, "period": period}.items())
        )
        expected_budget[key] = amount
        if ratio is not None:
            expected_soft[key] = ratio
    assert budgets == expected_budget
    assert soft == expected_soft

    info = samples(registry, "aispend_team_info")
    assert info == {
        (
            ("cost_center", "CC-4100"),
            ("criticality", "standard"),
            ("owner", "search-oncall@example.com"),
            ("team", "search"),
        ): 1.0,
        (
            ("cost_center", "CC-2200"),
            ("criticality", "critical"),
            ("owner", "support-platform@example.com"),
            ("team", "support"),
        ): 1.0,
        (
            ("cost_center", "CC-7300"),
            ("criticality", "experimental"),
            ("owner", "ml-research@example.com"),
            ("team", "research"),
        ): 1.0,
        (
            ("cost_center", "CC-5500"),
            ("criticality", "standard"),
            ("owner", "growth-eng@example.com"),
            ("team", "growth"),
        ): 1.0,
    }
    assert (
        registry.get_sample_value("aispend_info", {"version": __version__, "currency": "USD"})
        == 1.0
    )
    assert registry.get_sample_value("aispend_exporter_up", {"source": "budgets"}) == 1.0
    assert registry.get_sample_value("aispend_config_last_reload_success") == 1.0


def test_reload_on_change_and_invalid_reload_keeps_last_good(tmp_path: Path):
    path = tmp_path / "aispend.yaml"
    path.write_text(EXAMPLE_CONFIG.read_text())
    clock = iter(range(1000, 2000)).__next__
    watcher = ConfigWatcher(path, clock=lambda: float(clock()))
    registry = registry_for(watcher)
    team_month = {"team": "search", "project": "", "agent": "", "period": "month"}
    assert registry.get_sample_value("aispend_budget", team_month) == 12000
    loaded_at = registry.get_sample_value("aispend_config_last_reload_success_timestamp_seconds")

    path.write_text(EXAMPLE_CONFIG.read_text().replace("amount: 12000", "amount: 15000"))
    assert watcher.check_for_change() is True
    assert registry.get_sample_value("aispend_budget", team_month) == 15000
    assert registry.get_sample_value("aispend_config_last_reload_success") == 1.0
    good_at = registry.get_sample_value("aispend_config_last_reload_success_timestamp_seconds")
    assert good_at is not None and loaded_at is not None and good_at > loaded_at

    path.write_text(EXAMPLE_CONFIG.read_text().replace("amount: 12000", "amount: -1"))
    assert watcher.check_for_change() is True
    assert registry.get_sample_value("aispend_config_last_reload_success") == 0.0
    assert registry.get_sample_value("aispend_budget", team_month) == 15000  # last good
    assert (
        registry.get_sample_value("aispend_config_last_reload_success_timestamp_seconds") == good_at
    )
    assert watcher.check_for_change() is False  # unchanged file: no reload

    path.write_text(EXAMPLE_CONFIG.read_text())
    watcher.check_for_change()
    assert registry.get_sample_value("aispend_config_last_reload_success") == 1.0
    assert registry.get_sample_value("aispend_budget", team_month) == 12000


def test_once_output_passes_promtool_check_metrics():
    promtool = require_binary("promtool")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "aispend",
            "exporter",
            "budgets",
            "--config",
            str(EXAMPLE_CONFIG),
            "--once",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    families = {f.name for f in text_string_to_metric_families(out)}
    assert {
        "aispend_budget",
        "aispend_budget_soft_ratio",
        "aispend_team_info",
        "aispend_info",
        "aispend_exporter_up",
        "aispend_config_last_reload_success",
    } <= families
    lint = subprocess.run([promtool, "check", "metrics"], input=out, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == ""


@pytest.mark.integration
def test_served_exporter_reloads_on_file_change_and_sighup(tmp_path: Path):
    path = tmp_path / "aispend.yaml"
    path.write_text(EXAMPLE_CONFIG.read_text())
    port = free_port()
    proc = ManagedProcess(
        "budgets",
        [
            sys.executable,
            "-m",
            "aispend",
            "exporter",
            "budgets",
            "--config",
            str(path),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        tmp_path / "exporter.log",
        ready_url=f"http://127.0.0.1:{port}/metrics",
    )
    url = f"http://127.0.0.1:{port}/metrics"
    line = 'aispend_budget{agent="",period="month",project="",team="research"}'
    proc.start()
    try:
        proc.wait_ready(20)
        assert f"{line} 3000.0" in scrape(url)
        path.write_text(EXAMPLE_CONFIG.read_text().replace("amount: 3000", "amount: 3500"))
        wait_until(lambda: f"{line} 3500.0" in scrape(url), 10, what="file-change reload")

        # An invalid edit is ignored: the old value stays and the success gauge drops.
        path.write_text("teams: [\n")
        wait_until(
            lambda: "aispend_config_last_reload_success 0.0" in scrape(url),
            10,
            what="failed reload",
        )
        assert f"{line} 3500.0" in scrape(url)

        # SIGHUP reloads too (written with the same size and mtime so polling can't see it).
        good = EXAMPLE_CONFIG.read_text().replace("amount: 3000", "amount: 3700")
        path.write_text(good)
        wait_until(lambda: f"{line} 3700.0" in scrape(url), 10, what="reload")
        stat = path.stat()
        path.write_text(good.replace("3700", "3800"))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        time.sleep(1.5)  # let one poll pass: it must not notice the same-stamp edit...
        assert f"{line} 3700.0" in scrape(url)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGHUP)  # ...but SIGHUP must
        wait_until(lambda: f"{line} 3800.0" in scrape(url), 10, what="SIGHUP reload")
    finally:
        proc.stop()
    assert not proc.alive()
