"""The official OpenAI, Azure OpenAI and Anthropic SDKs through the gateway.

Simulated: the provider. The demo upstream (aispend.demo.upstream) speaks the
providers' documented wire formats, JSON and SSE, over a real loopback socket; it
answers 401 unless the request carries the provider key, so every success also proves
that the gateway injected the provider key (the clients only hold aispend keys).
Each test checks the exact token and cost counter deltas on /metrics against the
usage the SDK reported, priced by genai-prices' own `calc_price`, and that the client
got the exact text the demo upstream sent ("token" repeated once per output token not
spent on reasoning), so a gateway that drops or garbles content fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import genai_prices
import openai
import pytest

from aispend import metrics as m
from tests.gateway.harness import (
    RESEARCH_EVALS,
    SEARCH_RANKER,
    Metrics,
    Server,
    gateway,
    upstream,
    write_config,
)

pytestmark = pytest.mark.integration

PROMPT = "Summarise the quarterly spend report for the search team, briefly. " * 3


def _demo_text(tokens: int) -> str:
    """The text the demo upstream answers with for that many visible output tokens."""
    return " ".join(["token"] * tokens)


@dataclass(frozen=True)
class Seen:
    """What the client saw: usage in genai-prices' terms and the model to price."""

    provider: str
    model: str
    input_tokens: int  # cache reads included
    cached: int
    output: int
    reasoning: int
    cache_write: int = 0  # Anthropic cache writes, part of input_tokens
    cache_write_1h: int = 0  # the 1-hour part of cache_write


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp = tmp_path_factory.mktemp("sdk")
    with upstream(tmp, "--stream-chunks", "5") as up, gateway(tmp, write_config(tmp, up.url)) as gw:
        yield up, gw


def _openai(gw: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=SEARCH_RANKER, max_retries=0)


def _azure(gw: Server) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=gw.url, api_key=SEARCH_RANKER, api_version="2024-10-21", max_retries=0
    )


def _anthropic(gw: Server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=SEARCH_RANKER, max_retries=0)


def _chat_usage(provider: str, model: str, usage: object) -> Seen:
    assert usage is not None
    cached = usage.prompt_tokens_details.cached_tokens  # type: ignore[attr-defined]
    details = usage.completion_tokens_details  # type: ignore[attr-defined]
    return Seen(
        provider,
        model,
        usage.prompt_tokens,  # type: ignore[attr-defined]
        cached,
        usage.completion_tokens,  # type: ignore[attr-defined]
        details.reasoning_tokens if details else 0,
    )


# ---------------------------------------------------------------- one call per case


def chat(gw: Server) -> Seen:
    r = _openai(gw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    assert r.choices[0].message.content == _demo_text(40)
    return _chat_usage("openai", "gpt-4o-mini", r.usage)


def chat_stream_reasoning(gw: Server) -> Seen:
    chunks = list(
        _openai(gw).chat.completions.create(
            model="o3-mini",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    # The client asked for usage: it gets the usage-only chunk.
    assert chunks[-1].choices == []
    # o3-mini is a reasoning model: half of the 40 output tokens are visible text.
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == _demo_text(20)
    assert chunks[-2].choices[0].finish_reason == "stop"
    return _chat_usage("openai", "o3-mini", chunks[-1].usage)


def completions(gw: Server) -> Seen:
    r = _openai(gw).completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT)
    assert r.choices[0].text == _demo_text(40)
    return _chat_usage("openai", "gpt-3.5-turbo-instruct", r.usage)


def embeddings(gw: Server) -> Seen:
    r = _openai(gw).embeddings.create(model="text-embedding-3-small", input=[PROMPT, "x"])
    assert [d.index for d in r.data] == [0, 1]  # the demo upstream: one vector per input
    assert all(d.embedding == [0.125] * 8 for d in r.data)
    return Seen("openai", "text-embedding-3-small", r.usage.prompt_tokens, 0, 0, 0)


def responses(gw: Server) -> Seen:
    r = _openai(gw).responses.create(model="o4-mini", input=PROMPT)
    assert r.output_text == _demo_text(20)  # reasoning model: half the output is visible
    u = r.usage
    assert u is not None
    return Seen(
        "openai", "o4-mini", u.input_tokens, u.input_tokens_details.cached_tokens,
        u.output_tokens, u.output_tokens_details.reasoning_tokens,
    )  # fmt: skip


def responses_stream(gw: Server) -> Seen:
    with _openai(gw).responses.stream(model="gpt-4o", input=PROMPT) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) == 5  # the module's upstream streams 5 content chunks
    assert "".join(deltas) == final.output_text == _demo_text(40)
    u = final.usage
    assert u is not None
    return Seen(
        "openai", "gpt-4o", u.input_tokens, u.input_tokens_details.cached_tokens,
        u.output_tokens, u.output_tokens_details.reasoning_tokens,
    )  # fmt: skip


def azure_chat(gw: Server) -> Seen:
    r = _azure(gw).chat.completions.create(
        model="chat-prod", messages=[{"role": "user", "content": PROMPT}]
    )
    assert r.model == "gpt-4o-mini-2024-07-18"
    assert r.choices[0].message.content == _demo_text(40)
    return _chat_usage("azure", r.model, r.usage)


def azure_chat_stream(gw: Server) -> Seen:
    # The client did not ask for usage: the gateway asks upstream, reads it from the
    # extra chunk and strips that chunk, so the client sees no usage at all.
    chunks = list(
        _azure(gw).chat.completions.create(
            model="chat-prod", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    # The upstream's role chunk, 5 content chunks and the finish chunk, in that order.
    assert len(chunks) == 7
    assert all(c.usage is None for c in chunks)
    assert all(len(c.choices) == 1 for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == _demo_text(40)
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The demo upstream's deterministic usage for this prompt (see its docstring).
    inp = 1 + len(PROMPT) // 4
    return Seen("azure", "gpt-4o-mini-2024-07-18", inp, inp // 4, 40, 0)


def azure_embeddings(gw: Server) -> Seen:
    r = _azure(gw).embeddings.create(model="embed-prod", input=PROMPT)
    assert r.model == "text-embedding-3-small"
    assert len(r.data) == 1
    assert r.data[0].embedding == [0.125] * 8
    return Seen("azure", "text-embedding-3-small", r.usage.prompt_tokens, 0, 0, 0)


def anthropic_messages(gw: Server) -> Seen:
    r = _anthropic(gw).messages.create(
        model="claude-haiku-4-5", max_tokens=30, messages=[{"role": "user", "content": PROMPT}]
    )
    assert [b.text for b in r.content if b.type == "text"] == [_demo_text(30)]
    u = r.usage
    cached = u.cache_read_input_tokens or 0
    return Seen("anthropic", "claude-haiku-4-5", u.input_tokens + cached, cached,
                u.output_tokens, 0)  # fmt: skip


def anthropic_cache_write(gw: Server) -> Seen:
    # Prompt caching: 7 of the input tokens were written to the cache (priced 1.25x input).
    r = _anthropic(gw).messages.create(
        model="claude-haiku-4-5", max_tokens=30, messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"X-Demo-Cache-Write-Tokens": "7"},
    )  # fmt: skip
    assert [b.text for b in r.content if b.type == "text"] == [_demo_text(30)]
    u = r.usage
    cached = u.cache_read_input_tokens or 0
    written = u.cache_creation_input_tokens or 0
    assert written == 7
    return Seen("anthropic", "claude-haiku-4-5", u.input_tokens + written + cached, cached,
                u.output_tokens, 0, written)  # fmt: skip


def anthropic_cache_write_1h_stream(gw: Server) -> Seen:
    # 9 tokens written to the cache, 4 of them for an hour (priced 2x input), streamed.
    with _anthropic(gw).messages.stream(
        model="claude-haiku-4-5", max_tokens=25, messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"X-Demo-Cache-Write-Tokens": "9", "X-Demo-Cache-Write-1h-Tokens": "4"},
    ) as stream:  # fmt: skip
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == _demo_text(25)
    assert [b.text for b in final.content if b.type == "text"] == [_demo_text(25)]
    u = final.usage
    assert u.cache_creation is not None
    cached = u.cache_read_input_tokens or 0
    written = u.cache_creation_input_tokens or 0
    written_1h = u.cache_creation.ephemeral_1h_input_tokens
    assert (written, written_1h) == (9, 4)
    return Seen("anthropic", "claude-haiku-4-5", u.input_tokens + written + cached, cached,
                u.output_tokens, 0, written, written_1h)  # fmt: skip


def anthropic_stream(gw: Server) -> Seen:
    with _anthropic(gw).messages.stream(
        model="claude-haiku-4-5", max_tokens=25, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == _demo_text(25)
    assert [b.text for b in final.content if b.type == "text"] == [_demo_text(25)]
    u = final.usage
    cached = u.cache_read_input_tokens or 0
    assert u.output_tokens == 25
    return Seen("anthropic", "claude-haiku-4-5", u.input_tokens + cached, cached,
                u.output_tokens, 0)  # fmt: skip


CASES: list[Callable[[Server], Seen]] = [
    chat, chat_stream_reasoning, completions, embeddings, responses, responses_stream,
    azure_chat, azure_chat_stream, azure_embeddings, anthropic_messages, anthropic_cache_write,
    anthropic_cache_write_1h_stream, anthropic_stream,
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_sdk_call_is_metered_exactly(
    servers: tuple[Server, Server], case: Callable[[Server], Seen]
) -> None:
    _, gw = servers
    before = Metrics.scrape(gw)
    seen = case(gw)
    after = Metrics.scrape(gw)

    calc = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=seen.input_tokens,
            cache_read_tokens=seen.cached,
            output_tokens=seen.output,
            output_reasoning_tokens=seen.reasoning,
            cache_write_tokens=seen.cache_write,
            cache_write_1h_tokens=seen.cache_write_1h,
        ),
        seen.model,
        provider_id=seen.provider,
    )
    model = calc.model.id
    labels = {"team": "search", "project": "", "agent": "rerank-agent",
              "provider": seen.provider, "model": model}  # fmt: skip

    def delta(name: str, **extra: str) -> float:
        return after.value(name, **labels, **extra) - before.value(name, **labels, **extra)

    tokens = m.LLM_TOKENS.name
    assert seen.input_tokens > seen.cached >= 0 or seen.cached == 0
    assert delta(tokens, source="gateway", token_type="input") == seen.input_tokens - seen.cached
    assert delta(tokens, source="gateway", token_type="cached_input") == seen.cached
    assert delta(tokens, source="gateway", token_type="output") == seen.output
    assert delta(tokens, source="gateway", token_type="reasoning") == seen.reasoning
    assert delta(m.LLM_COST.name, source="gateway") == pytest.approx(
        float(calc.total_price), rel=1e-9
    )
    assert delta(m.LLM_REQUESTS.name, status="200") == 1
    assert after.total(m.LLM_USAGE_UNKNOWN.name) == before.total(m.LLM_USAGE_UNKNOWN.name)
    assert after.total(m.LLM_UNPRICED_REQUESTS.name) == before.total(m.LLM_UNPRICED_REQUESTS.name)
    # The cost histogram and the OTel histograms saw this request once.
    hist = {"team": "search", "provider": seen.provider, "model": model}
    assert (
        after.value(m.LLM_REQUEST_COST.name + "_count", **hist)
        - before.value(m.LLM_REQUEST_COST.name + "_count", **hist)
        == 1
    )
    assert (
        after.total(m.GATEWAY_OVERHEAD.name + "_count")
        - before.total(m.GATEWAY_OVERHEAD.name + "_count")
        == 1
    )
    otel_in = {"gen_ai_request_model": model, "gen_ai_token_type": "input", "team": "search"}
    assert (
        after.total(m.GEN_AI_TOKEN_USAGE.name + "_sum", **otel_in)
        - before.total(m.GEN_AI_TOKEN_USAGE.name + "_sum", **otel_in)
        == seen.input_tokens
    )


def test_header_refinement_and_unknown_model(servers: tuple[Server, Server]) -> None:
    """X-Aispend-Agent names the agent of a key configured without one (research-evals);
    its configured project stays whatever X-Aispend-Project says. An unknown model costs
    0 and folds into model="other" with aispend_llm_unpriced_requests_total counting it."""
    _, gw = servers
    before = Metrics.scrape(gw)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=RESEARCH_EVALS, max_retries=0)
    r = client.chat.completions.create(
        model="acme-unknown-llm",
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"X-Aispend-Project": "finetune", "X-Aispend-Agent": "batch-job-7"},
    )
    after = Metrics.scrape(gw)
    labels = {"team": "research", "project": "evals", "agent": "batch-job-7",
              "provider": "openai", "model": "other", "source": "gateway"}  # fmt: skip
    assert r.usage is not None
    assert (
        after.value(m.LLM_TOKENS.name, **labels, token_type="output") == r.usage.completion_tokens
    )
    assert after.value(m.LLM_COST.name, **labels) == 0.0
    unpriced = {"provider": "openai", "model": "other"}
    assert (
        after.value(m.LLM_UNPRICED_REQUESTS.name, **unpriced)
        - before.value(m.LLM_UNPRICED_REQUESTS.name, **unpriced)
        == 1
    )


def test_config_override_price(servers: tuple[Server, Server]) -> None:
    """prices.models in the example config prices acme-internal-llm at 0.5 / 1.5 per MTok."""
    _, gw = servers
    r = _openai(gw).chat.completions.create(
        model="acme-internal-llm", messages=[{"role": "user", "content": PROMPT}]
    )
    assert r.usage is not None
    after = Metrics.scrape(gw)
    labels = {"team": "search", "project": "", "agent": "rerank-agent", "provider": "openai",
              "model": "acme-internal-llm", "source": "gateway"}  # fmt: skip
    # No cached-input price configured: cache reads are priced at the input rate.
    expected = (r.usage.prompt_tokens * 0.5 + r.usage.completion_tokens * 1.5) / 1e6
    assert after.value(m.LLM_COST.name, **labels) == pytest.approx(expected, rel=1e-12)


def test_metrics_pass_promtool(servers: tuple[Server, Server], tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import require_binary

    _, gw = servers
    _openai(gw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    text = Metrics.scrape(gw).text
    assert m.LLM_COST.name in text
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    assert result.stdout.decode() + result.stderr.decode() == ""
