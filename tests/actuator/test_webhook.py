"""The actuator end to end over HTTP, against two fake gateway replicas.

The gateways are fakes of the admin API (aispend/gateway/admin.py) because this file checks the
actuator's own logic: auth, validation, policy, idempotency, undo, audit, metrics.
test_integration.py repeats the main path with the real gateway and Alertmanager.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from aispend import metrics as m
from tests.actuator.conftest import gateway_actions
from tests.actuator.fakes import TOKEN, FakeGatewayAdmin, ThreadedServer, alert, payload
from tests.conftest import require_binary

FP = "a1b2c3d4e5f60718"
KEY = (FP, "2024-05-01T10:00:00+00:00")
HOURS = (3600.0, 3600.0)  # the retry loop's backoff where a test redelivers by hand


def _urls(gateways):
    return [server.url for _, server in gateways]


def test_firing_throttles_agent_on_every_replica_and_resolved_lifts_it(
    gateways, make_actuator, admin_token_file
):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    r = act.post(payload(alert(FP)))
    assert r.status_code == 200
    assert r.json() == {"alerts": [{"fingerprint": FP, "decision": "apply", "result": "ok"}]}
    for fake, _ in gateways:
        (put,) = fake.calls("PUT")
        assert put.path == f"/admin/throttles/am-{FP}"
        assert put.headers["Authorization"] == "Bearer test-gateway-admin-token-91ab"
        assert put.body == {
            "team": "search",
            "project": None,
            "agent": "rerank-agent",
            "model": None,
            "mode": "rate",
            "requests_per_minute": 6,
            "tokens_per_minute": None,
            "reason": "AISpendRunawaySpend: rerank-agent spends 9.1x its usual rate",
            "alert_fingerprint": FP,
            "expires_at": None,
        }
    assert act.states() == {KEY: "applied"}

    r = act.post(payload(alert(FP, status="resolved")))
    assert r.status_code == 200
    assert r.json()["alerts"][0]["result"] == "ok"
    for fake, _ in gateways:
        assert [s.path for s in fake.calls("DELETE")] == [f"/admin/throttles/am-{FP}"]
        assert fake.rules == {}
    assert act.states() == {KEY: "undone"}
    audit = act.audit()
    assert [(a.decision, a.result) for a in audit] == [
        ("apply", "pending"),
        ("apply", "ok"),
        ("undo", "ok"),
    ]
    done = audit[1]
    assert (done.rule, done.target, done.mode, done.dry_run) == (
        "throttle-agent",
        "gw",
        "throttle",
        False,
    )
    assert done.alertname == "AISpendRunawaySpend" and done.team == "search"
    assert done.detail == f"rate rule am-{FP} on search/rerank-agent at 2 gateway(s)"


def test_pause_blocks(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    assert act.post(payload(alert(FP, action="pause"))).status_code == 200
    body = gateways[0][0].calls("PUT")[0].body
    assert (body["mode"], body["requests_per_minute"], body["tokens_per_minute"]) == (
        "block",
        None,
        None,
    )


@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_missing_or_wrong_token_is_401_and_nothing_happens(
    gateways, make_actuator, admin_token_file, token
):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    r = act.post(payload(alert(FP)), token=token)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json() == {"error": "missing or wrong bearer token"}
    assert all(fake.seen == [] for fake, _ in gateways)
    assert act.audit() == [] and act.states() == {}


def test_basic_auth_scheme_is_refused(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    r = requests.post(
        f"{act.url}/alerts",
        json=payload(alert(FP)),
        headers={"Authorization": "Basic dGVzdC1hY3R1YXRvci10b2tlbi01ZjJj"},
        timeout=10,
    )
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"{not json", 400, "body is not valid JSON"),
        (b"[" * 100_000, 400, "body is not valid JSON"),
        (b"[]", 422, "(body): Input should be an object"),
        (
            b'{"version": "3", "status": "firing", "alerts": []}',
            422,
            "version: Input should be '4'",
        ),
    ],
)
def test_invalid_bodies(gateways, make_actuator, admin_token_file, raw, status, message):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    r = act.post(None, raw=raw)
    assert r.status_code == status
    assert r.json()["error"].startswith(message)
    assert act.audit() == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_that_cannot_be_decoded_is_400(gateways, make_actuator, admin_token_file, encoding):
    """`Content-Encoding: gzip` on a plain body was a 500 (a retry) with an aiohttp
    traceback in the log; br and zstd already gave aiohttp's own 400."""
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    r = requests.post(
        f"{act.url}/alerts",
        data=b'{"version": "4"}',
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            "Content-Encoding": encoding,
        },
        timeout=30,
    )
    assert r.status_code == 400
    assert r.json()["error"].startswith("body cannot be read: ")
    assert act.audit() == []


def test_invalid_alert_field_is_named(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    bad = alert(FP)
    bad["labels"]["team"] = 7  # a number, not a string
    r = act.post(payload(bad))
    assert r.status_code == 422
    assert r.json()["error"] == "alerts.0.labels.team: Input should be a valid string"
    bad = alert(FP)
    del bad["startsAt"]
    assert act.post(payload(bad)).json()["error"] == "alerts.0.startsAt: Field required"
    bad = alert(FP)
    bad["labels"]["team\n"] = "x"  # Python's `$` would accept the trailing newline
    assert act.post(payload(bad)).json()["error"] == (
        "alerts.0.labels: 'team\n' is not a valid label name"
    )
    bad = alert("not-hex!")
    assert (
        act.post(payload(bad))
        .json()["error"]
        .startswith("alerts.0.fingerprint: String should match")
    )
    assert all(fake.seen == [] for fake, _ in gateways)


def test_an_invalid_alert_in_a_grouped_notification_is_refused_alone(
    gateways, make_actuator, admin_token_file
):
    """A route grouping by alertname sends A's resolve together with B's firing, B with a
    label name Prometheus 3 allows (`service.name`): the whole notification got a 422,
    which Alertmanager does not retry, so A's throttle stayed in force for good. B is
    refused alone; A is undone."""
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    other = "b0b0b0b0b0b0b0b0"
    assert act.post(payload(alert(FP))).status_code == 200
    assert all(list(fake.rules) == [f"am-{FP}"] for fake, _ in gateways)
    b = alert(other, agent="summarizer", **{"service.name": "api"})
    r = act.post(payload(alert(FP, status="resolved"), b))
    assert r.status_code == 200
    assert r.json()["alerts"] == [
        {
            "fingerprint": other,
            "decision": "refused",
            "result": "alerts.1.labels: 'service.name' is not a valid label name",
        },
        {"fingerprint": FP, "decision": "undo", "result": "ok"},
    ]
    assert all(fake.rules == {} for fake, _ in gateways)
    assert {a.fingerprint for a in act.audit()} == {FP}  # nothing recorded for B


def test_an_alertname_with_a_line_break_cannot_forge_a_log_line(
    gateways, make_actuator, admin_token_file, caplog
):
    """Whoever can push alerts to Alertmanager names them: an alertname with a newline
    wrote a second, forged line into the actuator's log."""
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    forged = "X\n2024-05-01 10:00:00 INFO aispend.actuators.app: alert Y undo ok"
    with caplog.at_level(logging.INFO, logger="aispend.actuators.app"):
        act.post(payload(alert(FP, alertname=forged)))
        bad = alert("b0b0b0b0b0b0b0b0", **{"bad\nname": "x"})
        act.post(payload(alert("c0c0c0c0c0c0c0c0"), bad))
    lines = [r.getMessage() for r in caplog.records if r.name == "aispend.actuators.app"]
    assert len(lines) == 3 and not [line for line in lines if "\n" in line], lines


def test_duplicate_firing_acts_once(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    for _ in range(3):
        assert act.post(payload(alert(FP))).status_code == 200
    assert len(gateways[0][0].calls("PUT")) == 1
    assert [a.result for a in act.audit()] == [
        "pending",
        "ok",
        "ignored: duplicate",
        "ignored: duplicate",
    ]


def test_resolved_before_firing_is_recorded_and_later_firing_ignored(
    gateways, make_actuator, admin_token_file
):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    assert act.post(payload(alert(FP, status="resolved"))).status_code == 200
    r = act.post(payload(alert(FP)))
    assert r.json()["alerts"][0]["result"] == "ignored: resolved before firing"
    assert all(fake.seen == [] for fake, _ in gateways)
    assert act.states() == {KEY: "resolved"}


def test_critical_team_is_never_throttled(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    r = act.post(payload(alert(FP, team="support", agent="reply-agent")))
    assert r.status_code == 200
    assert r.json()["alerts"][0] == {
        "fingerprint": FP,
        "decision": "skip",
        "result": "skipped: critical",
    }
    assert all(fake.seen == [] for fake, _ in gateways)
    (rec,) = act.audit()
    assert (rec.rule, rec.target, rec.team) == ("throttle-agent", "gw", "support")
    # and resolving it has nothing to undo
    r = act.post(payload(alert(FP, status="resolved", team="support", agent="reply-agent")))
    assert r.json()["alerts"][0]["result"] == "nothing to undo"
    assert all(fake.seen == [] for fake, _ in gateways)


def test_dry_run_records_and_does_nothing(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file, dry_run=True))
    r = act.post(payload(alert(FP)))
    assert r.json()["alerts"][0] == {"fingerprint": FP, "decision": "apply", "result": "dry_run"}
    act.post(payload(alert(FP, status="resolved")))
    assert all(fake.seen == [] for fake, _ in gateways)
    assert [(a.decision, a.result, a.dry_run) for a in act.audit()] == [
        ("apply", "dry_run", True),
        ("undo", "nothing to undo", True),
    ]


def test_per_rule_dry_run_overrides_global(gateways, make_actuator, admin_token_file):
    actions = gateway_actions(_urls(gateways), admin_token_file, dry_run=True)
    actions["rules"][0]["dry_run"] = False
    act = make_actuator(actions)
    assert act.post(payload(alert(FP))).json()["alerts"][0]["result"] == "ok"
    assert len(gateways[1][0].calls("PUT")) == 1


def test_no_matching_rule_is_recorded(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    r = act.post(payload(alert(FP, action="notify")))
    assert r.json()["alerts"][0]["result"] == "skipped: no matching rule"
    assert gateways[0][0].seen == []


def test_max_active_per_team(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file, max_active_per_team=2))
    results = [
        act.post(payload(alert(f"{i:016x}", agent=f"agent-{i}"))).json()["alerts"][0]["result"]
        for i in range(3)
    ]
    assert results == ["ok", "ok", "skipped: max active actions"]
    assert len(gateways[0][0].calls("PUT")) == 2


def test_cooldown_per_rule_and_workload(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file, cooldown="1h"))
    assert act.post(payload(alert(FP))).json()["alerts"][0]["result"] == "ok"
    act.post(payload(alert(FP, status="resolved")))
    # The same agent fires again (new startsAt) within the hour: held back.
    again = alert(FP, starts_at="2024-05-01T10:40:00Z")
    assert act.post(payload(again)).json()["alerts"][0]["result"] == "skipped: cooldown"
    # Another agent is not affected.
    other = alert("0000000000000abc", agent="crawler-agent")
    assert act.post(payload(other)).json()["alerts"][0]["result"] == "ok"


def test_gateway_down_is_202_then_a_redelivery_applies(gateways, make_actuator, admin_token_file):
    """A redelivery of the firing (an HA peer, repeat_interval) resumes the apply too; the
    retry loop is held back here (test_retry.py covers it)."""
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file), retry_backoff=HOURS)
    gateways[1][0].fail_with = 503
    r = act.post(payload(alert(FP)))
    assert r.status_code == 202
    assert r.json()["alerts"][0]["result"] == "error: will retry"
    assert act.states() == {KEY: "applying"}
    gateways[1][0].fail_with = None
    r = act.post(payload(alert(FP)))
    assert r.status_code == 200
    assert r.json()["alerts"][0]["result"] == "ok"
    assert all(list(fake.rules) == [f"am-{FP}"] for fake, _ in gateways)
    assert act.states() == {KEY: "applied"}


def test_a_resumed_apply_throttles_only_where_undo_will_lift_it(
    gateways, make_actuator, admin_token_file
):
    """The apply was interrupted (replica 2 down), then the actuator restarted with the
    replica list [1, 3]. The resumed apply must go where the recorded intent says undo will
    delete it; a rule PUT at replica 3 would be left there for good."""
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file), retry_backoff=HOURS)
    gateways[1][0].fail_with = 503
    assert act.post(payload(alert(FP))).status_code == 202
    gateways[1][0].fail_with = None
    third = FakeGatewayAdmin()
    server = ThreadedServer(third.app()).start()
    try:
        urls = [gateways[0][1].url, server.url]
        restarted = make_actuator(gateway_actions(urls, admin_token_file), retry_backoff=HOURS)
        assert restarted.post(payload(alert(FP))).json()["alerts"][0]["result"] == "ok"
        assert restarted.post(payload(alert(FP, status="resolved"))).status_code == 200
        assert [list(fake.rules) for fake, _ in gateways] == [[], []]
        assert third.calls("PUT") == [] and third.rules == {}
    finally:
        server.stop()


def test_gateway_rejecting_the_rule_is_not_retried(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    gateways[0][0].fail_with = 422
    r = act.post(payload(alert(FP)))
    assert r.status_code == 200
    assert r.json()["alerts"][0]["result"] == "error"
    assert act.states() == {KEY: "apply_failed"}
    assert "HTTP 422" in act.audit()[-1].error
    # The other replica took the rule: resolving removes it there.
    assert list(gateways[1][0].rules) == [f"am-{FP}"]
    gateways[0][0].fail_with = None
    r = act.post(payload(alert(FP, status="resolved")))
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (200, "ok")
    assert [list(fake.rules) for fake, _ in gateways] == [[], []]
    assert act.states() == {KEY: "undone"}


def test_undo_refused_is_answered_503_until_a_redelivery_undoes_it(
    gateways, make_actuator, admin_token_file
):
    """A refused undo (the gateway's admin token was rotated: 401) leaves the workload
    throttled: the actuator asks Alertmanager to redeliver the resolve, and the
    redelivery after the fix undoes it."""
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    assert act.post(payload(alert(FP))).status_code == 200
    gateways[0][0].fail_with = 401
    r = act.post(payload(alert(FP, status="resolved")))
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (503, "error")
    assert act.states() == {KEY: "undo_failed"}
    assert list(gateways[0][0].rules) == [f"am-{FP}"]
    gateways[0][0].fail_with = None
    r = act.post(payload(alert(FP, status="resolved")))
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (200, "ok")
    assert act.states() == {KEY: "undone"}
    assert all(fake.rules == {} for fake, _ in gateways)


def test_undo_tolerates_rule_already_gone(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    act.post(payload(alert(FP)))
    gateways[0][0].rules.clear()  # someone deleted it by hand on one replica
    r = act.post(payload(alert(FP, status="resolved")))
    assert r.status_code == 200 and r.json()["alerts"][0]["result"] == "ok"
    assert act.states() == {KEY: "undone"}


def test_fifty_concurrent_duplicates_and_out_of_order_resolves(
    gateways, make_actuator, admin_token_file
):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    firing, resolved = payload(alert(FP)), payload(alert(FP, status="resolved"))
    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda _: act.post(firing).status_code, range(50)))
    assert codes == [200] * 50
    # Then 25 resolved and 25 firings, all at once, interleaved. A firing after a resolve
    # is the alert firing again (engine.py), so the outcome follows the order the engine
    # took them in; the gateways must always agree with the recorded state.
    mixed = [resolved if i % 2 else firing for i in range(50)]
    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda body: act.post(body).status_code, mixed))
    assert codes == [200] * 50
    state = act.states()[KEY]
    assert state in ("applied", "undone")
    results = [(a.decision, a.result) for a in act.audit()]
    applies, undos = results.count(("apply", "ok")), results.count(("undo", "ok"))
    assert applies - undos == (1 if state == "applied" else 0)
    for fake, _ in gateways:
        assert len(fake.calls("PUT")) == applies
        assert len(fake.calls("DELETE")) == undos
        assert list(fake.rules) == ([f"am-{FP}"] if state == "applied" else [])
    assert act.post(resolved).status_code == 200
    assert act.states() == {KEY: "undone"}
    assert all(fake.rules == {} for fake, _ in gateways)

    # A second alert whose resolved arrives first, among 49 firings: never applied.
    fp2 = "ffff00000000beef"
    bodies = [payload(alert(fp2, status="resolved"))] + [payload(alert(fp2))] * 49
    assert act.post(bodies[0]).status_code == 200
    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(lambda body: act.post(body).status_code, bodies[1:]))
    assert codes == [200] * 49
    assert not any(s.path.endswith(fp2) for fake, _ in gateways for s in fake.seen)


def test_metrics_exposition(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    act.post(payload(alert(FP)))
    act.post(payload(alert(FP)), token="bad")
    act.post(payload(alert("0000000000000001", team="support")))
    text = requests.get(f"{act.url}/metrics", timeout=10).text
    assert f'{m.ACTUATOR_ACTIONS.name}{{action="apply",result="ok",target="gw"}} 1.0' in text
    assert f'{m.ACTUATOR_ACTIONS.name}{{action="skip",result="skipped",target="gw"}} 1.0' in text
    assert f'{m.ACTUATOR_ACTIVE_ACTIONS.name}{{target="gw",team="search"}} 1.0' in text
    assert f'{m.ACTUATOR_WEBHOOK_REQUESTS.name}{{code="200"}} 2.0' in text
    assert f'{m.ACTUATOR_WEBHOOK_REQUESTS.name}{{code="401"}} 1.0' in text
    promtool = require_binary("promtool")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, "")
    assert requests.get(f"{act.url}/healthz", timeout=10).status_code == 200


def test_undo_with_gateway_down_is_503_then_redelivery_undoes(
    gateways, make_actuator, admin_token_file
):
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file))
    assert act.post(payload(alert(FP))).status_code == 200
    gateways[0][0].fail_with = 502
    r = act.post(payload(alert(FP, status="resolved")))
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (503, "error: retry")
    assert act.states() == {KEY: "applied"}  # still active: nothing lost
    gateways[0][0].fail_with = None
    r = act.post(payload(alert(FP, status="resolved")))
    assert (r.status_code, r.json()["alerts"][0]["result"]) == (200, "ok")
    assert act.states() == {KEY: "undone"}
    assert all(fake.rules == {} for fake, _ in gateways)
    assert [(a.decision, a.result) for a in act.audit()] == [
        ("apply", "pending"),
        ("apply", "ok"),
        ("undo", "error: retry"),
        ("undo", "ok"),
    ]


def test_a_locked_database_is_500_with_nothing_recorded_then_a_redelivery_applies(
    gateways, make_actuator, admin_token_file
):
    """Another process holds the state database's write lock (an operator's sqlite3
    shell mid-transaction). A write waited up to 30 s on the event loop, /healthz and
    /metrics with it; it now gives up after STORE_BUSY_S (1 s): 500, nothing recorded
    and nothing applied, and Alertmanager's redelivery applies once the lock is gone."""
    act = make_actuator(gateway_actions(_urls(gateways), admin_token_file), retry_backoff=HOURS)
    busy = sqlite3.connect(act.db, isolation_level=None)
    busy.execute("BEGIN IMMEDIATE")
    try:
        r = act.post(payload(alert(FP)))  # the old 30 s wait outlasts this client's 30 s
        assert r.status_code == 500
    finally:
        busy.execute("ROLLBACK")
        busy.close()
    assert act.states() == {}
    assert all(fake.calls("PUT") == [] for fake, _ in gateways)
    r = act.post(payload(alert(FP)))
    assert r.status_code == 200
    assert act.states() == {KEY: "applied"}


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"tokens_per_minute": 50000}, (None, 50000)),  # no request limit
        ({"requests_per_minute": 30}, (30, None)),
        ({}, (6, None)),  # neither: the target's defaults
    ],
)
def test_a_rule_that_sets_a_limit_sets_both(
    gateways, make_actuator, admin_token_file, limits, expected
):
    """A token-only rule also got the target's default 6 requests per minute: a token
    cap became a near-block for a service of many small calls."""
    actions = gateway_actions(_urls(gateways), admin_token_file)
    rule = actions["rules"][0]
    del rule["requests_per_minute"]
    rule.update(limits)
    act = make_actuator(actions)
    assert act.post(payload(alert(FP))).json()["alerts"][0]["result"] == "ok"
    body = gateways[0][0].calls("PUT")[0].body
    assert (body["requests_per_minute"], body["tokens_per_minute"]) == expected
