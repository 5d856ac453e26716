"""200 concurrent streaming requests through the gateway, all metered exactly.

Simulated: the provider (demo upstream over loopback, 10 ms between chunks so the
streams overlap). Client: the official AsyncOpenAI SDK, 200 streams at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import genai_prices
import openai
import pytest

from aispend import metrics as m
from tests.gateway.harness import SEARCH_RANKER, Metrics, gateway, upstream, write_config

pytestmark = pytest.mark.integration

STREAMS = 200
PROMPT = "Rank these ten documents for the query 'gpu cost per team'."


async def _one(client: openai.AsyncOpenAI, i: int) -> tuple[str, int, int, int]:
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": f"{PROMPT} #{i:03d}"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens or 0
    return text, usage.prompt_tokens - cached, cached, usage.completion_tokens


async def _all(url: str) -> list[tuple[str, int, int, int]]:
    client = openai.AsyncOpenAI(
        base_url=url + "/v1", api_key=SEARCH_RANKER, max_retries=0, timeout=60
    )
    try:
        return await asyncio.gather(*(_one(client, i) for i in range(STREAMS)))
    finally:
        await client.close()


def test_200_concurrent_streams(tmp_path: Path) -> None:
    with (
        upstream(tmp_path, "--chunk-interval-ms", "10", "--output-tokens", "24") as up,
        gateway(tmp_path, write_config(tmp_path, up.url)) as gw,
    ):
        results = asyncio.run(_all(gw.url))
        metrics = Metrics.scrape(gw)
        assert up.get_json("/_demo/stats")["requests"] == STREAMS

    assert len(results) == STREAMS
    assert all(text == " ".join(["token"] * 24) for text, *_ in results)
    inp = sum(r[1] for r in results)
    cached = sum(r[2] for r in results)
    out = sum(r[3] for r in results)
    assert out == STREAMS * 24
    labels = {"team": "search", "project": "", "agent": "rerank-agent", "provider": "openai",
              "model": "gpt-4o-mini"}  # fmt: skip
    tokens = m.LLM_TOKENS.name
    assert metrics.value(m.LLM_REQUESTS.name, **labels, status="200") == STREAMS
    assert metrics.value(tokens, **labels, source="gateway", token_type="input") == inp
    assert metrics.value(tokens, **labels, source="gateway", token_type="cached_input") == cached
    assert metrics.value(tokens, **labels, source="gateway", token_type="output") == out
    # gpt-4o-mini's price is flat (no tiers), so the sum of the per-request costs is the
    # price of the summed usage.
    usage = genai_prices.Usage(
        input_tokens=inp + cached, cache_read_tokens=cached, output_tokens=out
    )
    expected = float(
        genai_prices.calc_price(usage, "gpt-4o-mini", provider_id="openai").total_price
    )
    assert metrics.value(m.LLM_COST.name, **labels, source="gateway") == pytest.approx(
        expected, rel=1e-9
    )
    assert metrics.total(m.LLM_USAGE_UNKNOWN.name) == 0
