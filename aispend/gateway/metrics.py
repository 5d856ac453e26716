"""The gateway's /metrics: prometheus_client instruments on a private registry.

Names and labels come from aispend.metrics. LLM token and cost counters carry
`source="gateway"`. Label children are cached per label tuple so that a request
costs a few dict lookups and increments, not `labels()` calls.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric

from aispend import __version__
from aispend import metrics as m
from aispend.gateway.throttle import ThrottleTable
from aispend.pricing import TokenUsage

SOURCE = "gateway"

COST_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
# OpenTelemetry GenAI's recommended boundaries.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


def _counter(spec: m.MetricSpec, registry: CollectorRegistry) -> Counter:
    return Counter(spec.family_name, spec.full_help, list(spec.labels), registry=registry)


def _histogram(
    spec: m.MetricSpec, registry: CollectorRegistry, buckets: tuple[float, ...]
) -> Histogram:
    return Histogram(
        spec.name, spec.full_help, list(spec.labels), registry=registry, buckets=buckets
    )


class _ThrottleCollector:
    """aispend_gateway_throttle_active, built from the table at scrape time."""

    def __init__(self, table: ThrottleTable) -> None:
        self._table = table

    def describe(self) -> list[Metric]:
        return [m.GATEWAY_THROTTLE_ACTIVE.gauge()]

    def collect(self) -> Iterator[Metric]:
        family = m.GATEWAY_THROTTLE_ACTIVE.gauge()
        for rule in self._table.rules():
            family.add_metric(
                [rule.id, rule.team, rule.project or "", rule.agent or "", rule.model or "",
                 rule.mode],
                1.0,
            )  # fmt: skip
        yield family


class _InfoCollector:
    def __init__(self, currency: str) -> None:
        self._currency = currency

    def describe(self) -> list[Metric]:
        return [m.INFO.info()]

    def collect(self) -> Iterator[Metric]:
        family = m.INFO.info()
        family.add_metric([], {m.VERSION: __version__, m.CURRENCY: self._currency})
        yield family


class GatewayMetrics:
    def __init__(self, table: ThrottleTable, currency: str = "USD") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = _counter(m.LLM_REQUESTS, r)
        self.tokens = _counter(m.LLM_TOKENS, r)
        self.cost = _counter(m.LLM_COST, r)
        self.request_cost = _histogram(m.LLM_REQUEST_COST, r, COST_BUCKETS)
        self.unpriced = _counter(m.LLM_UNPRICED_REQUESTS, r)
        self.usage_unknown = _counter(m.LLM_USAGE_UNKNOWN, r)
        self.token_usage = _histogram(m.GEN_AI_TOKEN_USAGE, r, TOKEN_BUCKETS)
        self.duration = _histogram(m.GEN_AI_OPERATION_DURATION, r, DURATION_BUCKETS)
        self.overhead = _histogram(m.GATEWAY_OVERHEAD, r, OVERHEAD_BUCKETS)
        self.throttled = _counter(m.GATEWAY_THROTTLED_REQUESTS, r)
        self.upstream_errors = _counter(m.GATEWAY_UPSTREAM_ERRORS, r)
        r.register(_ThrottleCollector(table))
        r.register(_InfoCollector(currency))
        self._children: dict[tuple[object, ...], object] = {}

    def _child(self, metric: object, labels: tuple[str, ...]) -> object:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            if len(self._children) > 100_000:  # label values are capped; stay bounded anyway
                self._children.clear()
            child = metric.labels(*labels)  # type: ignore[attr-defined]
            self._children[key] = child
        return child

    def inc(self, metric: Counter, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self._child(metric, labels).inc(amount)  # type: ignore[attr-defined]

    def observe(self, metric: Histogram, labels: tuple[str, ...], value: float) -> None:
        self._child(metric, labels).observe(value)  # type: ignore[attr-defined]

    def record_usage(
        self,
        team: str,
        project: str,
        agent: str,
        provider: str,
        model: str,
        operation: str,
        otel_provider: str,
        usage: TokenUsage,
        cost: float,
    ) -> None:
        """Tokens and cost of one request (called exactly once per request with usage)."""
        base = (team, project, agent, provider, model, SOURCE)
        inc = self.inc
        tokens = self.tokens
        inc(tokens, (*base, "input"), usage.input)
        inc(tokens, (*base, "output"), usage.output)
        inc(tokens, (*base, "cached_input"), usage.cached_input)
        inc(tokens, (*base, "reasoning"), usage.reasoning)
        inc(self.cost, base, cost)
        self.observe(self.request_cost, (team, provider, model), cost)
        otel = (operation, otel_provider, model)
        self.observe(self.token_usage, (*otel, "input", team), usage.input + usage.cached_input)
        if operation != "embeddings":
            self.observe(self.token_usage, (*otel, "output", team), usage.output)
