"""The tokens poller (background) and collector (serves what the poller counted).

Exposition (provider "azure"; source "azure_apim" or "azure_openai_metrics"):

    aispend_llm_tokens_total{team="search",project="",agent="rerank-agent",provider="azure",
                             model="gpt-4o",source="azure_apim",token_type="input"} 1200
    aispend_llm_cost_total{team="search",...,source="azure_apim"} 0.009
    aispend_exporter_up{source="azure_apim"} 1
    aispend_source_last_success_timestamp_seconds{source="azure_apim"} 1.7e+09
    aispend_source_cache_age_seconds{source="azure_apim"} 12
    aispend_source_throttled_total{source="azure_apim"} 0

Each poll reads, per source, the window [watermark, now - settle delay) cut to whole
minutes, prices it, and commits new totals and the new watermark to the state file
in one atomic write before they are served. A failed poll (outage, 429 after the
retries, bad response) changes nothing; the next poll reads the same window again.

Each source is polled by its own thread: azure-core sleeps out a 429's Retry-After
(minutes, uncapped by the backoff settings) inside the call, and that must not hold up
the other source. Their commits to the shared state file are serialised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.core import Metric

from aispend import __version__, metrics
from aispend.exporters.tokens.settings import AzureTokensSettings, default_metrics_audience
from aispend.exporters.tokens.usage import Usage
from aispend.exporters.tokens.watermark import State, save_state
from aispend.pricing import Pricer, TokenUsage

log = logging.getLogger(__name__)

PROVIDER = "azure"


class Source(Protocol):
    name: str

    def fetch(self, start: datetime, end: datetime) -> list[Usage]: ...


@dataclass
class SourceStatus:
    up: bool = False
    last_success: float | None = None
    throttled: int = 0


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


class TokensPoller:
    """Polls the sources and owns the counted state; also the Prometheus collector."""

    def __init__(
        self,
        settings: AzureTokensSettings,
        pricer: Pricer,
        state: State,
        state_path: Path,
        currency: str = "USD",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._settings = settings
        self._pricer = pricer
        self._sources: list[Source] = []
        self._state = state
        self._state_path = state_path
        self._currency = currency
        self._now = now
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._source_locks: dict[str, threading.Lock] = {}
        self.status: dict[str, SourceStatus] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- polling

    def set_sources(self, sources: list[Source]) -> None:
        with self._lock:
            self._sources = list(sources)
            for source in sources:
                self.status.setdefault(source.name, SourceStatus())
                self._source_locks.setdefault(source.name, threading.Lock())

    def on_throttled(self, source: str) -> None:
        with self._lock:
            self.status.setdefault(source, SourceStatus()).throttled += 1

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def poll_once(self) -> None:
        """Poll every source once, in turn (`--once`)."""
        for source in self._sources:
            self.poll_source(source)

    def poll_source(self, source: Source) -> None:
        with self._source_locks[source.name]:
            self._poll_source(source)

    def _poll_source(self, source: Source) -> None:
        settings = self._settings
        now = self._now()
        end = floor_minute(now - timedelta(seconds=settings.settle_delay_seconds))
        start = self._state.watermarks.get(source.name) or floor_minute(
            now - timedelta(seconds=settings.initial_lookback_seconds)
        )
        status = self.status[source.name]
        # Freshness (last success, cache age) is the time of the last window read. An
        # empty window reads nothing, so it never moves it: a watermark at `end` is
        # simply up to date; one past it means this host's clock is behind the one
        # that wrote it, and nothing is counted until it catches up: a source that
        # cannot be read (up 0), not a fresh one.
        if start > end:
            status.up = False
            log.warning(
                "%s: watermark %s in %s is ahead of this host's clock (reading up to %s):"
                " not counting until the clock catches up; check the host's time (NTP)",
                source.name,
                start.isoformat(),
                self._state_path,
                end.isoformat(),
            )
            return
        if start == end:
            status.up = True
            return
        if self._read_window(source, status, start, end):
            status.up = True
            status.last_success = time.time()

    def _read_window(
        self, source: Source, status: SourceStatus, start: datetime, end: datetime
    ) -> bool:
        """Fetch [start, end), commit its totals and the new watermark; False on failure
        (logged; the state is unchanged)."""
        try:
            usages = source.fetch(start, end)
        except Exception as exc:  # every failure of a source leaves the state unchanged
            status.up = False
            log.error(
                "%s: poll of %s..%s failed, will retry: %s",
                source.name,
                start.isoformat(),
                end.isoformat(),
                _one_line(exc),
            )
            return False
        with self._commit_lock:  # the other source's thread commits to the same state
            new = self._state.copy()
            for usage in usages:
                self._add(new, source.name, usage)
            new.watermarks[source.name] = end
            try:
                save_state(self._state_path, new)
            except OSError as exc:
                status.up = False
                log.error(
                    "%s: cannot write %s, not counting: %s", source.name, self._state_path, exc
                )
                return False
            with self._lock:
                self._state = new
        log.info(
            "%s: counted %s..%s (%d usage rows)",
            source.name,
            start.isoformat(),
            end.isoformat(),
            len(usages),
        )
        return True

    def _add(self, state: State, source: str, usage: Usage) -> None:
        tokens = TokenUsage(input=usage.input, output=usage.output, cached_input=usage.cached_input)
        # Totals over many requests (per minute or per window): no long-context tier.
        price = self._pricer.price_total(PROVIDER, usage.model, tokens)
        model = price.model
        base = (usage.team, usage.project, usage.agent, PROVIDER, model, source)
        for token_type, count in (
            ("input", usage.input),
            ("output", usage.output),
            ("cached_input", usage.cached_input),
        ):
            if count:
                key = (*base, token_type)
                state.tokens[key] = state.tokens.get(key, 0.0) + count
        if base not in state.cost:
            state.cost_created[base] = time.time()
        state.cost[base] = state.cost.get(base, 0.0) + price.total

    def start(self) -> None:
        """One polling thread per source."""

        def loop(source: Source) -> None:
            while not self._stop.is_set():
                try:
                    self.poll_source(source)
                except Exception:  # a bug must not stop polling for good; the state is kept
                    log.exception("%s: tokens poll failed", source.name)
                self._stop.wait(self._settings.poll_interval_seconds)

        for source in self._sources:
            thread = threading.Thread(
                target=loop, args=(source,), name=f"tokens-poller-{source.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    # ---------------------------------------------------------------- collector

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            state = self._state
            status = {
                k: SourceStatus(v.up, v.last_success, v.throttled) for k, v in self.status.items()
            }
        tokens = metrics.LLM_TOKENS.counter()
        for token_key, value in sorted(state.tokens.items()):
            tokens.add_metric(list(token_key), value)
        yield tokens
        cost = metrics.LLM_COST.counter()
        for cost_key, value in sorted(state.cost.items()):
            cost.add_metric(list(cost_key), value, created=state.cost_created.get(cost_key))
        yield cost

        up = metrics.EXPORTER_UP.gauge()
        last = metrics.SOURCE_LAST_SUCCESS.gauge()
        age = metrics.SOURCE_CACHE_AGE.gauge()
        throttled = metrics.SOURCE_THROTTLED.counter()
        now = time.time()
        for name, st in sorted(status.items()):
            up.add_metric([name], 1.0 if st.up else 0.0)
            throttled.add_metric([name], st.throttled)
            if st.last_success is not None:
                last.add_metric([name], st.last_success)
                age.add_metric([name], max(0.0, now - st.last_success))
        yield up
        yield last
        yield age
        yield throttled
        info = metrics.INFO.info()
        info.add_metric([], {metrics.VERSION: __version__, metrics.CURRENCY: self._currency})
        yield info

    def describe(self) -> Iterator[Metric]:
        yield metrics.LLM_TOKENS.counter()
        yield metrics.LLM_COST.counter()
        yield metrics.EXPORTER_UP.gauge()
        yield metrics.SOURCE_LAST_SUCCESS.gauge()
        yield metrics.SOURCE_CACHE_AGE.gauge()
        yield metrics.SOURCE_THROTTLED.counter()
        yield metrics.INFO.info()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def build_sources(
    settings: AzureTokensSettings,
    credential: Any,
    on_throttled: Callable[[str], None],
    **client_kwargs: Any,
) -> list[Source]:
    """The configured sources with their real Azure clients (429s counted per source)."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    from aispend.exporters.tokens.aoai_metrics import AoaiMetricsSource
    from aispend.exporters.tokens.apim_logs import ApimLogsSource

    class CountThrottled(SansIOHTTPPolicy):
        def __init__(self, source: str):
            self._source = source

        def on_response(self, request: Any, response: Any) -> None:
            if response.http_response.status_code == 429:
                on_throttled(self._source)

    retry = {
        "retry_total": settings.max_retries,
        "retry_backoff_factor": 1.0,
        "retry_backoff_max": 60,
        **client_kwargs,
    }
    sources: list[Source] = []
    if settings.workspace_id:
        from azure.monitor.query import LogsQueryClient

        logs = LogsQueryClient(
            credential,
            endpoint=settings.logs_endpoint,
            per_retry_policies=[CountThrottled(ApimLogsSource.name)],
            **retry,
        )
        sources.append(ApimLogsSource(logs, settings))
    if settings.openai_resources:
        assert settings.metrics_endpoint is not None  # checked by the settings model
        from azure.monitor.querymetrics import MetricsClient

        client = MetricsClient(
            settings.metrics_endpoint,
            credential,
            audience=settings.metrics_audience
            or default_metrics_audience(settings.metrics_endpoint),
            per_retry_policies=[CountThrottled(AoaiMetricsSource.name)],
            **retry,
        )
        sources.append(AoaiMetricsSource(client, settings))
    return sources
