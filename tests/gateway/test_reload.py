"""Config reload of the running gateway (real process, real signals, real files).

Simulated: the provider (the demo upstream on loopback; no provider account can be
reached here). It only answers the chat calls that show which keys the gateway accepts.

A new API key takes effect on SIGHUP without a restart; a config that does not load,
or names a provider key file that cannot be read, is refused: the last good config
keeps serving and aispend_config_last_reload_success drops to 0 until a good file is
back (picked up by the file watcher alone, no signal).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import yaml

from aispend import metrics as m
from aispend.procs import wait_until
from tests.gateway.harness import (
    RESEARCH_EVALS,
    Metrics,
    Server,
    admin,
    chat,
    gateway,
    upstream,
    write_config,
)

NEW_KEY = "sk-added-by-a-reload"
WAIT_S = 15.0


def _status(gw: Server, key: str) -> int:
    return chat(gw, key)[0]


def _reload_ok(gw: Server) -> float:
    return Metrics.scrape(gw).value(m.CONFIG_RELOAD_SUCCESS.name)


def _with_new_key(config: Path) -> dict[str, Any]:
    data = yaml.safe_load(config.read_text())
    digest = hashlib.sha256(NEW_KEY.encode()).hexdigest()
    data["api_keys"].append({"sha256": digest, "team": "growth", "agent": "copywriter-agent"})
    return data


def test_sighup_adds_a_key_and_bad_edits_keep_the_last_good_config(tmp_path: Path) -> None:
    with upstream(tmp_path) as up:
        config = write_config(tmp_path, up.url)
        with gateway(tmp_path, config) as gw:
            pid = gw.proc.pid
            assert pid is not None
            assert _status(gw, NEW_KEY) == 401
            assert _reload_ok(gw) == 1

            good = _with_new_key(config)
            config.write_text(yaml.safe_dump(good, sort_keys=False))
            os.kill(pid, signal.SIGHUP)
            wait_until(lambda: _status(gw, NEW_KEY) == 200, WAIT_S, what="the new key")
            assert _reload_ok(gw) == 1

            # Not a valid config: refused, the previous one keeps serving.
            config.write_text("teams: 5\n")
            os.kill(pid, signal.SIGHUP)
            wait_until(lambda: _reload_ok(gw) == 0, WAIT_S, what="the failed reload")
            assert _status(gw, NEW_KEY) == 200
            assert gw.proc.proc is not None and gw.proc.proc.poll() is None

            # Valid, but its provider key file cannot be read: refused as well.
            bad_secret = json.loads(json.dumps(good))
            openai = bad_secret["sources"]["gateway"]["upstreams"]["openai"]
            openai.pop("api_key_env")
            openai["api_key_file"] = str(tmp_path / "missing-provider-key")
            bad_secret["api_keys"] = good["api_keys"][:-1]  # would drop NEW_KEY if applied
            config.write_text(yaml.safe_dump(bad_secret, sort_keys=False))
            os.kill(pid, signal.SIGHUP)
            log = tmp_path / f"gateway-{gw.url.rsplit(':', 1)[1]}.log"
            wait_until(lambda: "missing-provider-key" in log.read_text(), WAIT_S, what="refusal")
            assert _reload_ok(gw) == 0
            assert _status(gw, NEW_KEY) == 200

            # A good file again: the file watcher reloads it without a signal.
            config.write_text(yaml.safe_dump(good, sort_keys=False) + "# edited\n")
            wait_until(lambda: _reload_ok(gw) == 1, WAIT_S, what="the watcher reload")
            assert _status(gw, NEW_KEY) == 200


def test_a_team_added_by_a_reload_can_be_throttled(tmp_path: Path) -> None:
    """The admin API checks a throttle's team against the config applied now."""
    body = {"team": "platform", "mode": "block", "reason": "x"}
    with upstream(tmp_path) as up:
        config = write_config(tmp_path, up.url)
        with gateway(tmp_path, config) as gw:
            assert admin(gw, "PUT", "/admin/throttles/platform", body)[0] == 422
            data = yaml.safe_load(config.read_text())
            data["teams"].append({"name": "platform"})
            config.write_text(yaml.safe_dump(data, sort_keys=False))
            assert gw.proc.proc is not None
            os.kill(gw.proc.proc.pid, signal.SIGHUP)
            wait_until(
                lambda: admin(gw, "PUT", "/admin/throttles/platform", body)[0] == 200,
                WAIT_S,
                what="the throttle for the new team",
            )


def test_an_agent_throttle_still_matches_after_a_reload(tmp_path: Path) -> None:
    """Research may label two agents of its own (cap 3, one configured). agent-a is
    throttled; an unrelated edit is reloaded; agent-c and agent-b call first. The new
    config's attribution started with no label given, so agent-c took agent-a's label,
    agent-a was counted as `other`, and its throttle let it through."""
    research = lambda agent: chat(gw, RESEARCH_EVALS, {"X-Aispend-Agent": agent})[0]  # noqa: E731
    with upstream(tmp_path) as up:
        config = write_config(tmp_path, up.url, max_agents_per_team=3)
        with gateway(tmp_path, config) as gw:
            assert [research("agent-a"), research("agent-b"), research("agent-c")] == [200] * 3
            block = {"team": "research", "agent": "agent-a", "mode": "block", "reason": "x"}
            assert admin(gw, "PUT", "/admin/throttles/agent-a", block)[0] == 200
            assert research("agent-a") == 429
            reloaded = Metrics.scrape(gw).value(m.CONFIG_RELOAD_TIMESTAMP.name)
            data = yaml.safe_load(config.read_text())
            data["budgets"][0]["amount"] += 1
            config.write_text(yaml.safe_dump(data, sort_keys=False))
            assert gw.proc.proc is not None
            os.kill(gw.proc.proc.pid, signal.SIGHUP)
            wait_until(
                lambda: Metrics.scrape(gw).value(m.CONFIG_RELOAD_TIMESTAMP.name) > reloaded,
                WAIT_S,
                what="the reload",
            )
            # The reload queued the swap on the event loop before its timestamp moved,
            # so the swap runs before the loop handles these requests.
            assert [research("agent-c"), research("agent-b"), research("agent-a")] == [
                200,
                200,
                429,
            ]
            requests = Metrics.scrape(gw)
            assert requests.total(m.LLM_REQUESTS.name, team="research", agent="agent-c") == 0
