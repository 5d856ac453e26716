"""Token usage from provider responses: whole JSON bodies and SSE streams.

Wire formats (as documented by the providers):
- OpenAI chat / completions / embeddings (and Azure OpenAI): `usage.prompt_tokens`
  (cache reads included, `prompt_tokens_details.cached_tokens`; cache writes, where the
  model prices them, `prompt_tokens_details.cache_write_tokens`, as genai-prices reads),
  `usage.completion_tokens` (reasoning included,
  `completion_tokens_details.reasoning_tokens`). Streams carry it in a final chunk
  with `"choices": []` when `stream_options.include_usage` is set.
- OpenAI responses: `usage.input_tokens` (`input_tokens_details.cached_tokens` and
  `.cache_write_tokens`),
  `usage.output_tokens` (`output_tokens_details.reasoning_tokens`); streams carry the
  whole response in the `response.completed` event.
- Anthropic messages: `usage.input_tokens` (uncached), `cache_read_input_tokens`,
  `cache_creation_input_tokens` (counted as input tokens, priced as cache writes; the
  1-hour part, `cache_creation.ephemeral_1h_input_tokens`, at the 1h write price),
  `output_tokens`; streams carry it in `message_start` and (cumulative output,
  sometimes input too) `message_delta`.

In a stream, usage is final only once the provider has sent its closing count: the
OpenAI usage chunk, the Responses API's closing `response.*` event, Anthropic's
`message_delta` (or `message_stop`). Anthropic's `message_start` usage is provisional
(`output_tokens` is 1 or so): a stream cut before its `message_delta` has unknown usage.
A provider `error` event ends the stream (`failed`).

Usage parsers never raise on odd input: a missing or malformed usage gives None
and the caller counts it as unknown rather than guessing. A count above MAX_TOKENS is
malformed too: no model reads or writes that many tokens in one request, and billing
it would put a cost in the counters that no later sample can take back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aispend.parsing import loads_json
from aispend.pricing import TokenUsage

MAX_TOKENS = 1_000_000_000
"""The most tokens of one kind one request may report: 100x the largest context
windows (about 10M tokens)."""
MAX_EVENT_BYTES = 16 * 1024 * 1024
"""The largest SSE event kept while it is incomplete, but for the Responses API's closing
event (MAX_RESPONSE_BYTES, when its `event:` line names it); the others are small
deltas."""
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
"""The largest whole response read: a non-streamed body, or a Responses API stream's
closing `response.*` event, which carries the whole response (base64 images from the
image_generation tool are megabytes each). A small request can get a large answer: a
full batch of float embeddings (2048 inputs of text-embedding-3-large, 3072 numbers
each) is about 180 MiB of JSON as OpenAI formats it; the provider charges it either way."""
WHOLE_PARSE_MAX_BYTES = 4 * 1024 * 1024
"""Larger bodies are read from their tail when they can be (`parse_body`)."""
_TAIL_BYTES = 64 * 1024
_OBJECT_START = re.compile(rb"\s*\{")
_USAGE_KEY = re.compile(rb'"usage"\s*:\s*')
_MODEL_BEFORE_USAGE = re.compile(rb'"model"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*$')


class EventTooLarge(ValueError):
    """An upstream SSE event grew past MAX_EVENT_BYTES without ending."""


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise ValueError(f"token count must be an integer from 0 to {MAX_TOKENS}")
    return value


def _opt_int(obj: Any, key: str) -> int:
    if not isinstance(obj, dict):
        return 0
    value = obj.get(key)
    return 0 if value is None else _int(value)


def openai_usage(usage: Any) -> TokenUsage | None:
    """Chat / completions / embeddings usage object -> TokenUsage."""
    if not isinstance(usage, dict):
        return None
    try:
        if "input_tokens" in usage and "prompt_tokens" not in usage:
            return responses_usage(usage)
        prompt = _int(usage["prompt_tokens"])
        completion = _opt_int(usage, "completion_tokens")
        details = usage.get("prompt_tokens_details")
        cached = min(_opt_int(details, "cached_tokens"), prompt)
        written = min(_opt_int(details, "cache_write_tokens"), prompt - cached)
        reasoning = _opt_int(usage.get("completion_tokens_details"), "reasoning_tokens")
    except (KeyError, ValueError):
        return None
    return TokenUsage(
        prompt - cached, completion, cached, min(reasoning, completion), cache_write=written
    )


def responses_usage(usage: Any) -> TokenUsage | None:
    """OpenAI Responses API usage object -> TokenUsage."""
    if not isinstance(usage, dict):
        return None
    try:
        inp = _int(usage["input_tokens"])
        out = _opt_int(usage, "output_tokens")
        details = usage.get("input_tokens_details")
        cached = min(_opt_int(details, "cached_tokens"), inp)
        written = min(_opt_int(details, "cache_write_tokens"), inp - cached)
        reasoning = _opt_int(usage.get("output_tokens_details"), "reasoning_tokens")
    except (KeyError, ValueError):
        return None
    return TokenUsage(inp - cached, out, cached, min(reasoning, out), cache_write=written)


def anthropic_usage(usage: Any) -> TokenUsage | None:
    """Anthropic messages usage object -> TokenUsage."""
    if not isinstance(usage, dict):
        return None
    try:
        written = _opt_int(usage, "cache_creation_input_tokens")
        written_1h = min(
            _opt_int(usage.get("cache_creation"), "ephemeral_1h_input_tokens"), written
        )
        inp = _int(usage["input_tokens"]) + written
        out = _int(usage["output_tokens"])
        cached = _opt_int(usage, "cache_read_input_tokens")
    except (KeyError, ValueError):
        return None
    return TokenUsage(inp, out, cached, 0, cache_write=written, cache_write_1h=written_1h)


@dataclass
class BodyResult:
    usage: TokenUsage | None
    model: str | None
    malformed: bool = False
    service_tier: str | None = None
    """OpenAI's `service_tier` of the response (priority and flex are priced apart)."""


def service_tier_of(data: Any) -> str | None:
    """The `service_tier` an OpenAI response object names, if a plausible one."""
    tier = data.get("service_tier") if isinstance(data, dict) else None
    return tier if isinstance(tier, str) and 0 < len(tier) <= 32 else None


def parse_body(kind: str, body: bytes) -> BodyResult:
    """Usage and model of a whole (non-streamed) JSON response body. A large embeddings
    body laid out as OpenAI's (`data` holds the vectors, then `model`, then `usage` last)
    is read from its tail: parsing all of it would stall every other request."""
    if kind == "embeddings" and len(body) > WHOLE_PARSE_MAX_BYTES:
        tail = _tail_members(body)
        if tail is not None:
            return _body_result(kind, tail)
    try:
        data = loads_json(body)
    except (ValueError, UnicodeDecodeError):
        return BodyResult(None, None, malformed=True)
    if not isinstance(data, dict):
        return BodyResult(None, None, malformed=True)
    return _body_result(kind, data)


def _tail_members(body: bytes) -> dict[str, Any] | None:
    """{"usage": ..., "model": ...} when `usage` is the last member of the top-level
    object (exactly one closing brace follows its value) and `model` the one before it;
    None otherwise (the caller parses the whole body)."""
    if _OBJECT_START.match(body) is None or b'"service_tier"' in body[:_TAIL_BYTES]:
        return None  # a tier (priced apart) before `data`: the whole body is parsed
    tail = body[-_TAIL_BYTES:]
    at = tail.rfind(b'"usage"')
    key = _USAGE_KEY.match(tail, at) if at > 0 else None
    if key is None or tail[at - 1 : at] == b"\\":  # `\"usage"` ends a string, not a key
        return None
    try:
        text = tail[key.end() :].decode()
        usage, end = json.JSONDecoder().raw_decode(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(usage, dict) or text[end:].strip() != "}":
        return None
    model = _MODEL_BEFORE_USAGE.search(tail, 0, at)
    if model is None or tail[model.start() - 1 : model.start()] == b"\\":
        return None
    try:
        return {"usage": usage, "model": json.loads(model.group(1))}
    except ValueError:
        return None


def _body_result(kind: str, data: dict[str, Any]) -> BodyResult:
    model = data.get("model")
    model = model if isinstance(model, str) and model else None
    raw = data.get("usage")
    if kind == "anthropic":
        return BodyResult(anthropic_usage(raw), model)
    if kind == "responses":
        return BodyResult(responses_usage(raw), model, service_tier=service_tier_of(data))
    return BodyResult(openai_usage(raw), model, service_tier=service_tier_of(data))


class SSEUsageReader:
    """Follows an SSE stream event by event and keeps the usage and model it reports.

    `feed(chunk)` returns the complete events (bytes with LF line ends, each ending
    with a blank line) so that the proxy can forward them, dropping the one usage-only
    chunk the client did not ask for (`drop_usage_chunk`).
    """

    def __init__(self, kind: str, drop_usage_chunk: bool = False) -> None:
        self.kind = kind
        self.drop_usage_chunk = drop_usage_chunk
        self.usage: TokenUsage | None = None
        self.model: str | None = None
        self.service_tier: str | None = None  # as the usage chunk or final response says
        self.done = False  # saw the provider's end-of-stream marker
        self.usage_final = False  # `usage` is the provider's closing count
        self.generated = False  # a choice's finish_reason came: only the usage count is left
        self.failed = False  # the stream ended with the provider's error event
        self._pending = bytearray()  # an incomplete event, line ends already LF
        self._skip_lf = False  # the last read ended with a CR: a LF next is its CRLF's
        self._anthropic_input: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events `chunk` completes; EventTooLarge when one grows past the cap.

        Line ends may be CRLF, LF or a lone CR (as the SSE spec allows); each read is
        normalised to LF as it arrives, a CR that ends one read counting as a line end
        at once and the LF that may start the next read (the rest of a CRLF) dropped,
        so that an event's end is found wherever the reads split it.

        Linear in the stream's size: an incomplete event is appended to, and only the
        new bytes (plus the one before them) are searched for the end of an event."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._pending:
            start = len(self._pending) - 1
            self._pending += chunk
            if self._pending.find(b"\n\n", start) < 0:
                self._check_pending()
                return []
            data = bytes(self._pending)
        elif b"\n\n" not in chunk:
            self._pending += chunk
            self._check_pending()
            return []
        else:
            data = chunk
        *events, rest = data.split(b"\n\n")
        self._pending = bytearray(rest)
        out: list[bytes] = []
        for event in events:
            if not event:
                continue
            if self._inspect(event):
                out.append(event + b"\n\n")
        self._check_pending()  # after reading the complete events: their usage counts
        return out

    def pending(self) -> bytes:
        """Bytes of an incomplete last event, line ends as LF (forwarded at the end)."""
        return bytes(self._pending)

    def _check_pending(self) -> None:
        large = self.kind == "responses" and _CLOSING_EVENT.match(self._pending) is not None
        cap = MAX_RESPONSE_BYTES if large else MAX_EVENT_BYTES
        if len(self._pending) > cap:
            raise EventTooLarge(f"an SSE event grew past {cap} bytes without ending")

    # ------------------------------------------------------------ per provider

    def _inspect(self, event: bytes) -> bool:
        """Read one event; False when it must not be forwarded."""
        data = _event_data(event)
        if data is None:
            return True
        if data == b"[DONE]":
            self.done = True
            return True
        if self.kind == "anthropic":
            self._anthropic(data)
            return True
        if self.kind == "responses":
            if any(marker in data for marker in _RESPONSES_END):
                self._responses(data)
            elif b'"error"' in data:
                self._error(data)
            return True
        return self._openai(data)

    def _openai(self, data: bytes) -> bool:
        if self.model is None and b'"model"' in data:
            parsed = _loads(data)
            model = parsed.get("model") if isinstance(parsed, dict) else None
            if isinstance(model, str) and model:  # Azure's content-filter chunk says ""
                self.model = model
        if not self.generated and _FINISHED.search(data):
            self.generated = True
        if b'"error"' in data:  # the provider's in-band error: `data: {"error": {...}}`
            parsed = _loads(data)
            if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
                self.done = self.failed = True
                return True
        if b'"usage"' not in data or b'"usage":null' in data or b'"usage": null' in data:
            return True
        parsed = _loads(data)
        if not isinstance(parsed, dict) or parsed.get("usage") is None:
            return True
        usage = openai_usage(parsed["usage"])
        if usage is not None:
            self.usage = usage
            self.usage_final = True
            self.service_tier = service_tier_of(parsed)
        # The usage-only chunk (no choices) is dropped when the client did not ask for it.
        return not (self.drop_usage_chunk and not parsed.get("choices"))

    def _responses(self, data: bytes) -> None:
        parsed = _loads(data)
        if not isinstance(parsed, dict) or parsed.get("type") not in _RESPONSES_END_TYPES:
            return
        response = parsed.get("response")
        if not isinstance(response, dict):
            return
        if isinstance(response.get("model"), str):
            self.model = response["model"]
        self.done = True
        self.failed = parsed.get("type") == "response.failed"
        self.service_tier = service_tier_of(response)
        usage = responses_usage(response.get("usage"))
        if usage is not None:
            self.usage = usage
            self.usage_final = True

    def _error(self, data: bytes) -> None:
        if _type_of(data) == "error":
            self.done = self.failed = True

    def _anthropic(self, data: bytes) -> None:
        if b'"message_start"' not in data and b'"message_delta"' not in data:
            if b'"message_stop"' in data and _type_of(data) == "message_stop":
                self.done = True
                self.usage_final = self.usage is not None
            elif b'"error"' in data:
                self._error(data)
            return
        parsed = _loads(data)
        if not isinstance(parsed, dict):
            return
        kind = parsed.get("type")
        if kind == "message_start":
            message = parsed.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("model"), str):
                    self.model = message["model"]
                usage = message.get("usage")
                if isinstance(usage, dict):
                    self._anthropic_input = dict(usage)
                    self.usage = anthropic_usage(self._anthropic_input)
        elif kind == "message_delta":
            delta_usage = parsed.get("usage")
            if isinstance(delta_usage, dict):
                merged = dict(self._anthropic_input or {})
                # message_delta's counts are cumulative: they replace, never add.
                merged.update({k: v for k, v in delta_usage.items() if v is not None})
                self._anthropic_input = merged
                self.usage = anthropic_usage(merged)
                self.usage_final = self.usage is not None


# A finish_reason that is a string, not null (a quote in generated text comes as \").
_FINISHED = re.compile(rb'(?<!\\)"finish_reason"\s*:\s*"')
_RESPONSES_END_TYPES = ("response.completed", "response.incomplete", "response.failed")
_CLOSING_EVENT = re.compile(rb"event: ?response\.(?:completed|incomplete|failed)\n")
_RESPONSES_END = tuple(f'"{t}"'.encode() for t in _RESPONSES_END_TYPES)


def _type_of(data: bytes) -> Any:
    """The `type` of an event's JSON data (not a word of generated text that names it)."""
    parsed = _loads(data)
    return parsed.get("type") if isinstance(parsed, dict) else None


def _event_data(event: bytes) -> bytes | None:
    """The joined `data:` lines of one SSE event, or None when it has none."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts) if parts else None


def _loads(data: bytes) -> Any:
    try:
        return loads_json(data)
    except (ValueError, UnicodeDecodeError):
        return None
