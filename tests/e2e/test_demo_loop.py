"""The closed loop, end to end: `aispend demo --once` with every real part.

Real: Prometheus and Alertmanager (Debian binaries) with the repo's generated rules and
deploy/alertmanager.yml, production scrape and evaluation intervals (15 s), the
gateway, the actuator (dry-run off) and the budgets exporter as processes, the openai
SDK as the agents' client. Simulated, because no provider account or chat service is
reachable here: the LLM upstream (`aispend demo upstream`) and the chat/pager endpoint
(`aispend demo chat-sink`, which records what Alertmanager delivers). The history is
generated (`aispend demo history`), 8 days instead of 14 to keep the test short: the
week baselines need one week.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aispend.demo.scenario import DEMO_COMPONENTS
from aispend.demo.workload import AGENTS, CRITICAL_RUNAWAY, RUNAWAY
from tests.conftest import EXAMPLE_CONFIG, REPO, free_port_base, require_binary
from tests.foundation.test_stack import processes_mentioning

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    require_binary("promtool")
    tmp = tmp_path_factory.mktemp("demo")
    run_dir = tmp / "run"
    result_path = tmp / "result.json"
    base = free_port_base(DEMO_COMPONENTS)
    env = {k: v for k, v in os.environ.items() if k != "AISPEND_CONFIG"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aispend",
            "demo",
            "--once",
            "--config",
            str(EXAMPLE_CONFIG),
            "--run-dir",
            str(run_dir),
            "--port-base",
            str(base),
            "--days",
            "8",
            "--rules-backfill-hours",
            "1",
            "--warmup",
            "30",
            "--result",
            str(result_path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    print(output)
    assert processes_mentioning(str(run_dir)) == [], "the demo left processes behind"
    assert result_path.exists(), output
    result = json.loads(result_path.read_text())
    result["_exit"] = done.returncode
    result["_output"] = output
    return result


def test_demo_exits_zero_and_closes_the_loop(demo_result: dict):
    assert demo_result["_exit"] == 0, demo_result["_output"]
    assert demo_result["loop_closed"] is True
    marks = demo_result["timeline"]["marks"]
    for key in ("spike", "pending", "firing", "throttled", "resolved", "lifted", "ok_again"):
        assert key in marks, (key, marks)
    assert marks["spike"] < marks["firing"] <= marks["throttled"] < marks["lifted"]
    assert demo_result["time_to_act_s"] > 0
    assert demo_result["spent_before_throttle"] > 0
    assert demo_result["rate_after_per_hour"] < demo_result["rate_before_per_hour"]


def test_only_the_runaway_agent_is_throttled(demo_result: dict):
    statuses = {
        name: {int(k): v for k, v in s.items()} for name, s in demo_result["statuses"].items()
    }
    assert statuses[RUNAWAY].get(429, 0) > 0
    for agent in AGENTS:
        if agent.key_name == RUNAWAY:
            continue
        assert statuses[agent.key_name].get(429, 0) == 0, (agent.key_name, statuses)
        assert statuses[agent.key_name].get(200, 0) > 0, (agent.key_name, statuses)


def test_critical_team_is_notified_not_throttled(demo_result: dict):
    assert demo_result["critical_notified_not_throttled"] is True
    critical = next(a for a in AGENTS if a.key_name == CRITICAL_RUNAWAY)
    bodies = [json.dumps(n["body"]) for n in demo_result["notifications"]]
    assert any("AISpendRunawaySpend" in b and f'"team": "{critical.team}"' in b for b in bodies)


def test_audit_log_holds_apply_and_undo(demo_result: dict):
    runaway = next(a for a in AGENTS if a.key_name == RUNAWAY)
    records = [r for r in demo_result["audit"] if runaway.agent in json.dumps(r)]
    text = json.dumps(records)
    assert records, demo_result["audit"]
    assert '"apply"' in text and '"undo"' in text, text
    assert all(r.get("dry_run") in (False, 0) for r in records), text


def test_nothing_is_left_running(demo_result: dict):
    # Checked in the fixture for the demo's own run dir; here for the exit summary.
    assert "loop closed:                             True" in demo_result["_output"]
