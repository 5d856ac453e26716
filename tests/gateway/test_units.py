"""Unit tests: SSE usage parsing, the throttle table with a fake clock, attribution."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from aispend.config import ApiKey, Config, Team
from aispend.gateway import proxy
from aispend.gateway import usage as usage_module
from aispend.gateway.attribution import Attribution, Attributor, client_key
from aispend.gateway.cli import new_event_loop
from aispend.gateway.http_client import UpstreamResponse
from aispend.gateway.http_server import ClientGone, Reply
from aispend.gateway.throttle import ThrottleRule, ThrottleStore, ThrottleTable
from aispend.gateway.usage import MAX_TOKENS, EventTooLarge, SSEUsageReader, parse_body
from aispend.pricing import TokenUsage


def _sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return f"{head}data: {data}\n\n".encode()


CHAT_STREAM = (
    _sse({"model": "gpt-4o-mini-2024-07-18", "choices": [{"delta": {"content": "hi"}}],
          "usage": None})
    + _sse({"model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": {
        "prompt_tokens": 100, "completion_tokens": 30,
        "prompt_tokens_details": {"cached_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 10}}})
    + _sse("[DONE]")
)  # fmt: skip


@pytest.mark.parametrize("size", [1, 3, 7, 64, 10_000])
def test_sse_usage_any_chunking(size: int) -> None:
    reader = SSEUsageReader("chat", drop_usage_chunk=True)
    forwarded = b""
    for i in range(0, len(CHAT_STREAM), size):
        forwarded += b"".join(reader.feed(CHAT_STREAM[i : i + size]))
    assert reader.usage == TokenUsage(input=60, output=30, cached_input=40, reasoning=10)
    assert reader.model == "gpt-4o-mini-2024-07-18"
    assert reader.done
    # The usage-only chunk is gone, everything else is forwarded byte for byte.
    assert b'"prompt_tokens"' not in forwarded
    assert forwarded == CHAT_STREAM.replace(CHAT_STREAM.split(b"\n\n")[1] + b"\n\n", b"")


def test_sse_crlf_and_kept_usage_chunk() -> None:
    reader = SSEUsageReader("chat", drop_usage_chunk=False)
    out = reader.feed(CHAT_STREAM.replace(b"\n", b"\r\n"))
    assert len(out) == 3
    assert reader.usage == TokenUsage(60, 30, 40, 10)


def test_generated_text_that_reads_message_stop_does_not_end_an_anthropic_stream() -> None:
    """A text delta "message_stop" made message_start's provisional count (1 output
    token) final: a client leaving then was billed 1 token instead of usage unknown."""
    reader = SSEUsageReader("anthropic")
    reader.feed(
        _sse({"type": "message_start", "message": {"model": "claude-haiku-4-5", "usage": {
            "input_tokens": 20, "output_tokens": 1}}}, "message_start")
        + _sse({"type": "content_block_delta", "index": 0, "delta": {
            "type": "text_delta", "text": "message_stop"}}, "content_block_delta")
    )  # fmt: skip
    assert not reader.done and not reader.usage_final
    reader.feed(_sse({"type": "message_stop"}, "message_stop"))
    assert reader.done and reader.usage_final


class _LateCloseReply:
    """The server noticed the client's close late (after cutting a stalled client itself):
    its on_client_gone callback fires during the read-on."""

    def __init__(self) -> None:
        self.on_gone: Callable[[], None] | None = None

    def on_client_gone(self, callback: Callable[[], None] | None) -> None:
        self.on_gone = callback


class _UsageAfterFinish:
    """An upstream that sends the usage chunk after the client left at finish_reason."""

    def __init__(self, reply: _LateCloseReply) -> None:
        self.reply = reply
        self.interrupted: BaseException | None = None
        self.chunks = [
            b'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5}}\n\n'
        ]

    def interrupt(self, exc: BaseException) -> None:
        self.interrupted = exc

    def clear_interrupt(self) -> None:
        self.interrupted = None

    async def readany(self) -> bytes:
        if self.reply.on_gone is not None:
            self.reply.on_gone()  # the late connection_lost
        if self.interrupted is not None:
            raise self.interrupted
        return self.chunks.pop(0) if self.chunks else b""


def test_reading_on_for_usage_survives_a_close_noticed_late() -> None:
    reply = _LateCloseReply()
    upstream = _UsageAfterFinish(reply)
    reply.on_client_gone(lambda: upstream.interrupt(ClientGone()))
    reader = SSEUsageReader("chat")
    reader.generated = True
    asyncio.run(
        proxy._read_closing_usage(cast(Reply, reply), cast(UpstreamResponse, upstream), reader)
    )
    assert reader.usage_final and reader.usage == TokenUsage(10, 5, 0, 0)


@pytest.mark.parametrize(
    ("event", "generated"),
    [
        (b'data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}', False),
        (b'data: {"choices":[{"index":0,"delta":{},"finish_reason": "length"}]}', True),
        # The words in generated text: their quotes come escaped.
        (b'data: {"choices":[{"delta":{"content":"\\"finish_reason\\": \\"x"}}]}', False),
    ],
)
def test_sse_reader_sees_a_choice_finish(event: bytes, generated: bool) -> None:
    reader = SSEUsageReader("chat")
    reader.feed(event + b"\n\n")
    assert reader.generated is generated and not reader.usage_final


def test_anthropic_stream_usage_is_cumulative_not_added() -> None:
    stream = (
        _sse({"type": "message_start", "message": {"model": "claude-haiku-4-5", "usage": {
            "input_tokens": 20, "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 3, "output_tokens": 1,
            "cache_creation": {"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 2},
        }}}, "message_start")
        + _sse({"type": "message_delta", "usage": {"output_tokens": 7}}, "message_delta")
        + _sse({"type": "message_delta", "usage": {"output_tokens": 12}}, "message_delta")
        + _sse({"type": "message_stop"}, "message_stop")
    )  # fmt: skip
    reader = SSEUsageReader("anthropic")
    reader.feed(stream)
    assert reader.usage == TokenUsage(
        input=23, output=12, cached_input=5, reasoning=0, cache_write=3, cache_write_1h=2
    )
    assert reader.done


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"usage": {"prompt_tokens": -1}}',
     b'{"usage": {"prompt_tokens": "12"}}', b'{"usage": {"prompt_tokens": true}}',
     b"[" * 100_000,
     # More tokens than any request can hold: an upstream fault, never billed.
     b'{"usage": {"prompt_tokens": 1000000001}}',
     b'{"usage": {"prompt_tokens": 1%s}}' % (b"0" * 400),
     b'{"usage": {"prompt_tokens": 5, "completion_tokens": 1e400}}'],
)  # fmt: skip
def test_bad_bodies_give_no_usage(body: bytes) -> None:
    result = parse_body("chat", body)
    assert result.usage is None


def test_too_deep_body_is_malformed_and_too_deep_event_is_skipped() -> None:
    assert parse_body("chat", b"[" * 100_000).malformed
    reader = SSEUsageReader("chat")
    deep = b"data: " + b"[" * 100_000 + b"\n\n"
    usage = b'data: {"model": "gpt-4o", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}\n\n'
    assert reader.feed(deep + usage + b"data: [DONE]\n\n") == [deep, usage, b"data: [DONE]\n\n"]
    assert reader.usage == TokenUsage(input=3, output=2)
    assert reader.done


def _large(*members: bytes) -> bytes:
    """A JSON object past WHOLE_PARSE_MAX_BYTES: a big `data` member, then `members`."""
    data = b'"data": [' + b",".join([b"[0.0123456789, -0.5]"] * 200_000) + b"]"
    body = b"{" + b", ".join([data, *members]) + b"}"
    assert len(body) > usage_module.WHOLE_PARSE_MAX_BYTES
    return body


USAGE = b'"usage": {"prompt_tokens": 7, "total_tokens": 7}'


@pytest.mark.parametrize(
    ("body", "model", "tokens"),
    [
        # Embeddings: `usage` last, read from the tail.
        (_large(b'"model": "text-embedding-3-large"', USAGE), "text-embedding-3-large", 7),
        (_large(b'"model":"m\\u00e9"', b'"usage":{"prompt_tokens":7}'), "m\u00e9", 7),
        # `usage` not last, or only in a nested object: the whole body is parsed.
        (_large(USAGE, b'"model": "m"'), "m", 7),
        (_large(b'"model": "m"', b'"meta": {"usage": {"prompt_tokens": 99}}'), "m", None),
        (_large(b'"x": {"model": "n", "usage": {"prompt_tokens": 99}}'), None, None),
        (_large(b'"note": "\\"usage\\": {\\"prompt_tokens\\": 99}}"'), None, None),
        # Keys that end in an escaped quote and then read `usage` or `model`.
        (_large(b'"model": "m"', USAGE, b'"a\\"usage": {"prompt_tokens": 1}'), "m", 7),
        (_large(b'"model": "m"', b'"a\\"usage": {"prompt_tokens": 1}'), "m", None),
        (_large(b'"model": "m"', b'"x\\"model": "n"', USAGE), "m", 7),
    ],
)
def test_a_large_body_is_read_as_a_whole_parse_would_read_it(
    body: bytes, model: str | None, tokens: int | None
) -> None:
    whole = json.loads(body)
    result = parse_body("embeddings", body)
    assert not result.malformed and result.model == model == whole.get("model")
    assert (result.usage.input if result.usage else None) == tokens


def test_a_large_embeddings_body_keeps_a_service_tier_before_its_data() -> None:
    body = b'{"service_tier": "flex", ' + _large(b'"model": "m"', USAGE)[1:]
    assert parse_body("embeddings", body).service_tier == "flex"


def test_a_large_chat_body_keeps_its_service_tier() -> None:
    """Only embeddings bodies are read from the tail: a chat body's service_tier (priced
    apart) may sit anywhere."""
    body = _large(b'"model": "gpt-4o"', b'"service_tier": "priority"', USAGE)
    result = parse_body("chat", body)
    assert (result.model, result.service_tier, result.usage.input) == ("gpt-4o", "priority", 7)


def test_a_large_body_that_is_not_json_is_malformed() -> None:
    assert parse_body("chat", _large(USAGE)[1:]).malformed
    assert parse_body("chat", _large(USAGE)[:-1]).malformed


def test_the_largest_plausible_count_is_billed() -> None:
    body = b'{"usage": {"prompt_tokens": %d, "completion_tokens": 0}}' % MAX_TOKENS
    assert parse_body("chat", body).usage == TokenUsage(input=MAX_TOKENS, output=0)


def test_events_split_across_many_chunks_and_crlf_boundaries() -> None:
    usage = b'data: {"model": "m", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}'
    stream = (b'data: {"choices": [{"delta": {"content": "' + b"a" * 5000 + b'"}}]}\r\n\r\n'
              + usage + b"\r\n\r\ndata: [DONE]\r\n\r\n")  # fmt: skip
    for size in (1, 2, 3, 7, 4096):
        reader = SSEUsageReader("chat")
        events = []
        for i in range(0, len(stream), size):
            events += reader.feed(stream[i : i + size])
        assert len(events) == 3, size
        assert events[1] == usage + b"\n\n"
        assert reader.usage == TokenUsage(input=7, output=3)
        assert reader.done and reader.pending() == b""


def test_crlf_event_whose_blank_line_arrives_in_the_next_read_is_complete() -> None:
    """A read that ends between the two CRLFs of an event's end: the event is complete
    once the second CRLF comes (it was held back, and lost at the end of a stream)."""
    usage = (
        b'data: {"choices":[],"model":"gpt-4o-mini",'
        b'"usage":{"prompt_tokens":10,"completion_tokens":5}}'
    )
    text = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}],"model":"gpt-4o-mini"}'
    reader = SSEUsageReader("chat", drop_usage_chunk=True)
    assert reader.feed(text + b"\r\n\r\n" + usage + b"\r\n") == [text + b"\n\n"]
    assert reader.feed(b"\r\n") == []  # the usage-only chunk: read, not forwarded
    assert reader.usage == TokenUsage(input=10, output=5)
    assert reader.pending() == b""


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_events_are_found_wherever_two_reads_split_them(line_end: bytes) -> None:
    """Every split of a stream into two reads, with each line end the SSE spec allows:
    the same events (line ends as LF), the same usage, nothing left pending."""
    events = [b"event: response.output_text.delta\ndata: {}", b"data: " + json.dumps({
        "type": "response.completed", "response": {"model": "gpt-4o-mini",
        "usage": {"input_tokens": 1000, "output_tokens": 500}}}).encode()]  # fmt: skip
    stream = b"".join(e.replace(b"\n", line_end) + line_end * 2 for e in events)
    for at in range(len(stream) + 1):
        reader = SSEUsageReader("responses")
        out = reader.feed(stream[:at]) + reader.feed(stream[at:])
        assert out == [e + b"\n\n" for e in events], at
        assert reader.usage == TokenUsage(input=1000, output=500), at
        assert reader.done and reader.pending() == b"", at


def test_only_a_responses_closing_event_may_grow_past_the_event_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The closing event carries the whole response (images too) and may be as large as a
    non-streamed body; any other event keeps the small cap (a delta never gets large, and
    each byte held is memory of the gateway's)."""
    monkeypatch.setattr(usage_module, "MAX_EVENT_BYTES", 1000)
    monkeypatch.setattr(usage_module, "MAX_RESPONSE_BYTES", 5000)
    closing = SSEUsageReader("responses")
    closing.feed(b"event: response.completed\ndata: " + b"x" * 3000)  # kept
    with pytest.raises(EventTooLarge):
        closing.feed(b"x" * 3000)
    delta = SSEUsageReader("responses")
    with pytest.raises(EventTooLarge):
        delta.feed(b"event: response.output_text.delta\ndata: " + b"x" * 3000)
    with pytest.raises(EventTooLarge):
        SSEUsageReader("chat").feed(b"event: response.completed\ndata: " + b"x" * 3000)


def test_event_growing_past_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_module, "MAX_EVENT_BYTES", 1000)
    reader = SSEUsageReader("chat")
    assert reader.feed(b"data: {}\n\ndata: " + b"x" * 500) == [b"data: {}\n\n"]
    assert reader.pending() == b"data: " + b"x" * 500
    with pytest.raises(EventTooLarge):
        reader.feed(b"x" * 600)
    # Usage in the events a chunk completes is read even when its tail is too large.
    reader = SSEUsageReader("chat")
    usage = b'data: {"usage": {"prompt_tokens": 2, "completion_tokens": 1}}\n\n'
    with pytest.raises(EventTooLarge):
        reader.feed(usage + b"data: " + b"x" * 1000)
    assert reader.usage == TokenUsage(input=2, output=1)


def test_missing_usage_is_none_not_zero() -> None:
    result = parse_body("chat", b'{"model": "gpt-4o", "choices": []}')
    assert (result.usage, result.model, result.malformed) == (None, "gpt-4o", False)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("chat", {"usage": {"prompt_tokens": 120_000, "completion_tokens": 2_000,
                            "prompt_tokens_details": {"cached_tokens": 20_000,
                                                      "cache_write_tokens": 90_000}}}),
        ("responses", {"usage": {"input_tokens": 120_000, "output_tokens": 2_000,
                                 "input_tokens_details": {"cached_tokens": 20_000,
                                                          "cache_write_tokens": 90_000}}}),
    ],
)  # fmt: skip
def test_openai_cache_writes_are_read_and_priced_as_genai_prices_does(
    kind: str, body: dict[str, object]
) -> None:
    """genai-prices reads OpenAI's `cache_write_tokens` (models that price cache writes
    at 1.25x input); the gateway dropped it and priced the writes as plain input."""
    from datetime import UTC, datetime

    import genai_prices
    from genai_prices.data import providers

    from aispend.config import Prices
    from aispend.pricing import Pricer

    result = parse_body(kind, json.dumps({"model": "m", **body}).encode())
    assert result.usage == TokenUsage(
        input=100_000, output=2_000, cached_input=20_000, cache_write=90_000
    )
    now = datetime.now(tz=UTC)
    for provider in providers:
        if provider.id != "openai":
            continue
        for model in provider.models:
            if model.get_prices(now).cache_write_mtok is not None:
                expected = genai_prices.calc_price(
                    genai_prices.Usage(
                        input_tokens=120_000,
                        output_tokens=2_000,
                        cache_read_tokens=20_000,
                        cache_write_tokens=90_000,
                    ),
                    model.id,
                    provider_id="openai",
                ).total_price
                got = Pricer(Prices()).price("openai", model.id, result.usage).total
                assert got == pytest.approx(float(expected)), model.id
                return
    pytest.skip("no OpenAI model with a cache-write price in this genai-prices release")


def _rule(rule_id: str, **kw: object) -> ThrottleRule:
    base: dict[str, object] = dict(
        id=rule_id, team="search", project=None, agent=None, model=None, mode="rate",
        requests_per_minute=None, tokens_per_minute=None, reason="r",
        alert_fingerprint=None, expires_at=None, created_at="t", updated_at="t",
    )  # fmt: skip
    base.update(kw)
    return ThrottleRule(**base)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_bucket_refills_with_time(tmp_path: Path) -> None:
    clock = Clock()
    table = ThrottleTable(ThrottleStore(tmp_path / "t.db"), clock=clock, wall=clock)
    table.upsert(_rule("r", requests_per_minute=2))
    admit = lambda: table.check("search", "", "a", ("m",)) is None  # noqa: E731
    assert [admit(), admit(), admit()] == [True, True, False]
    refusal = table.check("search", "", "a", ("m",))
    assert refusal is not None and refusal.retry_after == 30  # one request per 30 s
    clock.now += 30
    assert [admit(), admit()] == [True, False]
    assert table.check("growth", "", "a", ("m",)) is None  # other teams untouched


def test_rate_retry_after_stops_at_the_rules_expiry(tmp_path: Path) -> None:
    """A 200k-token request under a 10k tokens-per-minute rule that ends in 300 s: the
    bucket (10k - 200k) takes 1141 s to refill, but the rule is gone in 300, so Retry-After
    says 300, as a block rule's does. The clocks are fakes so the numbers are exact."""
    clock = Clock()
    table = ThrottleTable(ThrottleStore(tmp_path / "t.db"), clock=clock, wall=clock)
    table.upsert(_rule("r", tokens_per_minute=10_000, expires_at="1970-01-01T00:21:40Z"))
    assert table.check("search", "", "a", ("m",)) is None
    table.charge_tokens("search", "", "a", ("m",), 200_000)
    refusal = table.check("search", "", "a", ("m",))
    assert refusal is not None and refusal.retry_after == 300  # 1300 - 1000, not 1141
    clock.now = 1299.5
    refusal = table.check("search", "", "a", ("m",))
    assert refusal is not None and refusal.retry_after == 1  # ceil(0.5)
    table.upsert(_rule("r", tokens_per_minute=10_000, expires_at="1970-01-01T01:00:00Z"))
    refusal = table.check("search", "", "a", ("m",))  # far expiry: the bucket's wait
    assert refusal is not None and refusal.retry_after == 841  # (1 + 190000) / 166.7 - 299.5


def test_a_changed_limit_keeps_what_the_bucket_owes(tmp_path: Path) -> None:
    """A team 4,000 tokens over a 1,000 tokens-per-minute rule, which is then tightened
    to 500 under the same id: a new, full bucket let it straight back in. The debt now
    stays (refilled at the new rate); a loosened limit keeps it too, capped at the new
    capacity only when the level was above it."""
    clock = Clock()
    table = ThrottleTable(ThrottleStore(tmp_path / "t.db"), clock=clock, wall=clock)
    admit = lambda: table.check("search", "", "a", ("m",)) is None  # noqa: E731
    table.upsert(_rule("r", tokens_per_minute=1000))
    assert admit()
    table.charge_tokens("search", "", "a", ("m",), 5000)  # level -4000
    assert not admit()
    table.upsert(_rule("r", tokens_per_minute=500))
    refusal = table.check("search", "", "a", ("m",))
    assert refusal is not None and refusal.retry_after == 481  # (1 + 4000) / (500/60)
    table.upsert(_rule("r", tokens_per_minute=6000))  # loosened: 100 tokens a second
    refusal = table.check("search", "", "a", ("m",))
    assert refusal is not None and refusal.retry_after == 41  # ceil(4001 / 100)
    clock.now += 60  # +6000: level 2000, under the capacity of 6000
    assert admit()
    table.upsert(_rule("r", tokens_per_minute=1000, requests_per_minute=2))
    assert [admit(), admit(), admit()] == [True, True, False]  # new kind of limit: full
    table.charge_tokens("search", "", "a", ("m",), 999)  # level 1000 (capped) - 999
    clock.now += 60  # both buckets full again
    table.upsert(_rule("r", tokens_per_minute=800, requests_per_minute=1))
    assert [admit(), admit()] == [True, False]  # capped at the new capacities


def test_a_block_in_between_keeps_what_the_bucket_owes(tmp_path: Path) -> None:
    """rate -> block -> rate under one id (an operator blocks, then eases back): the block
    had no buckets, so the next rate rule started full and the team's 4,000-token debt
    was forgiven. The debt stays, refilling with time during the block."""
    clock = Clock()
    table = ThrottleTable(ThrottleStore(tmp_path / "t.db"), clock=clock, wall=clock)
    table.upsert(_rule("r", tokens_per_minute=1000))
    assert table.check("search", "", "a", ("m",)) is None
    table.charge_tokens("search", "", "a", ("m",), 5000)  # level -4000
    table.upsert(_rule("r", mode="block"))
    clock.now += 60  # +1000: level -3000
    table.upsert(_rule("r", tokens_per_minute=1000))
    refusal = table.check("search", "", "a", ("m",))
    assert refusal is not None and refusal.retry_after == 181  # (1 + 3000) / (1000/60)


def test_the_throttle_store_syncs_each_write_to_disk(tmp_path: Path) -> None:
    """synchronous=NORMAL in WAL mode answered a PUT before its rule was on disk: a power
    loss could drop a throttle the actuator had recorded as applied."""
    store = ThrottleStore(tmp_path / "t.db")
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    finally:
        store.close()


def test_rules_are_listed_when_expired_ones_cannot_be_purged(tmp_path: Path) -> None:
    """Listing purges expired rules, a write: with the database locked (or the disk
    full) GET /admin/throttles answered 500. It now lists the rules in force."""
    clock = Clock()
    table = ThrottleTable(ThrottleStore(tmp_path / "t.db"), clock=clock, wall=clock)
    table.upsert(_rule("gone", mode="block", expires_at="1970-01-01T00:16:50Z"))  # 1010
    table.upsert(_rule("kept", mode="block"))
    clock.now = 1010
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        assert [r.id for r in table.rules()] == ["kept"]
    finally:
        other.execute("ROLLBACK")
    assert [r.id for r in table.rules()] == ["kept"]
    assert [r[0] for r in other.execute("SELECT id FROM throttles")] == ["kept"]  # purged
    other.close()


def test_block_expiry_and_persistence(tmp_path: Path) -> None:
    clock = Clock()
    store = ThrottleStore(tmp_path / "t.db")
    table = ThrottleTable(store, clock=clock, wall=clock)
    table.upsert(_rule("b", mode="block", agent="a", expires_at="1970-01-01T00:16:50Z"))
    refusal = table.check("search", "", "a", ())
    assert refusal is not None and refusal.retry_after == 10  # 1010 - 1000
    assert table.check("search", "", "other-agent", ()) is None
    store.close()
    reopened = ThrottleTable(ThrottleStore(tmp_path / "t.db"), clock=clock, wall=clock)
    assert [r.id for r in reopened.rules()] == ["b"]
    clock.now = 1010
    assert reopened.check("search", "", "a", ()) is None
    assert reopened.rules() == []
    assert ThrottleStore(tmp_path / "t.db").load() == []


def _config(
    team_agents: list[str], key_agent: str | None = None, key_project: str | None = None
) -> Config:
    """Team search; the key sk-test with the given agent and project (None: unset)."""
    key = hashlib.sha256(b"sk-test").hexdigest()
    return Config(
        teams=[Team(name="search", projects=["ranking", "query-rewrite"], agents=team_agents)],
        api_keys=[ApiKey(sha256=key, team="search", project=key_project, agent=key_agent)],
    )


def test_key_headers_and_agent_cap() -> None:
    assert client_key({"Authorization": "Bearer sk-test"}) == "sk-test"
    assert client_key({"api-key": "sk-test"}) == "sk-test"
    assert client_key({"x-api-key": "sk-test"}) == "sk-test"
    assert client_key({"Authorization": "Basic xyz"}) is None
    att = Attributor(_config(["known"]), header_refinement=True, max_agents_per_team=3)
    headers = {"Authorization": "Bearer sk-test"}
    assert att.attribute({"Authorization": "Bearer nope"}) is None
    assert att.attribute(headers) == Attribution("search", "", "")
    agents = [
        att.attribute({**headers, "X-Aispend-Agent": name}).agent  # type: ignore[union-attr]
        for name in ["a1", "a2", "a3", "a1", "known", "Bad Name!"]
    ]
    assert agents == ["a1", "a2", "other", "a1", "known", "other"]
    project = att.attribute({**headers, "X-Aispend-Project": "nope"})
    assert project is not None and project.project == "other"
    plain = Attributor(_config(["known"]), header_refinement=False)
    assert plain.attribute({**headers, "X-Aispend-Agent": "a1"}) == Attribution("search", "", "")


def test_a_reload_keeps_the_agent_labels_already_given() -> None:
    """The gateway builds a new Attributor on every reload: it used to start with no
    label given, so the first agents to call after an unrelated edit took the free
    labels, and one an agent-scoped throttle named was counted as `other` and let through."""
    headers = {"Authorization": "Bearer sk-test"}

    def agents(att: Attributor, names: list[str]) -> list[str]:
        found = [att.attribute({**headers, "X-Aispend-Agent": n}) for n in names]
        return [a.agent if a else "?" for a in found]

    before = Attributor(_config(["known"]), header_refinement=True, max_agents_per_team=3)
    assert agents(before, ["a1", "a2", "a3"]) == ["a1", "a2", "other"]
    after = Attributor(_config(["known"]), header_refinement=True, max_agents_per_team=3)
    after.keep_agent_labels(before)
    assert agents(after, ["a3", "a2", "a1"]) == ["other", "a2", "a1"]
    # A lower cap keeps the labels given first; an agent now configured keeps its own.
    lower = Attributor(_config(["known"]), header_refinement=True, max_agents_per_team=2)
    lower.keep_agent_labels(before)
    assert agents(lower, ["a2", "a1"]) == ["other", "a1"]
    now_known = Attributor(_config(["known", "a2"]), header_refinement=True, max_agents_per_team=3)
    now_known.keep_agent_labels(before)
    assert agents(now_known, ["a3", "a2", "a1"]) == ["other", "a2", "a1"]


def test_an_agent_a_throttle_names_keeps_its_label_past_the_cap() -> None:
    """After a restart no label is given yet: the throttled agent calling after the free
    labels went must still be labelled itself, or its throttle no longer matches it."""
    att = Attributor(_config(["known"]), header_refinement=True, max_agents_per_team=2)
    headers = {"Authorization": "Bearer sk-test"}
    throttled = {"search": frozenset({"runaway"})}

    def agent(name: str) -> str | None:
        found = att.attribute(
            {**headers, "X-Aispend-Agent": name}, lambda team: throttled.get(team, ())
        )
        return found.agent if found else None

    assert [agent("a1"), agent("a2"), agent("runaway"), agent(" RUNAWAY")] == [
        "a1",
        "other",
        "runaway",
        "runaway",
    ]
    # A throttled agent that calls while a label is free takes it, and keeps it once
    # its throttle is lifted (else, the free labels gone, its spend moved to `other`).
    att = Attributor(_config(["known"]), header_refinement=True, max_agents_per_team=3)
    assert [agent("runaway"), agent("a1"), agent("a2")] == ["runaway", "a1", "other"]
    throttled.clear()
    assert agent("runaway") == "runaway"


def test_headers_only_fill_labels_the_key_leaves_unset() -> None:
    """A key's configured agent and project are authoritative: a header naming another
    one is ignored (else a client could step out of an agent-scoped throttle)."""
    asked = {"Authorization": "Bearer sk-test", "X-Aispend-Agent": "a1",
             "X-Aispend-Project": "query-rewrite"}  # fmt: skip
    agent_only = Attributor(_config(["known"], key_agent="known"), header_refinement=True)
    assert agent_only.attribute(asked) == Attribution("search", "query-rewrite", "known")
    both = Attributor(
        _config(["known"], key_agent="known", key_project="ranking"), header_refinement=True
    )
    assert both.attribute(asked) == Attribution("search", "ranking", "known")
    neither = Attributor(_config(["known"]), header_refinement=True)
    assert neither.attribute(asked) == Attribution("search", "query-rewrite", "a1")


def test_headers_cannot_name_another_keys_pinned_agent_or_project() -> None:
    """sk-crawler is pinned to agent crawler-agent and project ranking; sk-test (same
    team, neither set) declaring them gets `other`: else its spend lands on the crawler's
    labels and the throttle an alert puts on them stops the crawler's key. Configured
    agents and projects no key is pinned to are still accepted."""
    crawler = hashlib.sha256(b"sk-crawler").hexdigest()
    config = _config(["known", "crawler-agent"])
    config.api_keys.append(
        ApiKey(sha256=crawler, team="search", project="ranking", agent="crawler-agent")
    )
    att = Attributor(config, header_refinement=True)
    shared = {"Authorization": "Bearer sk-test"}
    for agent, project in [("crawler-agent", "ranking"), (" Crawler-Agent", "RANKING ")]:
        asked = {**shared, "X-Aispend-Agent": agent, "X-Aispend-Project": project}
        assert att.attribute(asked) == Attribution("search", "other", "other")
    asked = {**shared, "X-Aispend-Agent": "known", "X-Aispend-Project": "query-rewrite"}
    assert att.attribute(asked) == Attribution("search", "query-rewrite", "known")
    pinned = {"Authorization": "Bearer sk-crawler", "X-Aispend-Agent": "known"}
    assert att.attribute(pinned) == Attribution("search", "ranking", "crawler-agent")


def test_key_lookup_cache_keeps_answers() -> None:
    att = Attributor(_config(["known"]))
    first = att.lookup("sk-test")
    assert first is not None and first.team == "search"
    for _ in range(3):  # cached answers equal the hashed ones; unknown keys stay unknown
        assert att.lookup("sk-test") == first
        assert att.lookup("sk-unknown") is None


@pytest.mark.parametrize(
    ("choice", "module"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
def test_event_loop_choice(choice: str, module: str) -> None:
    loop = new_event_loop(choice)
    try:
        assert type(loop).__module__.split(".")[0] == module
    finally:
        loop.close()
