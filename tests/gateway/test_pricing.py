"""Pricing: genai-prices' bundled data, config overrides, unknown models, fast path."""

from __future__ import annotations

import genai_prices
import pytest
from genai_prices.data import providers
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aispend import pricing
from aispend.config import MAX_MODEL_NAME, ModelPrice, Prices
from aispend.pricing import Pricer, PriceResult, TokenUsage, genai_usage

PROVIDERS = ("openai", "azure", "anthropic")
MODELS = [
    (p.id, m.id)
    for p in providers
    if p.id in PROVIDERS
    for m in p.models
    if not m.id.startswith("ft:")  # genai-prices cannot price these by their own id
]


def _expected(provider: str, model: str, usage: TokenUsage) -> float:
    calc = genai_prices.calc_price(genai_usage(usage), model, provider_id=provider)
    return float(calc.total_price)


@pytest.mark.parametrize(("provider", "model"), MODELS)
def test_every_bundled_model_matches_genai_prices(provider: str, model: str) -> None:
    usage = TokenUsage(
        input=1234, output=567, cached_input=89, reasoning=45, cache_write=321, cache_write_1h=123
    )
    result = Pricer(Prices()).price(provider, model, usage)
    assert result.priced is True
    assert result.total == pytest.approx(_expected(provider, model, usage), rel=1e-12, abs=0)


@settings(max_examples=200, deadline=None)
@given(
    idx=st.integers(0, len(MODELS) - 1),
    inp=st.integers(0, 400_000),
    out=st.integers(0, 100_000),
    cached=st.integers(0, 200_000),
    reasoning_share=st.floats(0, 1),
    write_share=st.floats(0, 1),
    hour_share=st.floats(0, 1),
)
def test_random_usage_matches_genai_prices(
    idx: int,
    inp: int,
    out: int,
    cached: int,
    reasoning_share: float,
    write_share: float,
    hour_share: float,
) -> None:
    provider, model = MODELS[idx]
    written = int(inp * write_share)
    usage = TokenUsage(
        inp, out, cached, int(out * reasoning_share), written, int(written * hour_share)
    )
    result = Pricer(Prices()).price(provider, model, usage)
    assert result.total == pytest.approx(_expected(provider, model, usage), rel=1e-9, abs=1e-15)


def test_known_figures_claude_cache_write() -> None:
    # claude-3-5-haiku: $0.80 input, $1.00 cache write, $0.08 cache read, $4 output / MTok.
    usage = TokenUsage(input=3000, output=500, cached_input=10_000, cache_write=2000)
    result = Pricer(Prices()).price("anthropic", "claude-3-5-haiku-latest", usage)
    expected = (1000 * 0.80 + 2000 * 1.00 + 10_000 * 0.08 + 500 * 4.00) / 1e6
    assert result.priced is True
    assert result.total == pytest.approx(expected, rel=1e-12)


def test_known_figures_claude_1h_cache_write() -> None:
    # claude-sonnet-4-5: $3 input, $3.75 5-minute cache write, $6 1-hour cache write / MTok.
    usage = TokenUsage(input=1000, output=0, cache_write=500, cache_write_1h=200)
    result = Pricer(Prices()).price("anthropic", "claude-sonnet-4-5", usage)
    assert result.total == pytest.approx((500 * 3 + 300 * 3.75 + 200 * 6) / 1e6, rel=1e-12)


def test_override_cache_write_prices_fall_back_to_their_parent() -> None:
    prices = Prices(
        models={
            "plain": ModelPrice(input_per_mtok=1, output_per_mtok=2),
            "writes": ModelPrice(input_per_mtok=1, output_per_mtok=2, cache_write_per_mtok=1.25),
            "hourly": ModelPrice(
                input_per_mtok=1, output_per_mtok=2, cache_write_per_mtok=1.25,
                cache_write_1h_per_mtok=2,
            ),
        }
    )  # fmt: skip
    pricer = Pricer(prices)
    usage = TokenUsage(input=3_000_000, cache_write=2_000_000, cache_write_1h=1_000_000)
    assert pricer.price("anthropic", "plain", usage).total == pytest.approx(3.0)
    assert pricer.price("anthropic", "writes", usage).total == pytest.approx(1 + 1.25 + 1.25)
    assert pricer.price("anthropic", "hourly", usage).total == pytest.approx(1 + 1.25 + 2)


def test_known_figures_gpt_4o_mini() -> None:
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens.
    usage = TokenUsage(input=800, output=500, cached_input=200)
    result = Pricer(Prices()).price("openai", "gpt-4o-mini-2024-07-18", usage)
    assert result == PriceResult(pytest.approx(0.000435, rel=1e-12), True, "gpt-4o-mini")


def test_override_wins_and_falls_back_for_cached_and_reasoning() -> None:
    prices = Prices(
        models={
            "acme-internal-llm": ModelPrice(input_per_mtok=0.5, output_per_mtok=1.5),
            "gpt-4o-mini": ModelPrice(
                input_per_mtok=1,
                output_per_mtok=2,
                cached_input_per_mtok=0.1,
                reasoning_per_mtok=4,
            ),
        }
    )
    pricer = Pricer(prices)
    usage = TokenUsage(input=1_000_000, output=1_000_000, cached_input=1_000_000, reasoning=0)
    acme = pricer.price("openai", "ACME-internal-llm", usage)
    assert acme == PriceResult(pytest.approx(0.5 + 1.5 + 0.5), True, "acme-internal-llm")
    reasoning = TokenUsage(input=0, output=1_000_000, reasoning=250_000)
    mini = pricer.price("openai", "gpt-4o-mini", reasoning)
    assert mini.total == pytest.approx(0.75 * 2 + 0.25 * 4)
    assert mini.model == "gpt-4o-mini"


def test_unknown_model_costs_zero_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    pricer = Pricer(Prices())
    usage = TokenUsage(input=10, output=10)
    for _ in range(3):
        assert pricer.price("openai", "no-such-model", usage) == PriceResult(0.0, False, "other")
    warnings = [r for r in caplog.records if "no-such-model" in r.getMessage()]
    assert len(warnings) == 1


def test_overlong_model_name_is_unknown_without_a_lookup(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client's (or upstream's) 10 MB model name: matched against every known model
    # it blocked the event loop for about 2 s on this machine, and the cache held it.
    lookups: list[int] = []
    real = pricing.data_snapshot.get_snapshot

    def counting_snapshot() -> object:
        lookups.append(1)
        return real()

    monkeypatch.setattr(pricing.data_snapshot, "get_snapshot", counting_snapshot)
    pricer = Pricer(Prices())
    name = "gpt-4o" + "x" * 10_000_000
    usage = TokenUsage(input=10, output=10)
    for _ in range(2):
        assert pricer.label("openai", name) == "other"
        assert pricer.price("openai", name, usage) == PriceResult(0.0, False, "other")
    assert lookups == []
    assert pricer.label("openai", "gpt-4o" + "y" * (MAX_MODEL_NAME - 6)) == "other"
    assert lookups == [1]  # a name of the longest length looked up is still looked up
    warnings = [r.getMessage() for r in caplog.records if "no price for model" in r.getMessage()]
    assert len(warnings) == 2  # the overlong name once, the 256-character one once
    assert all(len(w) < 500 for w in warnings)


def test_override_name_longer_than_looked_up_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match=f"longer than {MAX_MODEL_NAME} characters"):
        Prices(models={"m" * (MAX_MODEL_NAME + 1): ModelPrice(input_per_mtok=1, output_per_mtok=1)})


def test_unfamiliar_provider_label_matches_on_model() -> None:
    usage = TokenUsage(input=1000, output=1000)
    result = Pricer(Prices()).price("some-proxy", "gpt-4o", usage)
    assert result.priced is True
    assert result.model == "gpt-4o"
    assert result.total == pytest.approx(_expected("openai", "gpt-4o", usage), rel=1e-12)


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-4o-mini"), ("openai", "gpt-4o-mini-2024-07-18"), ("azure", "gpt-4o"),
     ("anthropic", "claude-3-5-haiku-latest"), ("openai", "My-Model"), ("openai", "no-such"),
     ("some-proxy", "gpt-4o")],
)  # fmt: skip
def test_label_is_the_model_price_reports(provider: str, model: str) -> None:
    pricer = Pricer(Prices(models={"my-model": ModelPrice(input_per_mtok=1, output_per_mtok=2)}))
    label = pricer.label(provider, model)
    assert label == pricer.price(provider, model, TokenUsage(input=5, output=5)).model
    if model == "no-such":
        assert label == "other"
    elif model == "My-Model":
        assert label == "my-model"  # the override's own spelling
    else:
        assert label != "other"


def test_label_of_unknown_model_logs_once_with_price(caplog: pytest.LogCaptureFixture) -> None:
    pricer = Pricer(Prices())
    assert pricer.label("openai", "no-such-model") == "other"
    assert pricer.price("openai", "no-such-model", TokenUsage(input=1)).priced is False
    assert pricer.label("openai", "no-such-model") == "other"
    assert len([r for r in caplog.records if "no-such-model" in r.getMessage()]) == 1


def test_bundled_prices_are_converted_from_us_dollars_and_overrides_are_not() -> None:
    """currency EUR with usd_rate 0.8: genai-prices' dollars x 0.8 on both the fast path
    and the calculator's (tiered sheets); `prices.models` is in EUR already. The same
    for GPUs: the example hourly prices are dollars, `prices.gpu` is not."""
    from aispend.gpu_prices import DEFAULT_GPU_HOURLY_PRICES, gpu_hourly_price

    usage = TokenUsage(input=250_000, output=567, cached_input=89, reasoning=45, cache_write=321)
    override = {"acme-internal-llm": ModelPrice(input_per_mtok=0.5, output_per_mtok=1.5)}
    euro = Pricer(Prices(usd_rate=0.8, models=override))
    for provider, model in MODELS:
        expected = 0.8 * _expected(provider, model, usage)
        assert euro.price(provider, model, usage).total == pytest.approx(expected, rel=1e-12)
    assert euro.price("openai", "acme-internal-llm", usage).total == pytest.approx(
        (250_000 * 0.5 + 567 * 1.5 + 89 * 0.5) / 1e6, rel=1e-12
    )
    prices = Prices(usd_rate=0.8, gpu={"NVIDIA L4": 0.7})
    h100 = DEFAULT_GPU_HOURLY_PRICES["NVIDIA H100 80GB HBM3"]
    assert gpu_hourly_price("NVIDIA H100 80GB HBM3", prices) == pytest.approx(0.8 * h100)
    assert gpu_hourly_price("NVIDIA L4", prices) == 0.7


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_an_override_applies_to_the_dated_name_openai_answers_with(provider: str) -> None:
    """The gateway prices the model named in the response: OpenAI and Azure answer
    `gpt-4o-mini-2024-07-18`, and an override keyed `gpt-4o-mini` was skipped for the
    bundled list price (0.15 / 0.60), with the same model label."""
    pricer = Pricer(
        Prices(models={"gpt-4o-mini": ModelPrice(input_per_mtok=1.5, output_per_mtok=6)})
    )
    usage = TokenUsage(input=1_000_000, output=1_000_000)
    result = pricer.price(provider, "gpt-4o-mini-2024-07-18", usage)
    assert result == PriceResult(pytest.approx(7.5), True, "gpt-4o-mini")
    assert pricer.label(provider, "gpt-4o-mini-2024-07-18") == "gpt-4o-mini"


def _tiered_model() -> str:
    """An OpenAI model whose current input price is tiered (long context)."""
    from datetime import UTC, datetime

    from genai_prices.types import TieredPrices

    now = datetime.now(tz=UTC)
    for provider in providers:
        if provider.id == "openai":
            for model in provider.models:
                if isinstance(model.get_prices(now).input_mtok, TieredPrices):
                    return model.id
    pytest.skip("no tiered OpenAI model in this genai-prices release")


def test_a_sum_of_requests_is_priced_at_the_base_tier() -> None:
    """300 requests of 2,000 input / 200 output tokens, read as one per-window total by
    the tokens exporter, crossed the long-context tier (a per-request price) and were
    charged its rate on every token."""
    model = _tiered_model()
    pricer = Pricer(Prices())
    one = pricer.price("openai", model, TokenUsage(input=2_000, output=200)).total
    total = TokenUsage(input=600_000, output=60_000)
    assert pricer.price_total("openai", model, total).total == pytest.approx(300 * one)
    assert pricer.price("openai", model, total).total > 300 * one  # one request that large


TIERED_SERVICE = [
    (m.id, v.when["service_tier"])
    for p in providers
    if p.id == "openai"
    for m in p.models
    for v in (m.price_variants or ())
    if "service_tier" in v.when and not m.id.startswith("ft:")
]


@pytest.mark.parametrize(("model", "tier"), TIERED_SERVICE)
def test_service_tier_prices_match_genai_prices(model: str, tier: str) -> None:
    usage = TokenUsage(input=90_000, output=10_000, cached_input=10_000, reasoning=2_000)
    expected = genai_prices.calc_price(
        genai_usage(usage), model, provider_id="openai", price_context={"service_tier": tier}
    )
    got = Pricer(Prices()).price("openai", model, usage, tier)
    assert got.total == pytest.approx(float(expected.total_price), rel=1e-9)


def test_the_service_tier_is_read_from_bodies() -> None:
    import json

    from aispend.gateway.usage import parse_body

    def body(tier: object, usage: dict[str, int]) -> bytes:
        return json.dumps({"service_tier": tier, "usage": usage}).encode()

    chat = {"prompt_tokens": 10, "completion_tokens": 5}
    assert parse_body("chat", body("flex", chat)).service_tier == "flex"
    responses = {"input_tokens": 1, "output_tokens": 1}
    assert parse_body("responses", body("priority", responses)).service_tier == "priority"
    assert parse_body("chat", body(5, chat)).service_tier is None
