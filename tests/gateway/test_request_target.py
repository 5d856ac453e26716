"""What the gateway sends upstream: the client's path and query as sent, nothing else.

Simulated: the provider, by a recording HTTP server on loopback that answers every
POST with a chat completion shaped like Azure OpenAI's documented example and keeps
the request target it received. The Azure OpenAI SDK and raw sockets are the clients;
a raw socket is needed for an absolute-form request target (`POST http://host/path`),
which aiohttp's server accepts and SDKs never send.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from aispend import metrics as m
from tests.gateway.harness import (
    PROVIDER_KEY,
    SEARCH_RANKER,
    Metrics,
    Server,
    gateway,
    raw_http,
    write_config,
)

pytestmark = pytest.mark.integration

WHO = {"team": "search", "project": "", "agent": "rerank-agent"}
CHAT_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
# Azure OpenAI's documented chat completion response, trimmed.
ANSWER = {
    "id": "chatcmpl-7R1nGnsXO8n4oi9UPz2f3UHdgAYMn",
    "object": "chat.completion",
    "created": 1686676106,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello."}}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}  # fmt: skip


class _Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str | None]] = []  # (request target, api-key header)


class _Handler(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append((self.path, self.headers.get("api-key")))
        body = json.dumps(ANSWER).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Recorder, Server]]:
    tmp: Path = tmp_path_factory.mktemp("target")
    recorder = _Recorder()
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{recorder.server_address[1]}"
        with gateway(tmp, write_config(tmp, url)) as gw:
            yield recorder, gw
    finally:
        recorder.shutdown()
        recorder.server_close()
        thread.join(5)


def _post(target: bytes, body: bytes = CHAT_BODY) -> bytes:
    return (
        b"POST " + target + b" HTTP/1.1\r\nHost: gateway\r\n"
        b"Authorization: Bearer " + SEARCH_RANKER.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )


def test_azure_query_string_reaches_the_upstream_unchanged(
    servers: tuple[_Recorder, Server],
) -> None:
    recorder, gw = servers
    sdk = openai.AzureOpenAI(
        azure_endpoint=gw.url, api_key=SEARCH_RANKER, api_version="2024-10-21", max_retries=0
    )
    r = sdk.chat.completions.create(model="chat-prod", messages=[{"role": "user", "content": "hi"}])
    assert r.usage is not None and r.usage.completion_tokens == 2
    assert recorder.seen[-1] == (
        "/openai/deployments/chat-prod/chat/completions?api-version=2024-10-21",
        PROVIDER_KEY,
    )
    # Percent-encoding in the query is kept as sent, not decoded or re-encoded.
    target = b"/openai/deployments/chat-prod/chat/completions?api-version=2024-10-21&x=a%2Fb%20c"
    status, _ = raw_http(gw, _post(target))
    assert status == 200
    assert recorder.seen[-1] == (target.decode(), PROVIDER_KEY)


@pytest.mark.parametrize(
    "target",
    [
        b"http://127.0.0.1:1/v1/chat/completions",
        b"http://user@evil.example/openai/deployments/chat-prod/chat/completions"
        b"?api-version=2024-10-21",
    ],
)
def test_absolute_form_target_is_refused_with_400(
    servers: tuple[_Recorder, Server], target: bytes
) -> None:
    """The gateway answers 400 rather than forwarding by the path alone: a client that
    sends an absolute URL is not an SDK talking to the gateway as its base URL."""
    recorder, gw = servers
    seen = len(recorder.seen)
    before = Metrics.scrape(gw)
    status, body = raw_http(gw, _post(target))
    after = Metrics.scrape(gw)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_request_target"
    assert error["type"] == "invalid_request_error"
    assert len(recorder.seen) == seen  # nothing was forwarded
    provider = "openai" if b"/v1/" in target else "azure"
    counted = {**WHO, "provider": provider, "model": "other", "status": "400"}
    assert (
        after.value(m.LLM_REQUESTS.name, **counted) - before.value(m.LLM_REQUESTS.name, **counted)
        == 1
    )
    assert "Traceback" not in gw.proc.log_path.read_text()
