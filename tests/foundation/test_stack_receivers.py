"""Who `aispend stack up`'s Alertmanager notifies: the actuator with the token it checks,
and never a demo sink that is not running.

The webhook test runs the real Alertmanager and the actuator as the stack starts them,
on free loopback ports; the others render into a temporary run dir or run the CLI up to
its refusal, before any process starts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aispend.procs import wait_until
from aispend.stack.components import ReceiversUnconfigured, RunContext
from aispend.stack.render import render_all
from aispend.stack.supervisor import Stack, StackOptions
from tests.conftest import (
    EXAMPLE_CONFIG,
    REPO,
    am_post_alert,
    free_port_base,
    processes_mentioning,
    require_binary,
)

RUNAWAY = {
    "alertname": "AISpendRunawaySpend",
    "severity": "warning",
    "action": "throttle",
    "team": "search",
    "agent": "rerank-agent",
}


def _example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return data


def _audited(db: Path) -> list[dict[str, str]] | None:
    from aispend.actuators.store import iter_audit

    try:
        return [r.labels for r in iter_audit(db)] or None
    except (FileNotFoundError, OSError):
        return None


@pytest.mark.integration
@pytest.mark.parametrize("source", ["token_file", "env"])
def test_alertmanager_sends_the_token_the_actuator_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    """Alertmanager read its bearer token from <run>/secrets/actuator_token (random), the
    actuator checked actions.token_file or $AISPEND_ACTUATOR_TOKEN: every webhook got a
    401 unless token_file was the example's literal path."""
    require_binary("prometheus-alertmanager")
    config = _example()
    token = "test-token-" + source
    monkeypatch.delenv("AISPEND_ACTUATOR_TOKEN", raising=False)
    if source == "token_file":
        token_path = tmp_path / "elsewhere" / "actuator.token"
        token_path.parent.mkdir()
        token_path.write_text(token + "\n", encoding="utf-8")
        config["actions"]["token_file"] = str(token_path)
    else:
        del config["actions"]["token_file"]
        monkeypatch.setenv("AISPEND_ACTUATOR_TOKEN", token)
    config_path = tmp_path / "aispend.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    components = ("chat-sink", "actuator", "alertmanager")
    run_dir = tmp_path / "run"
    stack = Stack(
        StackOptions(
            config=config_path,
            run_dir=run_dir,
            port_base=free_port_base(components),
            components=components,
        )
    )
    try:
        stack.start()
        am_post_alert(stack.ctx.url("alertmanager"), RUNAWAY, annotations={"summary": "test"})
        audited = wait_until(
            lambda: _audited(run_dir / "actuator.sqlite3"),
            60,
            interval=0.5,
            what="the actuator to audit the alert Alertmanager sent",
        )
    finally:
        stack.stop()
    assert {k: audited[0].get(k) for k in RUNAWAY} == RUNAWAY
    if source == "env":
        copy = run_dir / "secrets" / "actuator_token.from-env"
        assert copy.read_text(encoding="utf-8") == token
        assert copy.stat().st_mode & 0o777 == 0o600
    assert processes_mentioning(str(run_dir)) == []


def test_a_stack_without_the_chat_sink_refuses_receivers_that_point_at_it(
    tmp_path: Path,
) -> None:
    """`aispend stack up` for real use started cleanly with the pager and chat receivers
    sending to the demo's chat-sink, which it did not run, with an invented PagerDuty key:
    every page went nowhere."""
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "aispend", "stack", "up", "--config", str(EXAMPLE_CONFIG),
         "--run-dir", str(run_dir), "--port-base", str(free_port_base())],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "receivers chat-default, chat-growth, chat-research, chat-search, chat-support," in line
    assert "pager send to the demo's chat-sink (http://chat-sink:9195)" in line
    assert "--components +chat-sink" in line
    assert not run_dir.exists()
    assert processes_mentioning(str(run_dir)) == []


def _checkout(tmp_path: Path, pager_url: str | None) -> Path:
    """deploy/ and alert-rules/ copied, with the pager and chat receivers pointed away
    from the chat-sink (`pager_url` None: PagerDuty's own default URL)."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "deploy", root / "deploy")
    shutil.copytree(REPO / "alert-rules", root / "alert-rules")
    source = root / "deploy" / "alertmanager.yml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for receiver in data["receivers"]:
        for entry in receiver.get("pagerduty_configs", []):
            entry.pop("url")
            if pager_url:
                entry["url"] = pager_url
        for entry in receiver.get("webhook_configs", []):
            entry["url"] = entry["url"].replace("http://chat-sink:9195", "https://chat.example")
    source.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return root


def _ctx(tmp_path: Path, repo_root: Path) -> RunContext:
    run_dir = tmp_path / "run"
    return RunContext(run_dir, repo_root, run_dir / "aispend.yaml", 19090)


def test_real_receivers_need_their_keys_and_get_no_invented_ones(tmp_path: Path) -> None:
    """Receivers pointed at a real PagerDuty and chat: the stack invented a random routing
    key and chat token, so it started and every page was refused upstream."""
    ctx = _ctx(tmp_path, _checkout(tmp_path, pager_url=None))
    components = ["exporter-budgets", "alertmanager", "prometheus"]
    with pytest.raises(ReceiversUnconfigured) as refused:
        render_all(EXAMPLE_CONFIG, ctx, components, env={})
    secrets = ctx.run_dir / "secrets"
    assert f"{secrets / 'chat_token'} (receivers chat-default, chat-growth" in str(refused.value)
    assert f"{secrets / 'pagerduty_routing_key'} (receivers pager)" in str(refused.value)
    assert not secrets.exists() or sorted(p.name for p in secrets.iterdir()) == []

    secrets.mkdir(parents=True)
    (secrets / "chat_token").write_text("real-chat-token")
    (secrets / "pagerduty_routing_key").write_text("real-routing-key")
    render_all(EXAMPLE_CONFIG, ctx, components, env={})
    assert (secrets / "pagerduty_routing_key").read_text() == "real-routing-key"
    rendered = yaml.safe_load((ctx.run_dir / "alertmanager.yml").read_text())
    (pager,) = [r for r in rendered["receivers"] if r["name"] == "pager"]
    assert pager["pagerduty_configs"][0]["routing_key_file"] == str(
        secrets / "pagerduty_routing_key"
    )
    assert "url" not in pager["pagerduty_configs"][0]


def test_the_demo_stack_still_gets_its_sink_and_invented_keys(tmp_path: Path) -> None:
    """`make demo` runs the chat-sink: its receivers and keys stay as they were."""
    from aispend.demo.scenario import DEMO_COMPONENTS

    ctx = _ctx(tmp_path, REPO)
    render_all(EXAMPLE_CONFIG, ctx, DEMO_COMPONENTS, env={})
    secrets = ctx.run_dir / "secrets"
    assert sorted(p.name for p in secrets.iterdir()) == [
        "actuator_token",
        "chat_token",
        "gateway_admin_token",
        "pagerduty_routing_key",
    ]
    rendered = yaml.safe_load((ctx.run_dir / "alertmanager.yml").read_text())
    (pager,) = [r for r in rendered["receivers"] if r["name"] == "pager"]
    assert pager["pagerduty_configs"][0]["url"] == f"{ctx.url('chat-sink')}/pagerduty/v2/enqueue"
    (actuator,) = [r for r in rendered["receivers"] if r["name"] == "actuator"]
    auth = actuator["webhook_configs"][0]["http_config"]["authorization"]
    assert auth["credentials_file"] == str(secrets / "actuator_token")


def test_a_run_dir_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    """`--run-dir` naming a file: a FileExistsError traceback from the render."""
    run_dir = tmp_path / "afile"
    run_dir.write_text("not a directory")
    done = subprocess.run(
        [sys.executable, "-m", "aispend", "stack", "up", "--config", str(EXAMPLE_CONFIG),
         "--run-dir", str(run_dir), "--port-base", str(free_port_base()),
         "--components", "+chat-sink"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"aispend stack up: run directory {run_dir}: it is a file, not a directory;"
        " choose another with --run-dir"
    ]
    assert run_dir.read_text() == "not a directory"
    assert processes_mentioning(str(run_dir)) == []
