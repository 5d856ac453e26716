"""Attribution and the throttle table over real sockets, with the OpenAI SDK as client.

Simulated: the provider (aispend.demo.upstream over loopback, see test_sdk_paths).
The gateway is a real `python -m aispend gateway` process with its SQLite throttle
table in the test's tmp dir; the restart test stops it and starts a new process on
the same file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from aispend import metrics as m
from tests.conftest import free_port
from tests.gateway.harness import (
    ADMIN_TOKEN,
    RESEARCH_EVALS,
    SEARCH_CRAWLER,
    SEARCH_RANKER,
    Metrics,
    Server,
    admin,
    gateway,
    process_env,
    raw_http,
    upstream,
    write_config,
)

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with upstream(tmp_path_factory.mktemp("throttle-upstream")) as server:
        yield server


@pytest.fixture
def gw(up: Server, tmp_path: Path) -> Iterator[Server]:
    with gateway(tmp_path, write_config(tmp_path, up.url)) as server:
        yield server


def client(gw: Server, key: str = SEARCH_RANKER) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def call(
    gw: Server,
    key: str = SEARCH_RANKER,
    model: str = "gpt-4o-mini",
    headers: dict[str, str] | None = None,
) -> int:
    """One chat request; the HTTP status the client got."""
    try:
        client(gw, key).chat.completions.create(
            model=model, messages=MESSAGES, extra_headers=headers
        )
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def upstream_calls(up: Server) -> int:
    return int(up.get_json("/_demo/stats")["requests"])


def test_unknown_key_gets_401_and_never_reaches_upstream(gw: Server, up: Server) -> None:
    sent = upstream_calls(up)
    with pytest.raises(openai.AuthenticationError) as info:
        client(gw, "sk-not-a-known-key").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert upstream_calls(up) == sent
    metrics = Metrics.scrape(gw)
    assert metrics.value(m.LLM_REQUESTS.name, team="unattributed", project="", agent="",
                         provider="openai", model="other", status="401") == 1  # fmt: skip


def test_allow_unattributed_counts_as_unattributed(up: Server, tmp_path: Path) -> None:
    config = write_config(tmp_path, up.url, allow_unattributed=True)
    with gateway(tmp_path, config) as gw:
        assert call(gw, "sk-not-a-known-key") == 200
        metrics = Metrics.scrape(gw)
    labels = {"team": "unattributed", "project": "", "agent": "", "provider": "openai",
              "model": "gpt-4o-mini"}  # fmt: skip
    assert metrics.value(m.LLM_REQUESTS.name, **labels, status="200") == 1
    assert metrics.value(m.LLM_TOKENS.name, **labels, source="gateway", token_type="output") == 40


def test_block_then_delete(gw: Server, up: Server) -> None:
    status, rule, _ = admin(gw, "PUT", "/admin/throttles/runaway-1", {
        "team": "search", "agent": "rerank-agent", "mode": "block",
        "reason": "RunawaySpend: rerank-agent at 9x baseline", "alert_fingerprint": "abc123",
    })  # fmt: skip
    assert status == 200
    assert rule["id"] == "runaway-1"
    assert rule["mode"] == "block"
    assert rule["agent"] == "rerank-agent"

    sent = upstream_calls(up)
    with pytest.raises(openai.RateLimitError) as info:
        client(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    response = info.value.response
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    error = response.json()["error"]
    assert error == {
        "message": "throttled by aispend rule runaway-1: RunawaySpend: rerank-agent at 9x baseline",
        "type": "rate_limit_exceeded",
        "code": "aispend_throttled",
        "rule": "runaway-1",
        "reason": "RunawaySpend: rerank-agent at 9x baseline",
    }
    assert upstream_calls(up) == sent  # the upstream was not called
    # Another agent of the same team is not in the rule's scope.
    assert call(gw, SEARCH_CRAWLER) == 200

    metrics = Metrics.scrape(gw)
    assert metrics.value(m.GATEWAY_THROTTLED_REQUESTS.name, team="search", project="",
                         agent="rerank-agent", rule="runaway-1") == 1  # fmt: skip
    assert metrics.value(m.GATEWAY_THROTTLE_ACTIVE.name, rule="runaway-1", team="search",
                         project="", agent="rerank-agent", model="", mode="block") == 1  # fmt: skip

    status, _, _ = admin(gw, "DELETE", "/admin/throttles/runaway-1")
    assert status == 200
    assert call(gw) == 200
    status, body, _ = admin(gw, "DELETE", "/admin/throttles/runaway-1")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert Metrics.scrape(gw).total(m.GATEWAY_THROTTLE_ACTIVE.name) == 0


def test_agent_header_cannot_leave_the_keys_agent(gw: Server, up: Server) -> None:
    """header_refinement is on: X-Aispend-Agent naming another agent does not move a key
    configured with agent rerank-agent, so its team+agent block still holds; the
    project the key leaves unset is filled in from X-Aispend-Project."""
    other = {"X-Aispend-Agent": "rerank-agent-2", "X-Aispend-Project": "ranking"}
    assert call(gw, headers=other) == 200
    metrics = Metrics.scrape(gw)
    labels = {"team": "search", "provider": "openai", "model": "gpt-4o-mini", "status": "200"}
    assert metrics.value(m.LLM_REQUESTS.name, **labels, project="ranking",
                         agent="rerank-agent") == 1  # fmt: skip
    assert metrics.total(m.LLM_REQUESTS.name, agent="rerank-agent-2") == 0

    status, _, _ = admin(gw, "PUT", "/admin/throttles/runaway-2", {
        "team": "search", "agent": "rerank-agent", "mode": "block", "reason": "runaway",
    })  # fmt: skip
    assert status == 200
    sent = upstream_calls(up)
    assert call(gw, headers=other) == 429
    assert call(gw, headers={"X-Aispend-Agent": "rerank-agent-2"}) == 429
    assert upstream_calls(up) == sent
    metrics = Metrics.scrape(gw)
    assert metrics.value(m.GATEWAY_THROTTLED_REQUESTS.name, team="search", project="ranking",
                         agent="rerank-agent", rule="runaway-2") == 1  # fmt: skip
    assert metrics.value(m.GATEWAY_THROTTLED_REQUESTS.name, team="search", project="",
                         agent="rerank-agent", rule="runaway-2") == 1  # fmt: skip
    assert metrics.total(m.LLM_REQUESTS.name, agent="rerank-agent-2") == 0


def test_agent_header_fills_a_key_without_agent(gw: Server) -> None:
    """The research-evals key has project evals and no agent: X-Aispend-Agent names the
    agent, and X-Aispend-Project cannot change the configured project."""
    asked = {"X-Aispend-Agent": "eval-runner", "X-Aispend-Project": "finetune"}
    assert call(gw, RESEARCH_EVALS, headers=asked) == 200
    metrics = Metrics.scrape(gw)
    assert metrics.value(m.LLM_REQUESTS.name, team="research", project="evals",
                         agent="eval-runner", provider="openai", model="gpt-4o-mini",
                         status="200") == 1  # fmt: skip
    assert metrics.total(m.LLM_REQUESTS.name, project="finetune") == 0


def test_a_key_without_agent_cannot_bill_another_keys_agent(up: Server, tmp_path: Path) -> None:
    """A search key with no agent sends X-Aispend-Agent: crawler-agent, the agent the
    search-crawler key is pinned to: its spend is labelled agent="other", so an alert on
    crawler-agent's spend sees only the crawler's own requests."""
    shared = "sk-search-shared-for-tests"
    config = write_config(tmp_path, up.url)
    data = yaml.safe_load(config.read_text())
    digest = hashlib.sha256(shared.encode()).hexdigest()
    data["api_keys"].append({"sha256": digest, "team": "search", "description": "shared"})
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    with gateway(tmp_path, config) as gw:
        asked = {"X-Aispend-Agent": "crawler-agent", "X-Aispend-Project": "ranking"}
        assert call(gw, shared, headers=asked) == 200
        metrics = Metrics.scrape(gw)
        assert metrics.total(m.LLM_REQUESTS.name, team="search", agent="crawler-agent") == 0
        assert metrics.value(m.LLM_REQUESTS.name, team="search", project="ranking",
                             agent="other", provider="openai", model="gpt-4o-mini",
                             status="200") == 1  # fmt: skip
        assert call(gw, SEARCH_CRAWLER) == 200
        metrics = Metrics.scrape(gw)
        assert metrics.total(m.LLM_REQUESTS.name, team="search", agent="crawler-agent") == 1


def test_rate_mode_admits_n_per_minute(gw: Server) -> None:
    status, _, _ = admin(gw, "PUT", "/admin/throttles/evals-rate", {
        "team": "research", "project": "evals", "mode": "rate", "requests_per_minute": 3,
        "reason": "budget burn",
    })  # fmt: skip
    assert status == 200
    statuses = [call(gw, RESEARCH_EVALS) for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    # A repeated PUT of the same rule (Alertmanager re-delivers) must not refill it.
    status, _, _ = admin(gw, "PUT", "/admin/throttles/evals-rate", {
        "team": "research", "project": "evals", "mode": "rate", "requests_per_minute": 3,
        "reason": "budget burn",
    })  # fmt: skip
    assert status == 200
    assert call(gw, RESEARCH_EVALS) == 429


def test_model_scoped_rule(gw: Server) -> None:
    """A rule with a model matches the priced model name (dated names included)."""
    status, _, _ = admin(gw, "PUT", "/admin/throttles/no-4o", {
        "team": "search", "model": "gpt-4o", "mode": "block", "reason": "too expensive",
    })  # fmt: skip
    assert status == 200
    assert call(gw, model="gpt-4o-2024-08-06") == 429
    assert call(gw, model="gpt-4o-mini") == 200


@pytest.mark.parametrize(
    ("model", "label"),
    [("gpt-4o-2024-08-06", "gpt-4o"), ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet")],
)
def test_a_model_that_is_not_the_spend_label_is_refused(gw: Server, model: str, label: str) -> None:
    """The spend of a request for gpt-4o answered by gpt-4o-2024-08-06 is labelled
    gpt-4o: a rule on the dated name missed it and the PUT said 200. Now it is a 422
    naming the label to use, and nothing is stored."""
    status, answer, _ = admin(gw, "PUT", "/admin/throttles/dated", {
        "team": "search", "model": model, "mode": "block", "reason": "x",
    })  # fmt: skip
    assert status == 422
    assert answer["error"]["field"] == "model"
    assert answer["error"]["message"].endswith(f"): use {label!r}")
    assert admin(gw, "GET", "/admin/throttles")[1] == {"throttles": []}


def test_model_names_are_stored_as_the_spend_labels_them(gw: Server) -> None:
    """ " gpt-4o" (pasted with a space) was stored as is and matched nothing; a name the
    prices do not know is spend model "other" and matches the requests that name it."""
    for rule_id, model, stored in [
        ("spaced", " GPT-4o\t", "gpt-4o"),
        ("unknown", "Acme-Unknown-LLM", "acme-unknown-llm"),
        ("others", "other", "other"),
    ]:
        status, answer, _ = admin(gw, "PUT", f"/admin/throttles/{rule_id}", {
            "team": "research", "model": model, "mode": "block", "reason": "x",
        })  # fmt: skip
        assert (status, answer["model"]) == (200, stored)
    assert call(gw, RESEARCH_EVALS, model="gpt-4o") == 429
    assert call(gw, RESEARCH_EVALS, model="acme-unknown-llm") == 429
    assert call(gw, RESEARCH_EVALS, model="gpt-4o-mini") == 200
    admin(gw, "DELETE", "/admin/throttles/unknown")
    assert call(gw, RESEARCH_EVALS, model="acme-unknown-llm") == 429  # by the "other" rule
    admin(gw, "DELETE", "/admin/throttles/others")
    assert call(gw, RESEARCH_EVALS, model="acme-unknown-llm") == 200


def test_model_scoped_rule_stops_an_unlisted_azure_deployment(gw: Server) -> None:
    """The deployment is not in azure_deployments: its spend is labelled with the model
    Azure served through it, and a rule on that model stops it from then on."""
    azure = openai.AzureOpenAI(
        azure_endpoint=gw.url, api_key=SEARCH_RANKER, api_version="2024-10-21", max_retries=0
    )

    def via_azure() -> int:
        try:
            azure.chat.completions.create(model="prod-mini", messages=MESSAGES)
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    assert via_azure() == 200  # the demo upstream serves gpt-4o-mini-2024-07-18
    status, _, _ = admin(gw, "PUT", "/admin/throttles/no-mini", {
        "team": "search", "model": "gpt-4o-mini", "mode": "block", "reason": "too expensive",
    })  # fmt: skip
    assert status == 200
    assert via_azure() == 429
    assert call(gw, model="gpt-4o-mini") == 429
    assert call(gw, model="gpt-4o") == 200


def test_token_rate_limit(gw: Server) -> None:
    """tokens_per_minute: each demo answer costs its usage; the budget may go negative."""
    status, _, _ = admin(gw, "PUT", "/admin/throttles/tok", {
        "team": "search", "agent": "crawler-agent", "mode": "rate", "tokens_per_minute": 50,
        "reason": "tokens",
    })  # fmt: skip
    assert status == 200
    # One request uses 2 input + 40 output tokens: the second still fits (8 left), the
    # third finds the bucket below zero.
    assert [call(gw, SEARCH_CRAWLER) for _ in range(3)] == [200, 200, 429]


def test_throttles_survive_restart(up: Server, tmp_path: Path) -> None:
    config = write_config(tmp_path, up.url)
    with gateway(tmp_path, config) as gw:
        status, _, _ = admin(gw, "PUT", "/admin/throttles/persist", {
            "team": "search", "mode": "block", "reason": "survives",
            "expires_at": "2999-01-01T00:00:00Z",
        })  # fmt: skip
        assert status == 200
        assert call(gw) == 429
    with gateway(tmp_path, config) as gw:
        status, listing, _ = admin(gw, "GET", "/admin/throttles")
        assert status == 200
        assert [r["id"] for r in listing["throttles"]] == ["persist"]
        assert listing["throttles"][0]["expires_at"] == "2999-01-01T00:00:00Z"
        with pytest.raises(openai.RateLimitError) as info:
            client(gw).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert info.value.response.json()["error"]["rule"] == "persist"
        assert int(info.value.response.headers["Retry-After"]) > 60


def test_an_expiry_already_past_is_refused(gw: Server) -> None:
    """It was answered 200 with the rule, then purged at once: a throttle that never
    acted (the README's own example had a date that had passed). A rule that expires
    later stops acting then: test_units.test_block_expiry_and_persistence."""
    status, body, _ = admin(gw, "PUT", "/admin/throttles/old", {
        "team": "search", "mode": "block", "reason": "x", "expires_at": "2001-01-01T00:00:00Z",
    })  # fmt: skip
    assert status == 422
    assert body["error"]["field"] == "expires_at"
    assert body["error"]["message"].startswith(
        "expires_at: 2001-01-01T00:00:00Z has already passed (now "
    )
    assert call(gw) == 200
    assert admin(gw, "GET", "/admin/throttles")[1] == {"throttles": []}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"mode": "block", "reason": "x"}, 422, "team"),
        ({"team": "search", "mode": "rate", "reason": "x"}, 422, "(body)"),
        ({"team": "search", "mode": "slow", "reason": "x"}, 422, "mode"),
        ({"team": "search", "mode": "rate", "requests_per_minute": -1}, 422, "requests_per_minute"),
        # true is not 1 and "5" is not 5: a caller with a type bug gets an error
        (
            {"team": "search", "mode": "rate", "requests_per_minute": True},
            422,
            "requests_per_minute",
        ),
        ({"team": "search", "mode": "rate", "tokens_per_minute": "5"}, 422, "tokens_per_minute"),
        ({"team": "search", "mode": "block", "expires_at": "tomorrow"}, 422, "expires_at"),
        # Valid RFC 3339, but outside years 1-9999 once in UTC.
        (
            {"team": "search", "mode": "block", "expires_at": "9999-12-31T23:59:59-14:00"},
            422,
            "expires_at",
        ),
        (
            {"team": "search", "mode": "block", "expires_at": "0001-01-01T00:00:00+14:00"},
            422,
            "expires_at",
        ),
        ({"team": "search", "mode": "block", "colour": "red"}, 422, "colour"),
        ({"team": "search", "model": " ", "mode": "block"}, 422, "model"),
        ({"team": "search", "model": "gpt-4o-mini-2024-07-18", "mode": "block"}, 422, "model"),
        # Labels are lowercase in traffic: "Search" or "Rerank-Agent" would match nothing.
        ({"team": "Search", "mode": "block"}, 422, "team"),
        ({"team": "search", "agent": "Rerank-Agent", "mode": "block"}, 422, "agent"),
        ({"team": "search", "project": "a b", "mode": "block"}, 422, "project"),
        # Well formed, but no such team (or project of it) in aispend.yaml: no request
        # is attributed to it.
        ({"team": "serch", "mode": "block"}, 422, "team"),
        ({"team": "search", "project": "rankng", "mode": "block"}, 422, "project"),
        ({"team": "unattributed", "project": "ranking", "mode": "block"}, 422, "project"),
    ],
)
def test_bad_bodies_are_refused_and_nothing_is_stored(
    gw: Server, body: dict[str, object], status: int, field: str
) -> None:
    got, answer, _ = admin(gw, "PUT", "/admin/throttles/bad", body)
    assert got == status
    assert answer["error"]["field"] == field
    assert field in answer["error"]["message"]
    assert admin(gw, "GET", "/admin/throttles")[1] == {"throttles": []}


@pytest.mark.parametrize(
    ("team", "message"),  # team or team/project
    [
        (
            "serch",
            "team: 'serch' is not a team of this gateway (growth, research, search, support,"
            " unattributed): a throttle for it would match no request",
        ),
        (
            "search/rankng",
            "project: team 'search' has no project 'rankng' (other, query-rewrite, ranking):"
            " a throttle for it would match no request",
        ),
        (
            "Search",  # the validator's own words, without pydantic's "Value error, "
            "team: must be 1-63 characters of a-z, 0-9, '_', '-', '.', starting with a letter"
            " or digit",
        ),
    ],
)
def test_team_errors_say_what_is_wrong(gw: Server, team: str, message: str) -> None:
    team, _, project = team.partition("/")
    body = {"team": team, "mode": "block"} | ({"project": project} if project else {})
    got, answer, _ = admin(gw, "PUT", "/admin/throttles/x", body)
    assert (got, answer["error"]["message"]) == (422, message)


def test_unattributed_team_can_be_throttled(up: Server, tmp_path: Path) -> None:
    config = write_config(tmp_path, up.url, allow_unattributed=True)
    with gateway(tmp_path, config) as gw:
        body = {"team": "unattributed", "mode": "block", "reason": "unknown keys"}
        assert admin(gw, "PUT", "/admin/throttles/unknown-keys", body)[0] == 200
        assert call(gw, key="sk-nobody-knows") == 429


@pytest.mark.parametrize("raw", [b"{not json", b"[" * 100_000, b"\xff\xfe"])
def test_bodies_that_are_not_json_are_400_and_nothing_is_stored(gw: Server, raw: bytes) -> None:
    got, answer, _ = admin(gw, "PUT", "/admin/throttles/bad", raw=raw)
    assert got == 400
    assert answer["error"]["message"] == "body must be a JSON object"
    assert admin(gw, "GET", "/admin/throttles")[1] == {"throttles": []}


def test_admin_needs_the_token(gw: Server) -> None:
    assert admin(gw, "GET", "/admin/throttles", token=None)[0] == 401
    assert admin(gw, "GET", "/admin/throttles", token="wrong")[0] == 401
    put = admin(gw, "PUT", "/admin/throttles/x", {"team": "search", "mode": "block"}, token="no")
    assert put[0] == 401
    assert admin(gw, "GET", "/admin/throttles")[1] == {"throttles": []}
    for bad in ("bad:id", "bad%0A", "bad%0D%0Ax"):  # a newline would reach logs and 429s
        bad_id = admin(gw, "PUT", f"/admin/throttles/{bad}", {"team": "s", "mode": "block"})
        assert bad_id[0] == 400, bad
    # DELETE checks the id too: %ff decodes to a surrogate that SQLite refused with a 500.
    for bad in ("%ff", "bad%0A", "x" * 129):
        assert admin(gw, "DELETE", f"/admin/throttles/{bad}")[0] == 400, bad
    assert admin(gw, "GET", "/admin/throttles")[1] == {"throttles": []}


@pytest.mark.parametrize(
    "token", [b"\xc3\xa9\xff", b"caf\xe9", ADMIN_TOKEN.encode() + b"\xe9"], ids=repr
)
def test_admin_non_ascii_token_is_401(gw: Server, token: bytes) -> None:
    """Header bytes that are not ASCII (UTF-8, latin-1, the token plus one byte) reach
    the server as surrogates: a wrong token, not a 500."""
    request = (
        b"GET /admin/throttles HTTP/1.1\r\nHost: gateway\r\n"
        b"Authorization: Bearer " + token + b"\r\nConnection: close\r\n\r\n"
    )
    status, body = raw_http(gw, request)
    assert status == 401
    assert json.loads(body)["error"]["message"] == "missing or wrong bearer token"
    assert "Traceback" not in gw.proc.log_path.read_text()


def test_start_refused_when_the_throttle_database_is_not_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")  # never started: nothing is sent
    db = tmp_path / "throttles.sqlite3"  # the config's throttle_db
    db.write_text("not sqlite")
    argv = [sys.executable, "-m", "aispend", "gateway", "--config", str(config),
            "--listen", f"127.0.0.1:{free_port()}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=process_env(), timeout=60)
    assert done.returncode == 1
    assert f"cannot open the throttle database {db}: file is not a database" in done.stderr
    assert "Traceback" not in done.stderr
    assert db.read_text() == "not sqlite"  # left as it was


def test_a_locked_database_answers_503_and_changes_nothing(gw: Server, tmp_path: Path) -> None:
    """Another process holds the database's write lock (an operator's sqlite3 shell
    mid-transaction, a second gateway given the same file). The write waited sqlite3's
    default 5 s on the event loop, every proxied request with it, and then answered a
    bare text 500. Now it gives up after STORE_BUSY_S: a JSON 503 with Retry-After, and
    nothing changed, in memory or on disk; listing still works; proxying goes on."""
    block = {"team": "search", "mode": "block", "reason": "r"}
    assert admin(gw, "PUT", "/admin/throttles/kept", block)[0] == 200
    other = sqlite3.connect(tmp_path / "throttles.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        for method, path in [("PUT", "/admin/throttles/new"), ("DELETE", "/admin/throttles/kept")]:
            status, body, headers = admin(gw, method, path, block if method == "PUT" else None)
            assert status == 503, body
            assert body["error"]["code"] == "throttle_store_unavailable"
            assert "database is locked" in body["error"]["message"]
            assert headers["Retry-After"] == "5"
        status, body, _ = admin(gw, "GET", "/admin/throttles")
        assert status == 200 and [r["id"] for r in body["throttles"]] == ["kept"]
        assert call(gw, RESEARCH_EVALS) == 200  # another team: served
        assert call(gw) == 429  # the kept rule still acts
    finally:
        other.execute("ROLLBACK")
        other.close()
    rows = sqlite3.connect(tmp_path / "throttles.sqlite3").execute("SELECT id FROM throttles")
    assert [r[0] for r in rows] == ["kept"]
    assert admin(gw, "PUT", "/admin/throttles/new", block)[0] == 200


@pytest.mark.parametrize(
    ("field", "value"), [("priority", 1), ("expires_at", "2026-13-01T00:00:00Z")]
)
def test_start_refused_when_a_stored_rule_cannot_be_read(
    tmp_path: Path, field: str, value: object
) -> None:
    """A row with a field this version does not know (written by a newer gateway, or by
    hand), or an expiry it cannot read, stopped start-up with a bare traceback naming
    neither the file nor the rule."""
    config = write_config(tmp_path, "http://127.0.0.1:9")  # never started: nothing is sent
    db = tmp_path / "throttles.sqlite3"
    rule = {
        **dict.fromkeys(["project", "agent", "model", "alert_fingerprint", "expires_at"]),
        **dict.fromkeys(["requests_per_minute", "tokens_per_minute"]),
        "id": "r1", "team": "search", "mode": "block", "reason": "r",
        "created_at": "2026-12-07T00:00:00Z", "updated_at": "2026-12-07T00:00:00Z",
        field: value,
    }  # fmt: skip
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE throttles (id TEXT PRIMARY KEY, rule TEXT NOT NULL)")
        conn.execute("INSERT INTO throttles VALUES ('r1', ?)", (json.dumps(rule),))
    argv = [sys.executable, "-m", "aispend", "gateway", "--config", str(config),
            "--listen", f"127.0.0.1:{free_port()}"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=process_env(), timeout=60)
    assert done.returncode == 1
    assert f"cannot open the throttle database {db}: rule 'r1' cannot be read:" in done.stderr
    assert ("priority" if field == "priority" else "month must be in 1..12") in done.stderr
    assert "Traceback" not in done.stderr
