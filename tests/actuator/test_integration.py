"""The actuator against the real gateway (two replicas), and through real Alertmanager.

Everything here is a real process on loopback: the demo upstream (the simulated LLM
provider, since no real provider can be reached), two `aispend gateway` replicas with
their own throttle tables, `aispend actuator`, and for the second test the Debian
`prometheus-alertmanager` loaded with the repo's deploy/alertmanager.yml, rendered as
`aispend stack up` renders it (service URLs -> 127.0.0.1 ports, secrets dir -> the
test's), so it delivers to the actuator with the bearer token from credentials_file.
Only its group_wait/group_interval are shortened (to 1s/2s) so that a resolve arrives
in seconds; routes, matchers, receivers and auth are the repo's.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from aispend import metrics as m
from aispend.actuators.store import iter_audit
from aispend.procs import ManagedProcess, wait_until
from tests.actuator.fakes import TOKEN, alert, payload
from tests.conftest import REPO, am_post_alert, free_port, require_binary, running_alertmanager
from tests.gateway import harness
from tests.gateway.harness import chat

pytestmark = pytest.mark.integration

RANKER = harness.SEARCH_RANKER  # team search, agent rerank-agent
CRAWLER = harness.SEARCH_CRAWLER  # team search, agent crawler-agent


def throttles(gw: harness.Server) -> dict[str, dict[str, Any]]:
    status, body, _ = harness.admin(gw, "GET", "/admin/throttles")
    assert status == 200
    return {rule["id"]: rule for rule in body["throttles"]}


def start_actuator(stack: ExitStack, tmp_path: Path, config: Path, db: Path) -> tuple[Path, int]:
    """The real actuator process (dry-run off by flag) on a free port, stopped with
    `stack`; returns the secrets directory (its bearer token) and the port."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "actuator_token").write_text(TOKEN + "\n")
    port = free_port()
    proc = ManagedProcess(
        "actuator",
        [sys.executable, "-m", "aispend", "actuator", "--config", str(config),
         "--listen", f"127.0.0.1:{port}", "--token-file", str(secrets / "actuator_token"),
         "--state-db", str(db), "--dry-run", "false"],
        tmp_path / "actuator.log",
        ready_url=f"http://127.0.0.1:{port}/healthz",
        cwd=REPO,
    )  # fmt: skip
    proc.start()
    stack.callback(proc.stop)
    proc.wait_ready(30)
    return secrets, port


@contextmanager
def stack(tmp_path: Path, requests_per_minute: int = 1) -> Iterator[dict[str, Any]]:
    """Upstream, two gateway replicas, and the actuator (dry-run off by flag)."""
    with ExitStack() as stack:
        up = stack.enter_context(harness.upstream(tmp_path))
        gateways = []
        for i in range(2):
            replica = tmp_path / f"gw{i}"
            replica.mkdir()
            config = harness.write_config(replica, up.url)
            gateways.append(stack.enter_context(harness.gateway(replica, config)))
        data = yaml.safe_load((tmp_path / "gw0" / "aispend.yaml").read_text())
        data["actions"] = {
            "dry_run": True,  # as in production configs; the --dry-run flag turns it off
            "rules": [
                {"name": "throttle-at-gateway", "match": {"action": "throttle"},
                 "target": "gateway", "mode": "throttle",
                 "requests_per_minute": requests_per_minute},
            ],
            "targets": {"gateway": {
                "type": "gateway", "urls": [g.url for g in gateways],
                "admin_token_file": str(tmp_path / "gw0" / "gateway_admin_token")}},
        }  # fmt: skip
        config = tmp_path / "actuator.yaml"
        config.write_text(yaml.safe_dump(data))
        secrets, port = start_actuator(stack, tmp_path, config, tmp_path / "actuator.sqlite3")
        yield {
            "gateways": gateways,
            "actuator": f"http://127.0.0.1:{port}",
            "secrets": secrets,
            "db": tmp_path / "actuator.sqlite3",
        }


def post(url: str, body: Any) -> int:
    request = urllib.request.Request(
        url + "/alerts",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_throttle_on_real_gateways_then_resolve_lifts_it(tmp_path):
    fp = "5eed000000000042"
    with stack(tmp_path) as s:
        g0, g1 = s["gateways"]
        assert chat(g0, RANKER)[0] == 200 and chat(g0, RANKER)[0] == 200  # not throttled yet

        assert post(s["actuator"], payload(alert(fp))) == 200
        for gw in (g0, g1):
            rule = throttles(gw)[f"am-{fp}"]
            assert (rule["team"], rule["agent"], rule["project"], rule["model"]) == (
                "search", "rerank-agent", None, None)  # fmt: skip
            assert (rule["mode"], rule["requests_per_minute"]) == ("rate", 1)
            assert rule["alert_fingerprint"] == fp
        # 1 request per minute for rerank-agent: the first passes, the next gets 429.
        assert chat(g1, RANKER)[0] == 200
        status, body = chat(g1, RANKER)
        assert status == 429
        assert (body["error"]["code"], body["error"]["rule"]) == ("aispend_throttled", f"am-{fp}")
        # The other agent of the same team is not throttled.
        assert [chat(g1, CRAWLER)[0] for _ in range(3)] == [200, 200, 200]

        assert post(s["actuator"], payload(alert(fp, status="resolved"))) == 200
        assert throttles(g0) == {} and throttles(g1) == {}
        assert [chat(g1, RANKER)[0] for _ in range(3)] == [200, 200, 200]

    results = [(a.decision, a.result) for a in iter_audit(s["db"])]
    assert results == [("apply", "pending"), ("apply", "ok"), ("undo", "ok")]


# ---------------------------------------------------------------- real Alertmanager

ALERTMANAGER_YML = REPO / "deploy" / "alertmanager.yml"


def render_alertmanager(actuator_url: str, secrets: Path, out: Path) -> Path:
    """deploy/alertmanager.yml as `aispend stack up` renders it."""
    text = ALERTMANAGER_YML.read_text()
    text = re.sub(r"http://actuator:\d+", actuator_url, text)
    text = text.replace("/etc/aispend/secrets/", str(secrets) + "/")
    # Other receivers (pager, chat) point at services not running here: deliveries to
    # them fail and are retried by Alertmanager; that does not affect the actuator.
    config = yaml.safe_load(text)

    # Short timers so a resolve is delivered in seconds, not the production minutes.
    def shorten(route: dict[str, Any]) -> None:
        for key, value in (("group_wait", "1s"), ("group_interval", "2s")):
            if key in route:
                route[key] = value
        for child in route.get("routes") or []:
            shorten(child)

    config["route"]["group_wait"] = "1s"
    config["route"]["group_interval"] = "2s"
    shorten(config["route"])
    path = out / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_alertmanager_delivers_to_actuator_which_throttles_real_gateways(tmp_path):
    if not ALERTMANAGER_YML.exists():
        pytest.fail("deploy/alertmanager.yml is missing (the rules part writes it)")
    require_binary("prometheus-alertmanager")  # before the stack starts
    with stack(tmp_path) as s:
        g0, g1 = s["gateways"]
        config = render_alertmanager(s["actuator"], s["secrets"], tmp_path)
        with running_alertmanager(config, tmp_path) as am_url:
            labels = {
                "alertname": "AISpendRunawaySpend", "severity": "critical", "team": "search",
                "agent": "rerank-agent", "action": "throttle",
            }  # fmt: skip
            summary = {"summary": "rerank-agent spends 9.1x its usual rate"}
            am_post_alert(am_url, labels, annotations=summary)
            rules = wait_until(
                lambda: throttles(g1) or None, 60, 0.2, "the throttle to reach the gateway"
            )
            (rule_id,) = rules
            assert rule_id.startswith("am-") and rule_id in throttles(g0)
            assert (rules[rule_id]["team"], rules[rule_id]["agent"]) == ("search", "rerank-agent")
            assert chat(g0, RANKER)[0] == 200
            assert chat(g0, RANKER)[0] == 429

            am_post_alert(am_url, labels, datetime.now(UTC) - timedelta(seconds=1), summary)
            wait_until(lambda: throttles(g0) == {} and throttles(g1) == {}, 60, 0.2, "the undo")
            assert chat(g0, RANKER)[0] == 200
            # Every delivery was authenticated with the token from credentials_file.
            with urllib.request.urlopen(s["actuator"] + "/metrics", timeout=10) as response:
                exposition = response.read().decode()
            assert f'{m.ACTUATOR_WEBHOOK_REQUESTS.name}{{code="200"}}' in exposition
            assert 'code="401"' not in exposition
    audit = list(iter_audit(s["db"]))
    applied = [a for a in audit if (a.decision, a.result) == ("apply", "ok")]
    undone = [a for a in audit if (a.decision, a.result) == ("undo", "ok")]
    assert len(applied) == 1 and len(undone) == 1
    assert applied[0].fingerprint == undone[0].fingerprint == rule_id[3:]


def test_apply_left_pending_is_undone_when_alertmanager_resolves(tmp_path):
    """Replica B is down when the alert fires: A takes the throttle, B refuses. The alert
    resolves before B is back. Alertmanager sends a resolve only to a receiver that got
    the firing, so the actuator answers the firing 2xx (and retries B itself); had it
    answered 503, A would stay throttled for good. Real Alertmanager (the repo's routes,
    timers shortened as above), real gateways, real actuator process."""
    require_binary("prometheus-alertmanager")
    with ExitStack() as stack:
        up = stack.enter_context(harness.upstream(tmp_path))
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
        gw_a = stack.enter_context(
            harness.gateway(tmp_path / "a", harness.write_config(tmp_path / "a", up.url))
        )
        port_b = free_port()  # replica B: down until after the resolve
        data = yaml.safe_load((tmp_path / "a" / "aispend.yaml").read_text())
        data["actions"] = {
            "dry_run": False,
            "rules": [{"name": "throttle-at-gateway", "match": {"action": "throttle"},
                       "target": "gateway", "mode": "throttle"}],
            "targets": {"gateway": {
                "type": "gateway", "urls": [gw_a.url, f"http://127.0.0.1:{port_b}"],
                "admin_token_file": str(tmp_path / "a" / "gateway_admin_token")}},
        }  # fmt: skip
        (tmp_path / "actuator.yaml").write_text(yaml.safe_dump(data))
        db = tmp_path / "actuator.sqlite3"
        secrets, port = start_actuator(stack, tmp_path, tmp_path / "actuator.yaml", db)
        config = render_alertmanager(f"http://127.0.0.1:{port}", secrets, tmp_path)
        am_url = stack.enter_context(running_alertmanager(config, tmp_path))
        labels = {
            "alertname": "AISpendRunawaySpend", "severity": "critical", "team": "search",
            "agent": "rerank-agent", "action": "throttle",
        }  # fmt: skip

        am_post_alert(am_url, labels)
        wait_until(lambda: throttles(gw_a) or None, 60, 0.2, "the throttle on replica A")
        am_post_alert(am_url, labels, datetime.now(UTC) - timedelta(seconds=1))

        def resolve_results() -> list[str]:
            return [a.result for a in iter_audit(db) if a.alert_status == "resolved"]

        # The resolve reaches the actuator although B still refuses: A's throttle is
        # lifted, B's undo fails (503) and Alertmanager redelivers the resolve.
        wait_until(
            lambda: throttles(gw_a) == {} and resolve_results(),
            20,
            0.2,
            "the resolve to reach the actuator and lift replica A's throttle",
        )
        assert resolve_results()[0] == "error: retry"
        stack.enter_context(
            harness.gateway(
                tmp_path / "b", harness.write_config(tmp_path / "b", up.url), port=port_b
            )
        )
        wait_until(lambda: "ok" in resolve_results(), 30, 0.2, "the redelivered resolve to undo")
        assert throttles(gw_a) == {}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        assert f'{m.ACTUATOR_WEBHOOK_REQUESTS.name}{{code="202"}}' in exposition
    rows = sqlite3.connect(db).execute("SELECT state FROM actions").fetchall()
    assert rows == [("undone",)]
