"""What `aispend stack up` writes into its run directory, and how it follows an edit.

No process is started: these read the rendered files (the processes themselves are
tested with the real binaries in test_stack.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from aispend.stack.components import RunContext
from aispend.stack.render import ensure_secrets, render_config, rewrite
from aispend.stack.supervisor import Stack, StackOptions
from tests.conftest import EXAMPLE_CONFIG, REPO


def _ctx(tmp_path: Path) -> RunContext:
    return RunContext(
        run_dir=tmp_path / "run",
        repo_root=REPO,
        config_path=tmp_path / "run" / "aispend.yaml",
        port_base=19090,
    )


def test_only_a_components_own_address_is_made_local(tmp_path: Path) -> None:
    """`llm-gateway:4000` became `llm-127.0.0.1:9120`: the end of a longer host name
    matched, and its port was dropped."""
    ctx = _ctx(tmp_path)
    assert rewrite("http://gateway:9120/admin", ctx) == f"{ctx.url('gateway')}/admin"
    for kept in (
        "http://llm-gateway:4000",
        "http://my.prometheus:9090",
        "http://internal-actuator:8080",
        "http://gateway:4000",  # another service named gateway
    ):
        assert rewrite(kept, ctx) == kept


def test_a_gateway_target_without_urls_calls_the_local_gateway(tmp_path: Path) -> None:
    """The target's default URL is the Compose address http://gateway:9120: the stack's
    actuator called it, and no throttle ever reached the local gateway."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    del data["actions"]["targets"]["gateway"]["urls"]
    source = tmp_path / "aispend.yaml"
    source.write_text(yaml.safe_dump(data), encoding="utf-8")
    ctx = _ctx(tmp_path)
    ctx.run_dir.mkdir(parents=True)
    render_config(source, ctx)
    rendered = yaml.safe_load(ctx.config_path.read_text(encoding="utf-8"))
    assert rendered["actions"]["targets"]["gateway"]["urls"] == [ctx.url("gateway")]


def test_secret_paths_in_comments_create_no_files(tmp_path: Path) -> None:
    """deploy/alertmanager.yml's comments name secret files in prose: `chat_token.` and
    `pagerduty_routing_key.` (with the full stop) and slack_webhook_url were created."""
    ctx = _ctx(tmp_path)
    text = (REPO / "deploy" / "alertmanager.yml").read_text(encoding="utf-8")
    created = sorted(p.name for p in ensure_secrets(text, ctx))
    assert created == ["actuator_token", "chat_token", "pagerduty_routing_key"]


def test_a_config_gone_for_a_moment_keeps_the_stack_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkout, a stash or an editor's rename removes aispend.yaml for a moment: the
    next check raised FileNotFoundError, and the stack stopped every process."""
    source = tmp_path / "aispend.yaml"
    shutil.copy(EXAMPLE_CONFIG, source)
    stack = Stack(StackOptions(config=source, run_dir=tmp_path / "run", port_base=19090))
    stack.ctx.run_dir.mkdir(parents=True)
    render_config(source, stack.ctx)

    source.rename(tmp_path / "away.yaml")
    stack.check()  # gone: the running config stays
    source.mkdir()  # a path that cannot be read as a file
    stack.check()
    stack.check()  # said once, not at every check
    warnings = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(warnings) == 1
    source.rmdir()
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace("currency: USD", "currency: USD\n")
    source.write_text(text, encoding="utf-8")
    stack.check()  # back, changed: rendered again
    assert stack.ctx.config_path.read_text(encoding="utf-8") == rewrite(text, stack.ctx)
