"""Upstream failures through the gateway: documented status, counted once, never guessed.

Simulated: the provider, by the demo upstream's failure injection (X-Demo-Fail: 429,
500, timeout, truncate, malformed) over a real loopback socket, and a dead port for
connection errors. Clients are the official SDKs (max_retries=0 so each call is one
request) and httpx for the client that hangs up mid-stream.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest
import requests

from aispend import metrics as m
from aispend.procs import wait_until
from tests.conftest import free_port
from tests.gateway.harness import (
    SEARCH_RANKER,
    Delta,
    Metrics,
    Server,
    gateway,
    upstream,
    write_config,
)

pytestmark = pytest.mark.integration

MESSAGES = [{"role": "user", "content": "hello"}]
WHO = {"team": "search", "project": "", "agent": "rerank-agent"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp = tmp_path_factory.mktemp("failures")
    with upstream(tmp) as up, gateway(tmp, write_config(tmp, up.url, read_timeout_s=1)) as gw:
        yield up, gw


def _client(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=SEARCH_RANKER, max_retries=0)


def _fail(gw: Server, mode: str, stream: bool = False) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as info:
        _client(gw).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream,
            extra_headers={"X-Demo-Fail": mode},
        )  # fmt: skip
    return info.value


def _assert_counted_once(d: Delta, status: str, unknown: str | None) -> None:
    assert d(m.LLM_REQUESTS.name, **WHO) == 1
    assert d(m.LLM_REQUESTS.name, **WHO, status=status) == 1
    assert d(m.LLM_TOKENS.name) == 0
    assert d(m.LLM_COST.name) == 0
    if unknown is None:
        assert d(m.LLM_USAGE_UNKNOWN.name) == 0
    else:
        assert d(m.LLM_USAGE_UNKNOWN.name) == 1
        assert d(m.LLM_USAGE_UNKNOWN.name, team="search", provider="openai", reason=unknown) == 1


@pytest.mark.parametrize("mode", ["429", "500"])
def test_upstream_errors_pass_through(servers: tuple[Server, Server], mode: str) -> None:
    _, gw = servers
    d = Delta(gw)
    error = _fail(gw, mode)
    d.done()
    assert error.status_code == int(mode)
    assert error.response.json()["error"]["message"] in (
        "rate limited by the demo upstream",
        "demo upstream failure",
    )
    if mode == "429":
        assert error.response.headers["Retry-After"] == "1"
    _assert_counted_once(d, mode, unknown=None)


def test_anthropic_error_passes_through(servers: tuple[Server, Server]) -> None:
    _, gw = servers
    client = anthropic.Anthropic(base_url=gw.url, api_key=SEARCH_RANKER, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES,
            extra_headers={"X-Demo-Fail": "500"},
        )  # fmt: skip
    assert info.value.status_code == 500
    assert info.value.body == {
        "type": "error",
        "error": {"type": "server_error", "message": "demo upstream failure"},
    }


@pytest.mark.parametrize(
    ("mode", "status", "code", "error_reason", "unknown"),
    [
        ("timeout", 504, "upstream_timeout", "timeout", "timeout"),
        ("truncate", 502, "upstream_truncated", "truncated", "truncated"),
        ("malformed", 502, "bad_upstream_response", "malformed_response", "malformed"),
        # 64 MiB + 1 byte, chunked (no Content-Length): the gateway stops reading at the cap.
        ("oversized", 502, "upstream_too_large", "too_large", "too_large"),
    ],
)
def test_upstream_failure_gives_its_status_and_is_counted_once(
    servers: tuple[Server, Server],
    mode: str,
    status: int,
    code: str,
    error_reason: str,
    unknown: str,
) -> None:
    _, gw = servers
    d = Delta(gw)
    error = _fail(gw, mode)
    d.done()
    assert error.status_code == status
    assert error.response.json()["error"]["code"] == code
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, provider="openai", reason=error_reason) == 1
    _assert_counted_once(d, str(status), unknown=unknown)


def test_a_float_embeddings_batch_larger_than_a_request_is_passed_and_metered(
    servers: tuple[Server, Server],
) -> None:
    """2048 inputs of 3072 float numbers: about 78 MiB of JSON for a request of a few
    KB. The provider charged it; the gateway used to answer 502 at 64 MiB, leaving it
    unmetered (and SDKs retry a 502, so it was charged again)."""
    _, gw = servers
    d = Delta(gw)
    answer = requests.post(
        gw.url + "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": ["hello"] * 2048,
              "encoding_format": "float"},
        headers={"Authorization": f"Bearer {SEARCH_RANKER}", "X-Demo-Embedding-Dims": "3072"},
        timeout=120,
    )  # fmt: skip
    d.done()
    assert answer.status_code == 200
    assert len(answer.content) > 64 * 1024 * 1024
    body = answer.content
    assert body.startswith(b'{"object": "list", "data": [{"object": "embedding", "index": 0,')
    assert body.count(b'"object": "embedding"') == 2048
    usage = json.loads(body[body.rindex(b'{"prompt_tokens"') : -1])
    assert usage["prompt_tokens"] > 2048
    assert (
        d(m.LLM_TOKENS.name, **WHO, model="text-embedding-3-small", token_type="input")
        == (usage["prompt_tokens"])
    )
    assert d(m.LLM_COST.name, **WHO) > 0
    assert d(m.LLM_USAGE_UNKNOWN.name) == 0


def test_endless_stream_event_breaks_the_client_and_counts_unknown(
    servers: tuple[Server, Server],
) -> None:
    # One SSE event of 16 MiB + 1 byte that never ends: the gateway drops the stream.
    _, gw = servers
    d = Delta(gw)
    with pytest.raises((httpx2.HTTPError, openai.APIError)):
        for _ in _client(gw).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True,
            extra_headers={"X-Demo-Fail": "oversized"},
        ):  # fmt: skip
            pass
    d.done()
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, provider="openai", reason="too_large") == 1
    _assert_counted_once(d, "200", unknown="too_large")


def test_truncated_stream_breaks_the_client_and_counts_unknown(
    servers: tuple[Server, Server],
) -> None:
    _, gw = servers
    d = Delta(gw)
    received = []
    with pytest.raises((httpx2.HTTPError, openai.APIError)):
        for chunk in _client(gw).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True,
            extra_headers={"X-Demo-Fail": "truncate"},
        ):  # fmt: skip
            received.append(chunk)
    d.done()
    assert received  # some chunks arrived before the break
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, provider="openai", reason="truncated") == 1
    _assert_counted_once(d, "200", unknown="truncated")


def test_client_disconnect_closes_upstream(servers: tuple[Server, Server]) -> None:
    up, gw = servers
    aborted = up.get_json("/_demo/stats")["aborted_streams"]
    d = Delta(gw)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    headers = {"Authorization": f"Bearer {SEARCH_RANKER}", "X-Demo-Chunk-Interval-Ms": "100"}
    conn = _connect(gw)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        r = conn.getresponse()
        assert r.status == 200
        assert r.read1(65536).startswith(b"data: ")  # one chunk, then hang up
    finally:
        conn.close()
    wait_until(
        lambda: up.get_json("/_demo/stats")["aborted_streams"] == aborted + 1,
        10,
        what="the upstream stream to be closed",
    )
    wait_until(
        lambda: (
            Metrics.scrape(gw).total(m.LLM_USAGE_UNKNOWN.name, reason="client_disconnected")
            == d.before.total(m.LLM_USAGE_UNKNOWN.name, reason="client_disconnected") + 1
        ),
        10,
        what="the gateway to record the disconnect",
    )
    d.done()
    _assert_counted_once(d, "200", unknown="client_disconnected")


def test_connection_refused_gives_502(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with gateway(tmp_path, write_config(tmp_path, dead)) as gw:
        d = Delta(gw)
        error = _fail(gw, "none")
        d.done()
    assert error.status_code == 502
    assert error.response.json()["error"]["code"] == "upstream_unreachable"
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, provider="openai", reason="connect") == 1
    # Never reached the provider: nothing can have been billed, so usage is not unknown.
    _assert_counted_once(d, "502", unknown=None)


def test_unmetered_path_and_bad_body(servers: tuple[Server, Server]) -> None:
    _, gw = servers
    headers = {"Authorization": f"Bearer {SEARCH_RANKER}"}
    for method, path, body, status, code in [
        ("GET", "/v1/models", None, 404, "unknown_path"),
        ("POST", "/v1/chat/completions", "{not json", 400, "invalid_json"),
        # Deeper than json.loads can recurse: bad input, not a 500.
        ("POST", "/v1/chat/completions", "[" * 100_000, 400, "invalid_json"),
        ("GET", "/v1/chat/completions", None, 405, "method_not_allowed"),
    ]:
        conn = _connect(gw)
        try:
            conn.request(method, path, body, headers)
            r = conn.getresponse()
            assert r.status == status
            assert json.loads(r.read())["error"]["code"] == code
        finally:
            conn.close()


def _connect(gw: Server) -> http.client.HTTPConnection:
    host, port = gw.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)
