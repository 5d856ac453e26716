"""How a stream ends decides what is billed: only the provider's closing usage count is.

Simulated: the provider. A scripted aiohttp upstream (real loopback socket) sends the
documented SSE events of Anthropic messages, the OpenAI Responses API and chat
completions (OpenAI's in-band error chunk, Azure's content-filter chunk), with pauses
where a test needs the client to act mid-stream; the demo upstream cannot send these
endings. The gateway is the real process; clients are raw HTTP connections so that a
test can hang up at an exact point.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aispend import metrics as m
from aispend.procs import wait_until
from tests.actuator.fakes import ThreadedServer
from tests.gateway.harness import SEARCH_RANKER, Delta, Metrics, Server, gateway, write_config

pytestmark = pytest.mark.integration

WHO = {"team": "search", "agent": "rerank-agent"}
MODEL = "claude-haiku-4-5"


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {"model": MODEL, "usage": {"input_tokens": 100, "output_tokens": 1}},
    },
)
TEXT = sse(
    "content_block_delta",
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "word " * 20},
    },
)
END = sse(
    "message_delta",
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"output_tokens": 500},
    },
) + sse("message_stop", {"type": "message_stop"})
OVERLOADED = sse(
    "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
)
FAILED = sse(
    "response.failed",
    {
        "type": "response.failed",
        "response": {
            "model": "gpt-4o-mini",
            "status": "failed",
            "error": {"code": "server_error", "message": "failed"},
            "usage": {"input_tokens": 40, "output_tokens": 12},
        },
    },
)

# Azure OpenAI's first chunk: prompt filter results, with an empty model and no choices.
AZURE_FILTER = (
    b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
    b'"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}\n\n'
)
AZURE_TEXT = (
    b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"id":"c1",'
    b'"model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"}\n\n'
)
USAGE_10_5 = b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}\n\n'
OPENAI_TEXT = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"model":"gpt-4o-mini"}\n\n'
OPENAI_FINISH = (
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"model":"gpt-4o-mini"}\n\n'
)
OPENAI_ERROR = (
    b'data: {"error":{"message":"The server had an error while processing your request.",'
    b'"type":"server_error","param":null,"code":null}}\n\n'
)
# OpenAI's usage chunk of a request served at the priority tier (`service_tier` is in
# every chunk of the stream).
PRIORITY_USAGE = (
    b'data: {"choices":[],"model":"gpt-4o-mini","service_tier":"priority",'
    b'"usage":{"prompt_tokens":100000,"completion_tokens":10000}}\n\n'
)
# A Responses stream framed with CRLF (as sse-starlette frames), cut where the last
# event's closing blank line comes in a read of its own.
COMPLETED_1000_500 = {
    "type": "response.completed",
    "response": {
        "model": "gpt-4o-mini",
        "status": "completed",
        "usage": {"input_tokens": 1000, "output_tokens": 500},
    },
}
RESPONSES_CRLF = (
    b"event: response.output_text.delta\r\n"
    b'data: {"type":"response.output_text.delta","delta":"hi"}\r\n\r\n'
    b"event: response.completed\r\ndata: " + json.dumps(COMPLETED_1000_500).encode() + b"\r\n"
)
# A closing event past MAX_EVENT_BYTES (16 MiB): the whole response, with one generated
# image as base64 (17 MiB here; the image_generation tool's images are megabytes each).
LARGE_COMPLETED = sse(
    "response.completed",
    {
        "type": "response.completed",
        "response": {
            "model": "gpt-4o-mini",
            "status": "completed",
            "output": [{"type": "image_generation_call", "result": "A" * (17 << 20)}],
            "usage": {"input_tokens": 1000, "output_tokens": 500},
        },
    },
)
RECEIVED: list[dict[str, Any]] = []
"""Request bodies the upstream got (the `record` script)."""
LEFT_WHILE_THINKING: list[str] = []
"""One entry per `thinking`, `thinking-json` or `finish-then-silence` request whose
connection closed during its silence."""


async def scripted(request: web.Request) -> web.StreamResponse:
    """The upstream answers each request with the events of its `X-Script` header."""
    script = request.headers["X-Script"]
    if script == "record":  # usage only when asked for, as OpenAI and Azure do
        RECEIVED.append(await request.json())
        options = RECEIVED[-1].get("stream_options") or {}
        script = "usage" if options.get("include_usage") else "no-usage"
    if script == "slow-headers":  # the provider works 1 s before its first byte
        await asyncio.sleep(1)
    if script == "thinking-json":  # not streamed: up to 30 s of work before the answer
        for _ in range(600):
            await asyncio.sleep(0.05)
            if request.transport is None or request.transport.is_closing():
                LEFT_WHILE_THINKING.append(script)
                return web.Response(status=499)  # never sent: the connection is gone
        return web.json_response(
            {"model": "o3", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}
        )
    if script == "new-snapshot":  # a dated model the price table does not know yet
        return web.json_response(
            {
                "model": "gpt-4o-mini-2099-12-31",
                "choices": [],
                "usage": {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000},
            }
        )
    content_type = "Text/Event-Stream" if script == "mixed-case" else "text/event-stream"
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    if script in ("thinking", "finish-then-silence"):  # then up to 30 s of silence
        await response.write(OPENAI_TEXT + (OPENAI_FINISH if script != "thinking" else b""))
        for _ in range(600):
            await asyncio.sleep(0.05)
            if request.transport is None or request.transport.is_closing():
                LEFT_WHILE_THINKING.append(script)
                return response
        await response.write(USAGE_10_5 + b"data: [DONE]\n\n")
        return response
    parts: list[bytes | float] = {
        "anthropic-long": [START, TEXT, 0.3, *[TEXT] * 20, 1.0, END],
        "anthropic-error": [START, TEXT, OVERLOADED],
        "responses-failed": [FAILED],
        "responses-crlf": [RESPONSES_CRLF, 0.2, b"\r\n"],
        "responses-large": [LARGE_COMPLETED],
        "slow-headers": [
            b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}\n\n',
            b"data: [DONE]\n\n",
        ],
        "mixed-case": [
            b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}\n\n',
            b"data: [DONE]\n\n",
        ],
        "azure-filter": [AZURE_FILTER, AZURE_TEXT, USAGE_10_5, b"data: [DONE]\n\n"],
        "openai-error": [OPENAI_TEXT, OPENAI_ERROR],
        "usage": [OPENAI_TEXT, USAGE_10_5, b"data: [DONE]\n\n"],
        # The usage chunk a moment after the last choice's finish_reason.
        "finish-then-usage": [OPENAI_TEXT, OPENAI_FINISH, 1.0, USAGE_10_5, b"data: [DONE]\n\n"],
        "priority": [OPENAI_TEXT, PRIORITY_USAGE, b"data: [DONE]\n\n"],
        "no-usage": [OPENAI_TEXT, b"data: [DONE]\n\n"],
    }[script]
    for part in parts:
        if isinstance(part, float):
            await asyncio.sleep(part)
        else:
            await response.write(part)
    await response.write_eof()
    return response


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("stream-endings")
    app = web.Application()
    app.router.add_post("/{tail:.*}", scripted)
    upstream = ThreadedServer(app).start()
    try:
        with gateway(tmp, write_config(tmp, upstream.url)) as gw:
            yield gw
    finally:
        upstream.stop()


@pytest.fixture()
def short_read_timeout(tmp_path: Path) -> Iterator[Server]:
    """A gateway that gives up on a silent upstream after 2 s (read_timeout_s)."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", scripted)
    upstream = ThreadedServer(app).start()
    try:
        with gateway(tmp_path, write_config(tmp_path, upstream.url, read_timeout_s=2)) as gw:
            yield gw
    finally:
        upstream.stop()


def _post(gw: Server, path: str, script: str, body: dict[str, Any]) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(gw.url.removeprefix("http://"), timeout=10)
    headers = {
        "Authorization": f"Bearer {SEARCH_RANKER}",
        "x-api-key": SEARCH_RANKER,
        "X-Script": script,
    }
    conn.request("POST", path, json.dumps(body), headers)
    return conn


def _messages(gw: Server, script: str) -> http.client.HTTPConnection:
    body = {
        "model": MODEL,
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return _post(gw, "/v1/messages", script, body)


def _answer(conn: http.client.HTTPConnection) -> tuple[int, bytes]:
    """Status and whole body (IncompleteRead if the gateway cut the stream); closes `conn`."""
    try:
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _settle(d: Delta) -> Delta:
    """`d` done once the gateway has recorded one more request."""
    wanted = d.before.total(m.LLM_REQUESTS.name, **WHO) + 1
    wait_until(
        lambda: Metrics.scrape(d.gw).total(m.LLM_REQUESTS.name, **WHO) == wanted,
        15,
        what="the gateway to record the request",
    )
    return d.done()


def test_complete_anthropic_stream_bills_the_closing_count(servers: Server) -> None:
    d = Delta(servers)
    status, body = _answer(_messages(servers, "anthropic-long"))
    assert status == 200 and b"message_stop" in body
    _settle(d)
    assert d(m.LLM_TOKENS.name, token_type="input", **WHO) == 100
    assert d(m.LLM_TOKENS.name, token_type="output", **WHO) == 500
    assert d(m.LLM_USAGE_UNKNOWN.name) == 0


def test_anthropic_stream_left_mid_answer_is_usage_unknown_not_one_token(servers: Server) -> None:
    """message_start says output_tokens 1; the user stops after hundreds. Billing that 1
    would under-count silently: the request is usage unknown, like an OpenAI stream."""
    d = Delta(servers)
    conn = _messages(servers, "anthropic-long")
    try:
        response = conn.getresponse()
        assert response.status == 200
        assert b"message_start" in response.read1(65536)
    finally:
        conn.close()
    _settle(d)
    assert d(m.LLM_TOKENS.name) == 0
    assert d(m.LLM_COST.name) == 0
    unknown = d(m.LLM_USAGE_UNKNOWN.name, provider="anthropic", reason="client_disconnected")
    assert unknown == 1


def test_anthropic_error_event_ends_the_stream_with_usage_unknown(servers: Server) -> None:
    d = Delta(servers)
    status, body = _answer(_messages(servers, "anthropic-error"))  # a clean end
    assert status == 200 and b"overloaded_error" in body
    _settle(d)
    assert d(m.LLM_TOKENS.name) == 0
    assert d(m.LLM_USAGE_UNKNOWN.name, provider="anthropic", reason="upstream_error") == 1
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, provider="anthropic", reason="stream_error") == 1


def test_responses_stream_ending_in_response_failed_is_relayed_and_billed(servers: Server) -> None:
    d = Delta(servers)
    body = {"model": "gpt-4o-mini", "input": "hi", "stream": True}
    status, answer = _answer(_post(servers, "/v1/responses", "responses-failed", body))
    assert status == 200 and b"response.failed" in answer
    _settle(d)
    assert d(m.LLM_TOKENS.name, token_type="input", **WHO) == 40
    assert d(m.LLM_TOKENS.name, token_type="output", **WHO) == 12
    assert d(m.LLM_USAGE_UNKNOWN.name) == 0
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, reason="truncated") == 0
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, provider="openai", reason="stream_error") == 1


def test_crlf_responses_stream_whose_last_blank_line_comes_alone_is_billed(
    servers: Server,
) -> None:
    """The gateway held back `response.completed` when its closing CRLF came in a later
    read: the stream ended "truncated", 0 tokens billed, the client's connection cut."""
    d = Delta(servers)
    body = {"model": "gpt-4o-mini", "input": "hi", "stream": True}
    status, answer = _answer(_post(servers, "/v1/responses", "responses-crlf", body))
    assert status == 200 and answer == RESPONSES_CRLF + b"\r\n"  # byte for byte, no cut
    _settle(d)
    assert d(m.LLM_TOKENS.name, token_type="input", **WHO) == 1000
    assert d(m.LLM_TOKENS.name, token_type="output", **WHO) == 500
    assert d(m.LLM_USAGE_UNKNOWN.name) == 0
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name) == 0


def test_a_responses_stream_whose_closing_event_passes_16_mib_is_relayed_and_billed(
    servers: Server,
) -> None:
    """A `response.completed` with a generated image past the 16 MiB event cap: the
    gateway cut the client's stream and recorded usage unknown ("too_large"), although
    the provider bills it. It may be as large as a non-streamed body."""
    d = Delta(servers)
    body = {"model": "gpt-4o-mini", "input": "draw", "stream": True}
    status, answer = _answer(_post(servers, "/v1/responses", "responses-large", body))
    assert status == 200 and answer == LARGE_COMPLETED
    _settle(d)
    assert d(m.LLM_TOKENS.name, token_type="input", **WHO) == 1000
    assert d(m.LLM_TOKENS.name, token_type="output", **WHO) == 500
    assert d(m.LLM_USAGE_UNKNOWN.name) == 0
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name) == 0


def test_a_client_that_leaves_a_silent_stream_is_a_disconnect(short_read_timeout: Server) -> None:
    """The user presses Stop while a reasoning model thinks: the gateway closes the
    upstream (the provider stops generating) and records a disconnect. It noticed only
    at the next upstream byte, and when the silence outlasted read_timeout_s it blamed
    the provider: upstream_errors{reason="timeout"}, usage unknown "timeout"."""
    gw = short_read_timeout
    d = Delta(gw)
    LEFT_WHILE_THINKING.clear()
    body = {"model": "o3", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    conn = _post(gw, "/v1/chat/completions", "thinking", body)
    try:
        response = conn.getresponse()
        assert response.status == 200 and response.read1(65536) == OPENAI_TEXT
    finally:
        conn.close()
    wait_until(lambda: bool(LEFT_WHILE_THINKING), 15, what="the upstream to see the close")
    _settle(d)
    assert d(m.LLM_USAGE_UNKNOWN.name, provider="openai", reason="client_disconnected") == 1
    assert d(m.LLM_USAGE_UNKNOWN.name, reason="timeout") == 0
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name) == 0


def test_a_client_that_leaves_before_a_non_streamed_answer_is_a_disconnect(
    servers: Server,
) -> None:
    """An SDK's request timeout (then its retry): the gateway kept the upstream call
    until the provider answered, up to read_timeout_s, and billed it as a 200, so every
    retry left one more generation running. It closes the upstream (the provider stops
    generating) and records a disconnect."""
    d = Delta(servers)
    LEFT_WHILE_THINKING.clear()
    body = {"model": "o3", "messages": [{"role": "user", "content": "hi"}]}
    conn = _post(servers, "/v1/chat/completions", "thinking-json", body)
    time.sleep(0.5)  # the upstream is working
    conn.close()
    wait_until(lambda: bool(LEFT_WHILE_THINKING), 15, what="the upstream to see the close")
    _settle(d)
    assert d(m.LLM_USAGE_UNKNOWN.name, provider="openai", reason="client_disconnected") == 1
    assert d(m.LLM_REQUESTS.name, status="499", **WHO) == 1
    assert d(m.LLM_TOKENS.name, **WHO) == 0
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name) == 0


def test_a_response_model_without_a_price_is_priced_as_the_model_asked_for(
    servers: Server,
) -> None:
    """The provider answers with a snapshot genai-prices does not know yet: the request
    was recorded at cost 0 under model "other", hidden from budgets and cost throttles.
    It is priced as the requested gpt-4o-mini (0.15 + 0.60 per million tokens)."""
    d = Delta(servers)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    status, _ = _answer(_post(servers, "/v1/chat/completions", "new-snapshot", body))
    assert status == 200
    _settle(d)
    assert d(m.LLM_COST.name, model="gpt-4o-mini", **WHO) == pytest.approx(0.75)
    assert d(m.LLM_TOKENS.name, model="gpt-4o-mini", token_type="output", **WHO) == 1_000_000
    assert d(m.LLM_UNPRICED_REQUESTS.name) == 0


def _read_to_finish_reason(conn: http.client.HTTPConnection) -> None:
    """Read as an SDK loop that breaks at finish_reason does, then hang up."""
    try:
        response = conn.getresponse()
        assert response.status == 200
        seen = b""
        while b'"finish_reason":"stop"' not in seen:
            chunk = response.read1(65536)
            assert chunk, seen
            seen += chunk
    finally:
        conn.close()


def test_a_client_that_leaves_at_finish_reason_is_billed(servers: Server) -> None:
    """`for chunk in stream: ... if chunk.choices[0].finish_reason: break` hangs up
    before the usage chunk the gateway asked for: the request was recorded as a
    disconnect with no cost, although the provider bills the whole generation. The
    gateway reads on for the count."""
    d = Delta(servers)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    _read_to_finish_reason(_post(servers, "/v1/chat/completions", "finish-then-usage", body))
    _settle(d)
    assert d(m.LLM_TOKENS.name, token_type="input", **WHO) == 10
    assert d(m.LLM_TOKENS.name, token_type="output", **WHO) == 5
    assert d(m.LLM_USAGE_UNKNOWN.name) == 0
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name) == 0


def test_a_client_that_leaves_at_the_first_of_several_choices_is_a_disconnect(
    servers: Server,
) -> None:
    """With n=2 the first finish_reason does not end the generation: reading on would
    let the other choice generate (and be billed) for up to CLOSING_USAGE_WAIT_S after
    the client left. The upstream is closed at once, as for any client that leaves."""
    d = Delta(servers)
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "n": 2,
        "messages": [{"role": "user", "content": "hi"}],
    }
    _read_to_finish_reason(_post(servers, "/v1/chat/completions", "finish-then-usage", body))
    _settle(d)
    assert d(m.LLM_USAGE_UNKNOWN.name, provider="openai", reason="client_disconnected") == 1
    assert d(m.LLM_TOKENS.name, **WHO) == 0


def test_a_stream_silent_after_a_client_left_at_finish_reason_is_a_disconnect(
    short_read_timeout: Server,
) -> None:
    """Reading on for the usage count ends when the upstream sends nothing more
    (read_timeout_s here, CLOSING_USAGE_WAIT_S at most): the upstream connection is
    closed and the request is the disconnect it was before, not an upstream timeout."""
    gw = short_read_timeout
    d = Delta(gw)
    LEFT_WHILE_THINKING.clear()
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    _read_to_finish_reason(_post(gw, "/v1/chat/completions", "finish-then-silence", body))
    wait_until(lambda: bool(LEFT_WHILE_THINKING), 15, what="the upstream to see the close")
    _settle(d)
    assert d(m.LLM_USAGE_UNKNOWN.name, provider="openai", reason="client_disconnected") == 1
    assert d(m.LLM_TOKENS.name, **WHO) == 0
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name) == 0


def test_client_gone_before_the_stream_started_is_usage_unknown(servers: Server) -> None:
    """The provider ran the request (and may bill it) though nobody read the answer."""
    d = Delta(servers)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    conn = _post(servers, "/v1/chat/completions", "slow-headers", body)
    conn.close()  # before the provider's first byte
    _settle(d)
    assert d(m.LLM_USAGE_UNKNOWN.name, provider="openai", reason="client_disconnected") == 1


def test_stream_content_type_is_matched_without_case(servers: Server) -> None:
    d = Delta(servers)
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    status, answer = _answer(_post(servers, "/v1/chat/completions", "mixed-case", body))
    assert status == 200, answer
    _settle(d)
    assert d(m.LLM_TOKENS.name, token_type="input", **WHO) == 10
    assert d(m.LLM_TOKENS.name, token_type="output", **WHO) == 5


def _chat_stream(gw: Server, path: str, script: str) -> tuple[int, bytes]:
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    return _answer(_post(gw, path, script, body))


def test_azure_stream_is_priced_at_the_model_azure_served(servers: Server) -> None:
    """Azure's first chunk says model "": the served model comes in the next chunk. The
    deployment is not in azure_deployments, so only the served model can price it."""
    d = Delta(servers)
    path = "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
    status, answer = _chat_stream(servers, path, "azure-filter")
    assert status == 200, answer
    _settle(d)
    assert d(m.LLM_TOKENS.name, provider="azure", model="gpt-4o", token_type="input") == 10
    assert d(m.LLM_TOKENS.name, provider="azure", model="gpt-4o", token_type="output") == 5
    assert d(m.LLM_COST.name, provider="azure", model="gpt-4o") > 0
    assert d(m.LLM_UNPRICED_REQUESTS.name) == 0


def test_openai_error_chunk_ends_the_stream_as_a_stream_error(servers: Server) -> None:
    """OpenAI reports a failure mid-stream as `data: {"error": ...}` and no [DONE]: the
    client gets the error chunk and a clean end, not a cut connection."""
    d = Delta(servers)
    status, answer = _chat_stream(servers, "/v1/chat/completions", "openai-error")  # a clean end
    assert status == 200 and b"server_error" in answer
    _settle(d)
    assert d(m.LLM_TOKENS.name) == 0
    assert d(m.LLM_USAGE_UNKNOWN.name, provider="openai", reason="upstream_error") == 1
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, provider="openai", reason="stream_error") == 1
    assert d(m.GATEWAY_UPSTREAM_ERRORS.name, reason="truncated") == 0


@pytest.mark.parametrize(
    ("path", "asked"),
    [
        ("/v1/chat/completions", True),
        ("/openai/deployments/chat-prod/chat/completions?api-version=2024-10-21", True),
        ("/openai/deployments/chat-prod/chat/completions?api-version=2024-08-01-preview", True),
        ("/openai/deployments/chat-prod/chat/completions?api-version=2024-06-01", False),
        ("/openai/deployments/chat-prod/chat/completions?api-version=2024-02-15-preview", False),
        ("/openai/deployments/chat-prod/chat/completions", False),
    ],
)
def test_usage_is_asked_for_only_where_the_api_version_takes_it(
    servers: Server, path: str, asked: bool
) -> None:
    """Azure answers 400 to `stream_options` before api-version 2024-08-01(-preview): such
    a stream goes upstream as the client sent it and is counted as usage unknown."""
    d = Delta(servers)
    RECEIVED.clear()
    status, answer = _chat_stream(servers, path, "record")
    assert status == 200, answer
    assert b'"usage"' not in answer  # the client did not ask for it
    _settle(d)
    (received,) = RECEIVED
    assert ("stream_options" in received) is asked
    assert d(m.LLM_TOKENS.name, token_type="input", **WHO) == (10 if asked else 0)
    assert d(m.LLM_USAGE_UNKNOWN.name, reason="missing_usage") == (0 if asked else 1)


def test_a_stream_served_at_the_priority_tier_is_priced_at_it(servers: Server) -> None:
    """OpenAI's `service_tier: priority` costs more than the default tier (genai-prices
    has it as a price variant); the gateway priced every request at the default."""
    import genai_prices

    from aispend.pricing import TokenUsage, genai_usage

    d = Delta(servers)
    status, answer = _chat_stream(servers, "/v1/chat/completions", "priority")
    assert status == 200, answer
    _settle(d)
    usage = genai_usage(TokenUsage(input=100_000, output=10_000))
    priority, default = (
        float(
            genai_prices.calc_price(
                usage, "gpt-4o-mini", provider_id="openai", price_context={"service_tier": tier}
            ).total_price
        )
        for tier in ("priority", "default")
    )
    assert priority > default
    assert d(m.LLM_COST.name, provider="openai", model="gpt-4o-mini") == pytest.approx(priority)
