"""A simulated LLM provider: OpenAI, Azure OpenAI and Anthropic wire formats.

Answers the paths the gateway meters with realistic bodies and usage, streamed or
not, so that tests, the demo and the benchmarks run with no provider account. Token
counts are deterministic: input = 1 + characters of the prompt // 4; a quarter of
it (rounded down) is reported as cache-read; output = min(max_tokens,
output_tokens); reasoning models (o1/o3/o4/gpt-5...) report half the output as
reasoning.

Behaviour is set by flags (defaults) and can be changed per request with headers:
    X-Demo-Fail: 429 | 500 | timeout | truncate | malformed | oversized
                                   (oversized: one byte more than the gateway keeps: a
                                    chunked body, or an SSE event that never ends)
    X-Demo-Output-Tokens: N        X-Demo-Latency-Ms: N       X-Demo-Omit-Model: 1
    X-Demo-Cache-Write-Tokens: N   (Anthropic: that many uncached input tokens were
                                    written to the prompt cache)
    X-Demo-Cache-Write-1h-Tokens: N   (of those, that many with a 1-hour lifetime)
    X-Demo-Chunk-Interval-Ms: N
    X-Demo-Embedding-Dims: N       (numbers per embedding vector; one vector per input)
or at run time with `POST /_demo/config` (JSON of `Behaviour` fields).
`GET /_demo/stats` counts the requests received per path (tests use it to prove
that a throttled request never reached the provider). With `expect_key` set,
requests without that provider key get 401 as the real provider would answer.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hmac
import json
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from aispend.gateway.usage import MAX_EVENT_BYTES, MAX_RESPONSE_BYTES
from aispend.parsing import loads_json

FAIL_MODES = ("429", "500", "timeout", "truncate", "malformed", "oversized")
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")
EMBEDDING_DIMS = 8


@dataclass
class Behaviour:
    latency_ms: float = 0.0
    """Delay before the response headers."""
    chunk_interval_ms: float = 0.0
    """Delay between stream chunks."""
    output_tokens: int = 40
    stream_chunks: int = 8
    """How many content chunks a stream carries (tokens are spread over them)."""
    fail: str | None = None
    """Failure injected into every request (one of FAIL_MODES)."""
    timeout_s: float = 3600.0
    """How long a `timeout` failure stalls."""
    expect_key: str | None = None
    azure_model: str = "gpt-4o-mini-2024-07-18"
    """Model named in Azure responses (Azure reports the deployed model)."""


@dataclass(frozen=True)
class _Call:
    kind: str
    model: str
    stream: bool
    include_usage: bool
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    omit_model: bool
    chunk_interval_s: float
    chunks: int


class DemoUpstream:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.requests: Counter[str] = Counter()
        self.auth_failures = 0
        self.aborted_streams = 0
        """Streams whose client (the gateway) went away before the end."""
        self._seq = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/_demo/stats", self._stats)
        app.router.add_post("/_demo/config", self._config)
        app.router.add_post("/v1/chat/completions", self._openai("chat"))
        app.router.add_post("/v1/completions", self._openai("completions"))
        app.router.add_post("/v1/embeddings", self._openai("embeddings"))
        app.router.add_post("/v1/responses", self._openai("responses"))
        app.router.add_post("/v1/messages", self._openai("anthropic"))
        for op, kind in (("chat/completions", "chat"), ("completions", "completions"),
                         ("embeddings", "embeddings")):  # fmt: skip
            app.router.add_post(f"/openai/deployments/{{deployment}}/{op}", self._openai(kind))
        return app

    # ------------------------------------------------------------ control

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": sum(self.requests.values()),
                "by_path": dict(self.requests),
                "auth_failures": self.auth_failures,
                "aborted_streams": self.aborted_streams,
            }
        )

    async def _config(self, request: web.Request) -> web.Response:
        try:
            changes = loads_json(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object")
            fields = {f.name for f in dataclasses.fields(Behaviour)}
            unknown = set(changes) - fields
            if unknown:
                raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
            if changes.get("fail") not in (None, *FAIL_MODES):
                raise ValueError(f"fail must be one of {', '.join(FAIL_MODES)} or null")
            self.behaviour = dataclasses.replace(self.behaviour, **changes)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": {"message": str(exc)}}, status=400)
        return web.json_response(dataclasses.asdict(self.behaviour))

    # ------------------------------------------------------------ provider paths

    def _openai(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, kind)

        return handler

    async def _serve(self, request: web.Request, kind: str) -> web.StreamResponse:
        self.requests[request.path] += 1
        b = self.behaviour
        azure = request.path.startswith("/openai/")
        if b.expect_key is not None and not self._key_ok(request, kind, azure, b.expect_key):
            self.auth_failures += 1
            return _error(kind, 401, "invalid provider key", "authentication_error")
        try:
            body = loads_json(await request.read())
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return _error(kind, 400, "body must be a JSON object", "invalid_request_error")
        headers = request.headers
        fail = headers.get("X-Demo-Fail", b.fail)
        latency = float(headers.get("X-Demo-Latency-Ms", b.latency_ms)) / 1000
        if latency > 0:
            await asyncio.sleep(latency)
        if fail == "429":
            return _error(kind, 429, "rate limited by the demo upstream", "rate_limit_error",
                          {"Retry-After": "1"})  # fmt: skip
        if fail == "500":
            return _error(kind, 500, "demo upstream failure", "server_error")
        if fail == "timeout":
            await asyncio.sleep(b.timeout_s)
        call = self._call(kind, body, headers, azure)
        if fail == "malformed":
            return web.Response(
                body=b'{"id": "broken", "choices": [', content_type="application/json"
            )
        if fail == "oversized":
            return await _oversized(request, call.stream and kind != "embeddings")
        if call.stream and kind != "embeddings":
            return await self._stream(request, call, truncate=fail == "truncate")
        if kind == "embeddings":
            payload = _embeddings_body(call, body, headers)
        else:
            payload = json.dumps(self._body(call)).encode()
        if fail == "truncate":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(body=payload, content_type="application/json")

    @staticmethod
    def _key_ok(request: web.Request, kind: str, azure: bool, key: str) -> bool:
        if kind == "anthropic":
            sent = request.headers.get("x-api-key", "")
        elif azure:
            sent = request.headers.get("api-key", "")
        else:
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return hmac.compare_digest(sent.encode(), key.encode())

    def _call(self, kind: str, body: dict[str, Any], headers: Any, azure: bool) -> _Call:
        b = self.behaviour
        requested = body.get("model")
        model: str = requested if isinstance(requested, str) else "demo-model"
        if azure:  # Azure names the deployed model, not the deployment
            model = "text-embedding-3-small" if kind == "embeddings" else b.azure_model
        prompt = _prompt_text(kind, body)
        input_tokens = 1 + len(prompt) // 4
        cached = 0 if kind == "embeddings" else input_tokens // 4
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        limit = limit or body.get("max_output_tokens")
        out = int(headers.get("X-Demo-Output-Tokens", b.output_tokens))
        if isinstance(limit, int) and limit > 0:
            out = min(out, limit)
        if kind == "embeddings":
            out = 0
        reasoning = out // 2 if model.startswith(_REASONING_PREFIXES) else 0
        written = max(
            0, min(int(headers.get("X-Demo-Cache-Write-Tokens", 0)), input_tokens - cached)
        )
        written_1h = max(0, min(int(headers.get("X-Demo-Cache-Write-1h-Tokens", 0)), written))
        options = body.get("stream_options")
        return _Call(
            kind=kind,
            model=model,
            stream=body.get("stream") is True,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
            input_tokens=input_tokens,
            cached_tokens=cached,
            output_tokens=out,
            reasoning_tokens=reasoning,
            cache_write_tokens=written,
            cache_write_1h_tokens=written_1h,
            omit_model=headers.get("X-Demo-Omit-Model") == "1",
            chunk_interval_s=float(headers.get("X-Demo-Chunk-Interval-Ms", b.chunk_interval_ms))
            / 1000,
            chunks=max(1, b.stream_chunks),
        )

    def _next_id(self) -> int:
        self._seq += 1
        return self._seq

    # ------------------------------------------------------------ whole bodies

    def _body(self, call: _Call) -> dict[str, Any]:
        n = self._next_id()
        now = int(time.time())
        text = _text(call.output_tokens - call.reasoning_tokens)
        body: dict[str, Any]
        if call.kind == "anthropic":
            body = {
                "id": f"msg_demo{n:08d}",
                "type": "message",
                "role": "assistant",
                "model": call.model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": _anthropic_usage(call, call.output_tokens),
            }
        elif call.kind == "responses":
            body = _response_object(call, n, now, text, "completed")
        elif call.kind == "completions":
            body = {
                "id": f"cmpl-demo{n:08d}",
                "object": "text_completion",
                "created": now,
                "model": call.model,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                "usage": _openai_usage(call),
            }
        else:
            body = {
                "id": f"chatcmpl-demo{n:08d}",
                "object": "chat.completion",
                "created": now,
                "model": call.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": _openai_usage(call),
                "system_fingerprint": "fp_demo",
            }
        if call.omit_model:
            body.pop("model", None)
        return body

    # ------------------------------------------------------------ streams

    async def _stream(
        self, request: web.Request, call: _Call, truncate: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        events = list(self._events(call))
        if truncate:
            events = events[: max(1, len(events) // 2)]
        for i, event in enumerate(events):
            if call.chunk_interval_s and i:
                await asyncio.sleep(call.chunk_interval_s)
            try:
                await response.write(event)
            except ConnectionError:
                self.aborted_streams += 1
                return response
        if truncate:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    def _events(self, call: _Call) -> Iterator[bytes]:
        n = self._next_id()
        now = int(time.time())
        pieces = _split(call.output_tokens - call.reasoning_tokens, call.chunks)
        if call.kind == "anthropic":
            yield from _anthropic_events(call, n, pieces)
        elif call.kind == "responses":
            yield from _responses_events(call, n, now, pieces)
        else:
            yield from _openai_events(call, n, now, pieces)


# ---------------------------------------------------------------- wire formats


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _openai_usage(call: _Call) -> dict[str, Any]:
    return {
        "prompt_tokens": call.input_tokens,
        "completion_tokens": call.output_tokens,
        "total_tokens": call.input_tokens + call.output_tokens,
        "prompt_tokens_details": {"cached_tokens": call.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": call.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _anthropic_usage(call: _Call, output: int) -> dict[str, Any]:
    return {
        "input_tokens": call.input_tokens - call.cached_tokens - call.cache_write_tokens,
        "cache_creation_input_tokens": call.cache_write_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": call.cache_write_tokens - call.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": call.cache_write_1h_tokens,
        },
        "cache_read_input_tokens": call.cached_tokens,
        "output_tokens": output,
    }


def _response_object(call: _Call, n: int, now: int, text: str, status: str) -> dict[str, Any]:
    done = status == "completed"
    return {
        "id": f"resp_demo{n:08d}",
        "object": "response",
        "created_at": now,
        "status": status,
        "model": call.model,
        "output": (
            [
                {
                    "type": "message",
                    "id": f"msg_demo{n:08d}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ]
            if done
            else []
        ),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": (
            {
                "input_tokens": call.input_tokens,
                "input_tokens_details": {"cached_tokens": call.cached_tokens},
                "output_tokens": call.output_tokens,
                "output_tokens_details": {"reasoning_tokens": call.reasoning_tokens},
                "total_tokens": call.input_tokens + call.output_tokens,
            }
            if done
            else None
        ),
    }


def _openai_events(call: _Call, n: int, now: int, pieces: list[str]) -> Iterator[bytes]:
    chat = call.kind == "chat"
    base: dict[str, Any] = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-demo{n:08d}",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": now,
        "model": call.model,
    }
    if chat:
        base["system_fingerprint"] = "fp_demo"
    if call.include_usage:
        base["usage"] = None

    def choice(text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}

    if chat:
        yield _sse({**base, "choices": [choice("", None, first=True)]})
    for piece in pieces:
        yield _sse({**base, "choices": [choice(piece, None)]})
    yield _sse({**base, "choices": [choice(None, "stop")]})
    if call.include_usage:
        yield _sse({**base, "choices": [], "usage": _openai_usage(call)})
    yield _sse("[DONE]")


def _responses_events(call: _Call, n: int, now: int, pieces: list[str]) -> Iterator[bytes]:
    item_id = f"msg_demo{n:08d}"
    text = "".join(pieces)
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        data = {"type": kind, "sequence_number": seq, **fields}
        seq += 1
        return _sse(data, kind)

    def item(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": item_id, "type": "message", "status": status, "role": "assistant",
                "content": content}  # fmt: skip

    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    yield event("response.created", response=_response_object(call, n, now, "", "in_progress"))
    yield event("response.output_item.added", output_index=0, item=item("in_progress", []))
    yield event("response.content_part.added", **where, part=part)
    for piece in pieces:
        yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
    yield event("response.output_text.done", **where, text=text, logprobs=[])
    done_part = {**part, "text": text}
    yield event("response.content_part.done", **where, part=done_part)
    yield event("response.output_item.done", output_index=0, item=item("completed", [done_part]))
    yield event("response.completed", response=_response_object(call, n, now, text, "completed"))


def _anthropic_events(call: _Call, n: int, pieces: list[str]) -> Iterator[bytes]:
    message: dict[str, Any] = {
        "id": f"msg_demo{n:08d}",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": call.model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _anthropic_usage(call, 1),
    }
    yield _sse({"type": "message_start", "message": message}, "message_start")
    yield _sse({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}, "content_block_start")  # fmt: skip
    yield _sse({"type": "ping"}, "ping")
    for piece in pieces:
        delta = {"type": "text_delta", "text": piece}
        yield _sse(
            {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
        )
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    yield _sse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": call.output_tokens},
        },
        "message_delta",
    )
    yield _sse({"type": "message_stop"}, "message_stop")


# ---------------------------------------------------------------- helpers


def _error(
    kind: str, status: int, message: str, type_: str, headers: dict[str, str] | None = None
) -> web.Response:
    if kind == "anthropic":
        body: dict[str, Any] = {"type": "error", "error": {"type": type_, "message": message}}
    else:
        body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)


def _prompt_text(kind: str, body: dict[str, Any]) -> str:
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for key in ("content", "text", "input"):
                if key in value:
                    walk(value[key])

    for key in ("messages", "prompt", "input", "system", "instructions"):
        walk(body.get(key))
    return "".join(parts)


def _text(tokens: int) -> str:
    return " ".join("token" for _ in range(tokens))


def _split(tokens: int, chunks: int) -> list[str]:
    chunks = max(1, min(chunks, tokens)) if tokens else 1
    base, extra = divmod(tokens, chunks)
    out = []
    for i in range(chunks):
        count = base + (1 if i < extra else 0)
        out.append((" " if i else "") + _text(count))
    return out


def _embeddings_body(call: _Call, body: dict[str, Any], headers: Any) -> bytes:
    """One vector per input, base64 or (`encoding_format: "float"`) a JSON array of
    `X-Demo-Embedding-Dims` numbers (default EMBEDDING_DIMS), laid out as OpenAI does:
    `data`, then `model`, then `usage` last. Built as bytes: a full float batch is
    hundreds of MB."""
    dims = max(1, min(int(headers.get("X-Demo-Embedding-Dims", EMBEDDING_DIMS)), 16384))
    if body.get("encoding_format") == "float":
        vector = b"[" + b",".join([b"0.0123456789"] * dims) + b"]"
    else:
        packed = struct.pack(f"<{dims}f", *([0.125] * dims))
        vector = b'"' + base64.b64encode(packed) + b'"'
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs else 1
    if isinstance(inputs, list) and all(isinstance(i, int) for i in inputs):
        count = 1  # one input given as token ids
    items = b",".join(
        b'{"object": "embedding", "index": %d, "embedding": %s}' % (i, vector) for i in range(count)
    )
    usage = {"prompt_tokens": call.input_tokens, "total_tokens": call.input_tokens}
    model = b"" if call.omit_model else b' "model": ' + json.dumps(call.model).encode() + b","
    return b"".join(
        [
            b'{"object": "list", "data": [',
            items,
            b"],",
            model,
            b' "usage": ',
            json.dumps(usage).encode(),
            b"}",
        ]
    )


async def _oversized(request: web.Request, stream: bool) -> web.StreamResponse:
    """One byte past what the gateway keeps, without Content-Length: a JSON body, or
    one SSE event that never ends."""
    if stream:
        head, size, content_type = b"data: ", MAX_EVENT_BYTES + 1, "text/event-stream"
    else:
        head, size, content_type = b'{"pad": "', MAX_RESPONSE_BYTES + 1, "application/json"
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    block = b"x" * (1 << 20)
    left = size - len(head)
    try:
        await response.write(head)
        while left > 0:
            await response.write(block[:left])
            left -= min(left, len(block))
        await response.write_eof()
    except ConnectionError:  # the gateway stopped reading, as it should
        pass
    return response
