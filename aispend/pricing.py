"""Token prices: genai-prices' bundled data plus the overrides in `prices.models`.

`Pricer(prices).price(provider, model, usage)` prices one request's token usage in the
reporting currency. Config overrides (`prices.models`, per million tokens, in that
currency) win over the bundled genai-prices data (US dollars, converted with
`prices.usd_rate`), which is read from the installed package and never fetched from
the network. An unknown model costs 0 with `priced=False` and `model="other"`, and
is logged once per (provider, model).

Token semantics (`TokenUsage`): `input` excludes cache reads and includes cache writes,
`cached_input` is the cache-read part, `cache_write` the cache-write part of `input`
(Anthropic prompt caching: 1.25x the input price for 5-minute caches), `cache_write_1h`
the part of `cache_write` kept for an hour (2x the input price), `output` includes
`reasoning`. Each type is priced at its own rate; a missing rate falls back to its
parent's (1h cache write -> cache write -> input, reasoning -> output), as genai-prices
does.

`price_total` prices usage summed over many requests (the tokens exporter reads
per-minute totals): a tiered (long-context) price is per request, chosen by that
request's input tokens, so a sum is priced at the base tier, never at a tier that no
single request may have reached. Requests past a tier's start are then undercounted.

The gateway passes the `service_tier` an OpenAI response names: priority, flex and
the other tiers genai-prices lists as price variants are priced at their own rates.

Overrides match the model as asked or as answered, and also the genai-prices model the
name resolves to: OpenAI answers with dated names (`gpt-4o-mini-2024-07-18`), and an
override for `gpt-4o-mini` must still apply.

Hot path: the model lookup is cached per (provider, model); for the common flat
price sheets (no tiers) the price is computed from cached per-token rates instead of
calling genai-prices' general calculator (about 100 us); anything else (tiered
prices, unusual units) goes through `genai_prices.calc_price`. The test suite checks
that both paths agree for every bundled OpenAI, Azure and Anthropic model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, TieredPrices

from aispend.config import MAX_MODEL_NAME, Prices
from aispend.metrics import OTHER

log = logging.getLogger(__name__)

# genai-prices' provider ids for aispend's provider label values.
PROVIDER_IDS = {"openai": "openai", "azure": "azure", "anthropic": "anthropic"}

_MTOK = 1_000_000
_RATES_TTL_S = 3600.0  # bundled prices can change by date; re-resolve hourly
_MAX_LOGGED_UNKNOWN = 1000
_MAX_SERVICE_TIERS = 8  # cached per model
_STANDARD_TIERS = {"default", "auto", "standard"}

# Price keys whose units aispend never reports (other modalities, searches, audio
# hours, characters): they add nothing to a text-token price.
_IGNORED_DIMENSIONS = {"audio", "image", "video"}
_FAST_KEYS = {
    "input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok",
    "output_reasoning_mtok",
}  # fmt: skip


@dataclass(frozen=True)
class TokenUsage:
    input: int = 0
    """Uncached input tokens (cache writes included)."""
    output: int = 0
    """Output tokens, reasoning included."""
    cached_input: int = 0
    """Cache-read input tokens."""
    reasoning: int = 0
    """Reasoning tokens (a subset of output where the provider says so)."""
    cache_write: int = 0
    """Cache-write input tokens (a subset of input where the provider says so)."""
    cache_write_1h: int = 0
    """Cache writes with a 1-hour lifetime (a subset of cache_write)."""


@dataclass(frozen=True)
class PriceResult:
    total: float
    """Cost in the reporting currency."""
    priced: bool
    """False when the model is unknown (total 0)."""
    model: str
    """The model name as priced (genai-prices' model id or the override key), or "other"."""


@dataclass(frozen=True)
class _Rates:
    """Per-token rates of a flat price sheet."""

    input: float
    output: float
    cached_input: float
    reasoning: float
    cache_write: float
    cache_write_1h: float

    def cost(self, usage: TokenUsage) -> float:
        return (
            (usage.input - usage.cache_write) * self.input
            + (usage.cache_write - usage.cache_write_1h) * self.cache_write
            + usage.cache_write_1h * self.cache_write_1h
            + usage.cached_input * self.cached_input
            + (usage.output - usage.reasoning) * self.output
            + usage.reasoning * self.reasoning
        )


@dataclass
class _Entry:
    """Cached resolution of one (provider, model) pair."""

    name: str
    model: ModelInfo | None
    provider_id: str | None
    rates: _Rates | None
    resolved_at: float
    base_rates: _Rates | None = None
    """The rates with every tiered price at its base tier (for `price_total`)."""
    by_service_tier: dict[str, _Rates | None] = field(default_factory=dict)
    """Flat rates per service tier the model was answered with (None: not flat)."""


_UNKNOWN = _Entry(OTHER, None, None, None, 0.0)


class Pricer:
    """Prices token usage; one instance per loaded config."""

    def __init__(self, prices: Prices) -> None:
        self._overrides: dict[str, _Rates] = {}
        for name, p in prices.models.items():
            cached = p.cached_input_per_mtok
            reasoning = p.reasoning_per_mtok
            write = p.input_per_mtok if p.cache_write_per_mtok is None else p.cache_write_per_mtok
            write_1h = p.cache_write_1h_per_mtok
            self._overrides[name.lower()] = _Rates(
                input=p.input_per_mtok / _MTOK,
                output=p.output_per_mtok / _MTOK,
                cached_input=(p.input_per_mtok if cached is None else cached) / _MTOK,
                reasoning=(p.output_per_mtok if reasoning is None else reasoning) / _MTOK,
                cache_write=write / _MTOK,
                cache_write_1h=(write if write_1h is None else write_1h) / _MTOK,
            )
        self._override_names = {name.lower(): name for name in prices.models}
        self._usd = prices.usd_to_currency()  # genai-prices' prices are in US dollars
        self._cache: dict[tuple[str, str], _Entry] = {}
        self._logged_unknown: set[tuple[str, str]] = set()

    def label(self, provider: str, model: str, *, log_unknown: bool = True) -> str:
        """The model label `price` reports for `model` ("other" when unknown), without
        pricing anything: the gateway labels every request with it before forwarding.
        `log_unknown=False` for a lookup that is not a request (the throttle admin API)."""
        entry = self._entry(provider, model)
        if entry.rates is None and entry.model is None:
            if log_unknown:
                self._log_unknown(provider, model)
            return OTHER
        return entry.name

    def price(
        self, provider: str, model: str, usage: TokenUsage, service_tier: str | None = None
    ) -> PriceResult:
        """`service_tier`: the tier the response says served it (OpenAI's `priority`,
        `flex`...), priced at that tier's variant where genai-prices has one."""
        entry = self._entry(provider, model)
        if service_tier and entry.model is not None and service_tier not in _STANDARD_TIERS:
            return PriceResult(self._tier_cost(entry, model, usage, service_tier), True, entry.name)
        if entry.rates is not None:
            return PriceResult(entry.rates.cost(usage), True, entry.name)
        if entry.model is None:
            self._log_unknown(provider, model)
            return PriceResult(0.0, False, OTHER)
        return PriceResult(self._calc(entry, model, usage), True, entry.name)

    def price_total(self, provider: str, model: str, usage: TokenUsage) -> PriceResult:
        """Price usage summed over many requests: tiered prices at their base tier."""
        entry = self._entry(provider, model)
        rates = entry.rates or entry.base_rates
        if rates is not None:
            return PriceResult(rates.cost(usage), True, entry.name)
        return self.price(provider, model, usage)

    # ------------------------------------------------------------ internals

    def _entry(self, provider: str, model: str) -> _Entry:
        if len(model) > MAX_MODEL_NAME:
            # Unknown without a lookup or a cache entry: matching a client's 10 MB name
            # against every known model blocked the event loop for seconds.
            return _UNKNOWN
        key = (provider, model)
        entry = self._cache.get(key)
        now = time.monotonic()
        if entry is None or now - entry.resolved_at > _RATES_TTL_S:
            entry = self._resolve(provider, model, now)
            if len(self._cache) > 10_000:  # bounded: model names can come from clients
                self._cache.clear()
            self._cache[key] = entry
        return entry

    def _resolve(self, provider: str, model: str, now: float) -> _Entry:
        lowered = model.lower()
        override = self._overrides.get(lowered)
        if override is not None:
            return _Entry(self._override_names[lowered], None, None, override, now)
        provider_id: str | None = PROVIDER_IDS.get(provider, provider)
        snapshot = data_snapshot.get_snapshot()
        found: ModelInfo | None = None
        try:
            _, found = snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            try:  # an unfamiliar provider label: let genai-prices match on the model
                _, found = snapshot.find_provider_model(model, None, None, None)
                provider_id = None
            except LookupError:
                found = None
        if found is None:
            return _Entry(OTHER, None, None, None, now)
        override = self._overrides.get(found.id.lower())
        if override is not None:
            return _Entry(self._override_names[found.id.lower()], None, None, override, now)
        when = datetime.now(tz=UTC)
        rates = _flat_rates(found, when, self._usd)
        base = rates or _flat_rates(found, when, self._usd, tiers_at_base=True)
        return _Entry(found.id, found, provider_id, rates, now, base)

    def _calc(
        self, entry: _Entry, model: str, usage: TokenUsage, service_tier: str | None = None
    ) -> float:
        result = genai_prices.calc_price(
            genai_usage(usage),
            model,
            provider_id=entry.provider_id,
            price_context={"service_tier": service_tier} if service_tier else None,
        )
        return float(result.total_price) * self._usd

    def _tier_cost(self, entry: _Entry, model: str, usage: TokenUsage, tier: str) -> float:
        assert entry.model is not None
        tiers = entry.by_service_tier
        if tier in tiers:
            rates = tiers[tier]
        else:
            sheet = entry.model.get_prices(datetime.now(tz=UTC), {"service_tier": tier})
            rates = _sheet_rates(sheet, self._usd)
            if len(tiers) < _MAX_SERVICE_TIERS:  # the name comes from the upstream
                tiers[tier] = rates
        if rates is not None:
            return rates.cost(usage)
        return self._calc(entry, model, usage, tier)

    def _log_unknown(self, provider: str, model: str, priced_as: str | None = None) -> None:
        key = (provider, model[:MAX_MODEL_NAME])
        if key in self._logged_unknown or len(self._logged_unknown) >= _MAX_LOGGED_UNKNOWN:
            return
        self._logged_unknown.add(key)
        log.warning(
            "no price for model %r (provider %s): %s; add it under prices.models in aispend.yaml",
            model[:200],
            provider,
            f"priced as the model asked for, {priced_as!r}" if priced_as else "counted at cost 0",
        )

    def log_priced_as(self, provider: str, model: str, priced_as: str) -> None:
        """Log (once per model) that a response's unknown `model` is priced as `priced_as`."""
        self._log_unknown(provider, model, priced_as)


def genai_usage(usage: TokenUsage) -> genai_prices.Usage:
    """The genai-prices `Usage` for `usage` (its input_tokens include cache reads)."""
    values: dict[str, Any] = {
        "input_tokens": usage.input + usage.cached_input,
        "output_tokens": usage.output,
    }
    if usage.cached_input:
        values["cache_read_tokens"] = usage.cached_input
    if usage.cache_write:
        values["cache_write_tokens"] = usage.cache_write
    if usage.cache_write_1h:
        values["cache_write_1h_tokens"] = usage.cache_write_1h
    if usage.reasoning:
        values["output_reasoning_tokens"] = usage.reasoning
    return genai_prices.Usage(**values)


def _flat_rates(
    model: ModelInfo, when: datetime, scale: float = 1.0, tiers_at_base: bool = False
) -> _Rates | None:
    """Per-token rates (times `scale`) when the model's current price sheet is flat,
    else None; with `tiers_at_base`, a tiered price counts as its base tier."""
    return _sheet_rates(model.get_prices(when), scale, tiers_at_base)


def _sheet_rates(sheet: Any, scale: float = 1.0, tiers_at_base: bool = False) -> _Rates | None:
    """`_flat_rates` of one price sheet (a genai-prices ModelPrice)."""
    from genai_prices.units import _get_registry

    registry = _get_registry()
    values: dict[str, Decimal] = {}
    for key, value in sheet.__dict__.items():
        if value is None or key.startswith("_"):
            continue
        if key in _FAST_KEYS:
            if isinstance(value, TieredPrices) and tiers_at_base:
                value = value.base
            if not isinstance(value, Decimal):
                return None
            values[key] = value
            continue
        try:
            dims = registry.unit_for_price_key(key).dimensions
        except KeyError:
            return None
        if dims.get("family") == "tokens" and not (
            dims.get("modality") in _IGNORED_DIMENSIONS
            or dims.get("token_type") in _IGNORED_DIMENSIONS
        ):
            return None  # a token unit that would change the text price: be exact
        if dims.get("family") == "requests":
            return None
    if "input_mtok" not in values or "output_mtok" not in values:
        return None
    inp = values["input_mtok"]
    out = values["output_mtok"]
    write = values.get("cache_write_mtok", inp)
    return _Rates(
        input=float(inp / _MTOK) * scale,
        output=float(out / _MTOK) * scale,
        cached_input=float(values.get("cache_read_mtok", inp) / _MTOK) * scale,
        reasoning=float(values.get("output_reasoning_mtok", out) / _MTOK) * scale,
        cache_write=float(write / _MTOK) * scale,
        cache_write_1h=float(values.get("cache_write_1h_mtok", write) / _MTOK) * scale,
    )
