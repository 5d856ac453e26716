"""Command and webhook targets, driven through the actuator's /alerts endpoint.

The command is a real child process (the test's Python writing its environment to a
file); the webhook receiver is a local aiohttp server recording what it is sent.
"""

from __future__ import annotations

import json
import sys

from aiohttp import web

from tests.actuator.fakes import Seen, ThreadedServer, _seen, alert, payload

FP = "00000000000c0de1"
SCRIPT = (
    "import json, os, sys; "
    "open(sys.argv[1], 'a').write(json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith('AISPEND_')}) + '\\n')"
)


def test_command_runs_with_labels_as_env_and_undo_command(make_actuator, tmp_path):
    out = tmp_path / "calls.jsonl"
    act = make_actuator(
        {
            "dry_run": False,
            "rules": [
                {
                    "name": "run-script",
                    "match": {"action": "pause"},
                    "target": "script",
                    "mode": "pause",
                }
            ],
            "targets": {
                "script": {
                    "type": "command",
                    "apply": [sys.executable, "-c", SCRIPT, str(out)],
                    "undo": [sys.executable, "-c", SCRIPT, str(out)],
                    "timeout": "10s",
                }
            },
        }
    )
    assert act.post(payload(alert(FP, action="pause", project="ranking"))).status_code == 200
    assert act.post(payload(alert(FP, status="resolved", action="pause"))).status_code == 200
    apply_env, undo_env = (json.loads(line) for line in out.read_text().splitlines())
    assert apply_env == {
        "AISPEND_ALERTNAME": "AISpendRunawaySpend",
        "AISPEND_SEVERITY": "critical",
        "AISPEND_TEAM": "search",
        "AISPEND_AGENT": "rerank-agent",
        "AISPEND_LABEL_ACTION": "pause",  # the alert's action label, set aside
        "AISPEND_ACTION": "apply",
        "AISPEND_PROJECT": "ranking",
        "AISPEND_MODE": "pause",
        "AISPEND_RULE": "run-script",
        "AISPEND_FINGERPRINT": FP,
        "AISPEND_STARTS_AT": "2024-05-01T10:00:00+00:00",
    }
    # Undo sees the labels of the applied action (the ones it acted on).
    assert undo_env["AISPEND_ACTION"] == "undo" and undo_env["AISPEND_PROJECT"] == "ranking"
    assert undo_env["AISPEND_LABEL_ACTION"] == "pause"
    assert [(a.decision, a.result) for a in act.audit()] == [
        ("apply", "pending"),
        ("apply", "ok"),
        ("undo", "ok"),
    ]


def test_a_cloud_secret_the_command_prints_is_blanked_in_the_audit(make_actuator, monkeypatch):
    """The command keeps the environment its cloud CLI may need (AZURE_CLIENT_SECRET for
    DefaultAzureCredential), but a script that prints it put the secret in the audit
    log, where every reader of `aispend actuator audit` saw it."""
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "azure-sp-secret-XYZ")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "aws-session-123456")
    monkeypatch.setenv("REGION", "westeurope")
    show = (
        "import os; print('az login as sp', os.environ['AZURE_CLIENT_SECRET'],"
        " os.environ['AWS_SESSION_TOKEN'], os.environ['REGION'])"
    )
    act = make_actuator(
        {
            "dry_run": False,
            "rules": [
                {"name": "run", "match": {"action": "pause"}, "target": "script", "mode": "pause"}
            ],
            "targets": {"script": {"type": "command", "apply": [sys.executable, "-c", show]}},
        }
    )
    assert act.post(payload(alert(FP, action="pause"))).json()["alerts"][0]["result"] == "ok"
    detail = act.audit()[-1].detail
    assert detail.endswith("az login as sp [AZURE_CLIENT_SECRET] [AWS_SESSION_TOKEN] westeurope")
    assert "azure-sp-secret" not in detail and "aws-session" not in detail


def test_command_gets_no_aispend_secrets_and_refuses_colliding_labels(
    make_actuator, tmp_path, monkeypatch
):
    # The command's output lands in the audit log: the actuator's own tokens must not
    # be in its environment. Other variables (PATH, cloud CLI settings) pass through.
    monkeypatch.setenv("AISPEND_ACTUATOR_TOKEN", "actuator-secret-1")
    monkeypatch.setenv("AISPEND_GATEWAY_ADMIN_TOKEN", "gateway-secret-2")
    monkeypatch.setenv("MY_GATEWAY_TOKEN", "gateway-secret-3")
    monkeypatch.setenv("AISPEND_STALE", "from the parent")
    monkeypatch.setenv("KUBECONFIG_HINT", "kept")
    out = tmp_path / "env.json"
    dump = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
    act = make_actuator(
        {
            "dry_run": False,
            "rules": [
                {"name": "run", "match": {"action": "pause"}, "target": "script", "mode": "pause"}
            ],
            "targets": {
                "script": {"type": "command", "apply": [sys.executable, "-c", dump, str(out)]},
                "gw": {
                    "type": "gateway",
                    "urls": ["http://127.0.0.1:9"],
                    "admin_token_env": "MY_GATEWAY_TOKEN",
                },
            },
        }
    )
    assert act.post(payload(alert(FP, action="pause"))).json()["alerts"][0]["result"] == "ok"
    env = json.loads(out.read_text())
    assert not {k: v for k, v in env.items() if "-secret-" in v or v == "from the parent"}
    assert env["KUBECONFIG_HINT"] == "kept" and env["AISPEND_TEAM"] == "search"

    r = act.post(payload(alert("00000000000c0de2", action="pause", TEAM="payments")))
    result = r.json()["alerts"][0]
    assert (r.status_code, result["result"]) == (200, "error")
    assert "labels 'team' and 'TEAM' would both set AISPEND_TEAM" in act.audit()[-1].error


def test_command_failure_and_timeout(make_actuator, tmp_path):
    act = make_actuator(
        {
            "dry_run": False,
            "rules": [
                {
                    "name": "fails",
                    "match": {"alertname": "Fails"},
                    "target": "fail",
                    "mode": "notify",
                },
                {
                    "name": "hangs",
                    "match": {"alertname": "Hangs"},
                    "target": "hang",
                    "mode": "notify",
                },
            ],
            "targets": {
                "fail": {
                    "type": "command",
                    "apply": [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
                },
                "hang": {
                    "type": "command",
                    "apply": [sys.executable, "-c", "import time; time.sleep(60)"],
                    "timeout": "0.5s",
                },
            },
        }
    )
    r = act.post(payload(alert(FP, alertname="Fails")))
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (200, "error")
    assert act.audit()[-1].error.endswith("exited with status 3: boom")
    r = act.post(payload(alert("00000000000c0de2", alertname="Hangs")))
    # A timeout may be retried: the actuator does so itself (the intent is recorded).
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (202, "error: will retry")
    assert "timed out after 0.5s and was killed" in act.audit()[-1].error


def test_label_value_with_a_nul_byte_is_an_error_not_a_retry_loop(make_actuator, tmp_path):
    # JSON and Alertmanager carry "\u0000" in a label value; no environment variable
    # can hold it, so the command cannot run: a recorded error, not a 500 to retry.
    out = tmp_path / "calls.jsonl"
    act = make_actuator(
        {
            "dry_run": False,
            "rules": [{"name": "run", "match": {"action": "pause"}, "target": "script",
                       "mode": "pause"}],
            "targets": {"script": {"type": "command",
                                   "apply": [sys.executable, "-c", SCRIPT, str(out)]}},
        }
    )  # fmt: skip
    r = act.post(payload(alert(FP, action="pause", project="rank\u0000ing")))
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (200, "error")
    assert act.audit()[-1].error.endswith("alert labels: embedded null byte")
    assert not out.exists()


def test_webhook_posts_summary(make_actuator, tmp_path):
    seen: list[Seen] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append(await _seen(request))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = ThreadedServer(app).start()
    (tmp_path / "hook_token").write_text("hook-secret\n")
    try:
        act = make_actuator(
            {
                "dry_run": False,
                "rules": [
                    {
                        "name": "tell-chat",
                        "match": {"action": "notify"},
                        "target": "chat",
                        "mode": "notify",
                    }
                ],
                "targets": {
                    "chat": {
                        "type": "webhook",
                        "url": f"{server.url}/hook",
                        "token_file": str(tmp_path / "hook_token"),
                    }
                },
            }
        )
        assert act.post(payload(alert(FP, action="notify"))).status_code == 200
        assert act.post(payload(alert(FP, status="resolved", action="notify"))).status_code == 200
    finally:
        server.stop()
    assert [s.body["action"] for s in seen] == ["apply", "undo"]
    assert seen[0].headers["Authorization"] == "Bearer hook-secret"
    assert seen[0].body == {
        "action": "apply",
        "mode": "notify",
        "rule": "tell-chat",
        "alertname": "AISpendRunawaySpend",
        "team": "search",
        "labels": alert(FP, action="notify")["labels"],
        "annotations": {"summary": "rerank-agent spends 9.1x its usual rate"},
        "fingerprint": FP,
        "starts_at": "2024-05-01T10:00:00+00:00",
    }


def test_notify_is_allowed_for_critical_teams(make_actuator, tmp_path):
    out = tmp_path / "calls.jsonl"
    act = make_actuator(
        {
            "dry_run": False,
            "rules": [{"name": "n", "match": {}, "target": "script", "mode": "notify"}],
            "targets": {
                "script": {"type": "command", "apply": [sys.executable, "-c", SCRIPT, str(out)]}
            },
        }
    )
    r = act.post(payload(alert(FP, team="support", agent="reply-agent")))
    assert r.json()["alerts"][0]["result"] == "ok"
    assert json.loads(out.read_text())["AISPEND_TEAM"] == "support"


def test_a_header_the_http_client_refuses_is_a_final_target_error() -> None:
    """Tokens are one line since find_secret checks them (tests/foundation/test_secrets);
    should a header still be refused, aiohttp's ValueError was no TargetError and the
    alert was answered 500 "cannot record the decision", its row left `applying`."""
    import asyncio

    import aiohttp
    import pytest

    from aispend.actuators.settings import WebhookTargetSettings
    from aispend.actuators.targets.base import Action, TargetError
    from aispend.actuators.targets.webhook import WebhookTarget

    async def receive(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = ThreadedServer(app).start()

    async def post() -> TargetError:
        async with aiohttp.ClientSession() as session:
            settings = WebhookTargetSettings(type="webhook", url=f"{server.url}/hook")
            target = WebhookTarget("hook", settings, session)
            target._token = "line-one\nline-two"
            action = Action(FP, "2024-05-01T10:00:00Z", {}, {}, "rule", "notify")
            with pytest.raises(TargetError) as err:
                await target.apply(action, {})
            return err.value

    try:
        error = asyncio.run(post())
    finally:
        server.stop()
    assert not error.retryable
    assert "request refused by the client" in str(error) and "line-one" not in str(error)
