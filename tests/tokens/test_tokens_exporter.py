"""The tokens exporter's real Azure clients against a local HTTPS Azure Monitor.

Simulated: Azure (fake_azure.FakeAzureServer, a trustme-certified HTTPS server speaking
the Log Analytics query and metrics:getBatch wire formats), the Entra ID token (a
static credential), and time (the poller's injected clock). Real: azure-monitor-query's
LogsQueryClient, azure-monitor-querymetrics' MetricsClient, azure-core's pipeline
(bearer auth, retries honouring Retry-After), the state file, pricing.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from prometheus_client import CollectorRegistry, generate_latest

from aispend import metrics
from aispend.config import Config, ConfigError, parse_config
from aispend.exporters.tokens.apim_logs import build_query
from aispend.exporters.tokens.collector import TokensPoller, build_sources
from aispend.exporters.tokens.usage import Usage
from aispend.exporters.tokens.watermark import State, StateError, load_state
from aispend.pricing import Pricer
from aispend.procs import wait_until
from tests.conftest import require_binary
from tests.gpu.helpers import key, samples
from tests.tokens.fake_azure import TOKEN, FakeAzure, FakeAzureServer, LlmRecord

SUB = "00000000-1111-2222-3333-444444444444"
AOAI = (
    f"/subscriptions/{SUB}/resourceGroups/ai/providers/Microsoft.CognitiveServices"
    "/accounts/aoai-prod"
)
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

CONFIG = """
teams:
  - {name: search, agents: [rerank-agent]}
  - {name: support}
  - {name: research, projects: [evals]}
prices:
  models:
    gpt-4o: {input_per_mtok: 2.5, output_per_mtok: 10}
    gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6}
sources:
  azure_tokens:
    workspace_id: ws-1
    logs_endpoint: %(url)s
    subscriptions:
      sub-search-ranker: {team: search, agent: rerank-agent}
    products:
      prod-research: {team: research, project: evals}
    metrics_endpoint: %(url)s
    openai_resources:
      - {id: "%(aoai)s", team: support}
    deployments: {gpt4o-prod: gpt-4o}
    settle_delay_seconds: 300
    initial_lookback_seconds: 3600
    max_retries: 1
    state_file: %(state)s
"""


class StaticCredential:
    """A TokenCredential that hands out a fixed bearer token (no Entra ID here)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(TOKEN, int(time.time()) + 3600)


class RefusingCredential:
    """Records the scopes a token is asked for (the audience Entra ID would sign for),
    then refuses as azure-identity does when it cannot sign in: the real client's request
    stops at its bearer-token policy, so nothing is sent to the cloud it names."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        raise ClientAuthenticationError(message="no Entra ID here")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_ctx, str(ca_file)


@pytest.fixture
def azure(tls: tuple[ssl.SSLContext, str]) -> Iterator[FakeAzureServer]:
    with FakeAzureServer(FakeAzure(), tls[0]) as server:
        yield server


def load(azure: FakeAzureServer, tmp_path: Path) -> Config:
    state = tmp_path / "state" / "tokens.json"
    return parse_config(CONFIG % {"url": azure.url, "aoai": AOAI, "state": state})


def make_poller(config: Config, ca_file: str, clock: Clock) -> TokensPoller:
    settings = config.sources.azure_tokens
    assert settings is not None
    path = Path(settings.state_file)
    poller = TokensPoller(settings, Pricer(config.prices), load_state(path), path, now=clock)
    poller.set_sources(
        build_sources(settings, StaticCredential(), poller.on_throttled, connection_verify=ca_file)
    )
    return poller


def scrape(poller: TokensPoller) -> tuple[str, dict[Any, float]]:
    registry = CollectorRegistry()
    registry.register(poller)
    text = generate_latest(registry).decode()
    return text, samples(text, "aispend_")


def assert_metrics_poll_failed(poller: TokensPoller, config: Config) -> None:
    """The metrics source is down and its watermark was not moved (nothing counted)."""
    _, got = scrape(poller)
    assert got[key(metrics.EXPORTER_UP.name, source=AOAI_SRC)] == 0.0
    settings = config.sources.azure_tokens
    assert settings is not None
    assert AOAI_SRC not in load_state(Path(settings.state_file)).watermarks


def tok(team: str, model: str, source: str, token_type: str, project: str = "", agent: str = ""):
    return key(
        metrics.LLM_TOKENS.name,
        team=team,
        project=project,
        agent=agent,
        provider="azure",
        model=model,
        source=source,
        token_type=token_type,
    )


def cost(team: str, model: str, source: str, project: str = "", agent: str = ""):
    return key(
        metrics.LLM_COST.name,
        team=team,
        project=project,
        agent=agent,
        provider="azure",
        model=model,
        source=source,
    )


APIM, AOAI_SRC = "azure_apim", "azure_openai_metrics"


def seed(fake: FakeAzure) -> None:
    at = T0
    fake.llm += [
        LlmRecord(
            at + timedelta(minutes=1, seconds=30),
            "c1",
            "gpt-4o",
            "gpt4o-prod",
            1000,
            200,
            "sub-search-ranker",
            "prod-search",
        ),
        LlmRecord(
            at + timedelta(minutes=2, seconds=10),
            "c2",
            "gpt-4o-mini",
            "mini",
            500,
            100,
            "sub-unknown",
            "prod-research",
        ),
        # No gateway log row for c3: the join finds no caller.
        LlmRecord(at + timedelta(minutes=3), "c3", "gpt-4o", "gpt4o-prod", 50, 5),
    ]
    pts = fake.points[AOAI]
    pts["ProcessedPromptTokens"]["gpt4o-prod"] += [
        (at, 300.0),
        (at + timedelta(minutes=4), 200.0),
        (at + timedelta(minutes=5), 999.0),
    ]
    pts["GeneratedTokens"]["gpt4o-prod"] += [(at, 40.0)]


def test_exactly_once_across_late_records_throttling_outage_and_restart(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    fake = azure.fake
    seed(fake)
    config = load(azure, tmp_path)
    clock = Clock(T0 + timedelta(minutes=10))  # settle 5 min: counts up to 10:05
    poller = make_poller(config, tls[1], clock)

    poller.poll_once()
    text, got = scrape(poller)
    assert got[tok("search", "gpt-4o", APIM, "input", agent="rerank-agent")] == 1000
    assert got[tok("search", "gpt-4o", APIM, "output", agent="rerank-agent")] == 200
    assert got[cost("search", "gpt-4o", APIM, agent="rerank-agent")] == pytest.approx(
        (1000 * 2.5 + 200 * 10) / 1e6
    )
    # subscription not mapped: the product maps it
    assert got[tok("research", "gpt-4o-mini", APIM, "input", project="evals")] == 500
    assert got[tok("unattributed", "gpt-4o", APIM, "input")] == 50
    # metrics: minute buckets 10:00 and 10:04 (10:05 is not settled yet); deployment -> model
    assert got[tok("support", "gpt-4o", AOAI_SRC, "input")] == 500
    assert got[tok("support", "gpt-4o", AOAI_SRC, "output")] == 40
    assert got[cost("support", "gpt-4o", AOAI_SRC)] == pytest.approx((500 * 2.5 + 40 * 10) / 1e6)
    assert got[key(metrics.EXPORTER_UP.name, source=APIM)] == 1.0
    assert got[key(metrics.EXPORTER_UP.name, source=AOAI_SRC)] == 1.0
    promtool = require_binary("promtool")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert (check.returncode, check.stdout + check.stderr) == (0, "")

    # A record generated at 10:00 but ingested late, at 10:06:30, after the first poll.
    fake.llm.append(
        LlmRecord(
            T0 + timedelta(minutes=6, seconds=30),
            "c4",
            "gpt-4o",
            "gpt4o-prod",
            7,
            3,
            "sub-search-ranker",
            "prod-search",
        )
    )
    # Throttled once (the client waits Retry-After and retries), then answered.
    fake.fail_next["logs"].append((429, {"Retry-After": "1"}))
    clock.now = T0 + timedelta(minutes=12, seconds=40)  # counts up to 10:07
    poller.poll_once()
    _, got = scrape(poller)
    assert got[tok("search", "gpt-4o", APIM, "input", agent="rerank-agent")] == 1007
    assert got[tok("search", "gpt-4o", APIM, "output", agent="rerank-agent")] == 203
    assert got[tok("support", "gpt-4o", AOAI_SRC, "input")] == 1499  # the 10:05 bucket
    assert got[key(metrics.SOURCE_THROTTLED.name, source=APIM)] == 1
    assert got[key(metrics.EXPORTER_UP.name, source=APIM)] == 1.0

    # Outage: Log Analytics answers 503 to the request and its one retry.
    fake.llm.append(
        LlmRecord(
            T0 + timedelta(minutes=7, seconds=5),
            "c5",
            "gpt-4o-mini",
            "mini",
            11,
            1,
            "sub-unknown",
            "prod-research",
        )
    )
    fake.fail_next["logs"] += [(503, {}), (503, {})]
    clock.now = T0 + timedelta(minutes=13, seconds=5)  # would count up to 10:08
    poller.poll_once()
    _, got = scrape(poller)
    assert got[key(metrics.EXPORTER_UP.name, source=APIM)] == 0.0
    assert got[tok("research", "gpt-4o-mini", APIM, "input", project="evals")] == 500
    assert load_state(Path(config.sources.azure_tokens.state_file)).watermarks[APIM] == (  # type: ignore[union-attr]
        T0 + timedelta(minutes=7)
    )

    # Restart: a new process reads the state file and resumes at the watermark.
    restarted = make_poller(config, tls[1], clock)
    _, before = scrape(restarted)
    assert before[tok("search", "gpt-4o", APIM, "input", agent="rerank-agent")] == 1007
    restarted.poll_once()  # same clock: re-reads the failed window once
    restarted.poll_once()  # nothing new to count
    _, got = scrape(restarted)
    assert got[tok("research", "gpt-4o-mini", APIM, "input", project="evals")] == 511
    assert got[tok("search", "gpt-4o", APIM, "input", agent="rerank-agent")] == 1007
    assert got[tok("support", "gpt-4o", AOAI_SRC, "input")] == 1499
    assert got[tok("unattributed", "gpt-4o", APIM, "input")] == 50
    assert got[cost("research", "gpt-4o-mini", APIM, project="evals")] == pytest.approx(
        (511 * 0.15 + 101 * 0.6) / 1e6
    )


def test_a_cost_series_keeps_its_creation_time_across_restarts(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    """The rules count a new series' first value from its `_created` time (increase()
    never counts a first sample). It comes from the state file, so a restarted exporter
    does not make an old series look new: its whole total would count again."""
    seed(azure.fake)
    config = load(azure, tmp_path)
    clock = Clock(T0 + timedelta(minutes=10))
    before = time.time()
    poller = make_poller(config, tls[1], clock)
    poller.poll_once()
    after = time.time()
    series = cost("search", "gpt-4o", APIM, agent="rerank-agent")
    created = (metrics.LLM_COST.created_name, series[1])
    _, got = scrape(poller)
    assert before <= got[created] <= after
    time.sleep(0.01)
    _, again = scrape(make_poller(config, tls[1], clock))
    assert again[created] == got[created] and again[series] == got[series]


def test_a_watermark_written_with_another_utc_offset_counts_nothing_twice(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    """A state file edited or restored by hand with the same instant at -05:00: the
    watermark's local time went into the query with a `Z`, so the restarted exporter
    counted the 5 hours before it again. Simulated: Log Analytics (the fake reads the
    window out of the KQL text)."""
    seed(azure.fake)
    config = load(azure, tmp_path)
    clock = Clock(T0 + timedelta(minutes=10))
    make_poller(config, tls[1], clock).poll_once()
    path = Path(config.sources.azure_tokens.state_file)  # type: ignore[union-attr]
    data = json.loads(path.read_text())
    counted_to = datetime.fromisoformat(data["watermarks"][APIM])
    data["watermarks"][APIM] = counted_to.astimezone(timezone(timedelta(hours=-5))).isoformat()
    path.write_text(json.dumps(data))

    restarted = make_poller(config, tls[1], clock)
    assert restarted.state.watermarks[APIM].utcoffset() == timedelta(0)
    clock.now = T0 + timedelta(minutes=12)
    restarted.poll_once()
    _, got = scrape(restarted)
    assert got[tok("search", "gpt-4o", APIM, "input", agent="rerank-agent")] == 1000
    assert got[tok("research", "gpt-4o-mini", APIM, "input", project="evals")] == 500
    assert got[tok("unattributed", "gpt-4o", APIM, "input")] == 50


def test_the_logs_query_window_is_in_utc_whatever_the_offset() -> None:
    """The KQL literals end in `Z`: a time with another offset must be converted."""
    eastern = timezone(timedelta(hours=-5))
    query = build_query(
        datetime(2024, 9, 15, 7, 0, tzinfo=eastern),
        datetime(2024, 9, 15, 12, 30, tzinfo=UTC),
        datetime(2024, 9, 14, 7, 0, tzinfo=eastern),
    )
    assert (
        "ingestion_time() >= datetime(2024-09-15T12:00:00Z)"
        " and ingestion_time() < datetime(2024-09-15T12:30:00Z)"
    ) in query
    assert "TimeGenerated >= datetime(2024-09-14T12:00:00Z)" in query


class RecordingSource:
    """A source that records the windows it is asked for and finds no usage."""

    name = APIM

    def __init__(self) -> None:
        self.windows: list[tuple[datetime, datetime]] = []

    def fetch(self, start: datetime, end: datetime) -> list[Usage]:
        self.windows.append((start, end))
        return []


def test_a_watermark_ahead_of_the_clock_is_not_served_as_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A state file from a host whose clock is ahead (or this host's clock set back):
    nothing can be read until the clock reaches the watermark. That poll read nothing
    yet set up 1 and a fresh last-success time. Now the source is down, with no
    last-success time and a warning that says why, until a window is read."""
    config = parse_config(CONFIG % {"url": "https://x", "aoai": AOAI, "state": "s"})
    settings = config.sources.azure_tokens
    assert settings is not None
    ahead = T0 + timedelta(hours=2)
    state = State(watermarks={APIM: ahead})
    clock = Clock(T0)
    poller = TokensPoller(
        settings, Pricer(config.prices), state, tmp_path / "state.json", now=clock
    )
    source = RecordingSource()
    poller.set_sources([source])

    poller.poll_once()
    _, got = scrape(poller)
    assert source.windows == []
    assert got[key(metrics.EXPORTER_UP.name, source=APIM)] == 0.0
    assert key(metrics.SOURCE_LAST_SUCCESS.name, source=APIM) not in got
    assert key(metrics.SOURCE_CACHE_AGE.name, source=APIM) not in got
    assert f"watermark {ahead.isoformat()} in {tmp_path / 'state.json'} is ahead" in caplog.text

    clock.now = ahead + timedelta(minutes=6)  # 5 min settle delay: reads up to ahead + 1m
    poller.poll_once()
    _, got = scrape(poller)
    assert source.windows == [(ahead, ahead + timedelta(minutes=1))]
    assert got[key(metrics.EXPORTER_UP.name, source=APIM)] == 1.0
    assert key(metrics.SOURCE_LAST_SUCCESS.name, source=APIM) in got


def test_damaged_state_file_is_an_error_not_a_reset(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"version": 1, "watermarks": {"azure_apim": "yesterday"}}')
    with pytest.raises(StateError, match=r"damaged .* fix or delete it"):
        load_state(path)


@pytest.mark.parametrize("bad", [-300.0, float("nan"), float("inf")])
def test_metric_point_that_is_not_a_count_fails_the_poll_and_counts_nothing(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path, bad: float
) -> None:
    # Python's json (azure-core's) reads NaN and Infinity; a negative total would make
    # the token counter go down, which Prometheus reads as a reset.
    fake = azure.fake
    pts = fake.points[AOAI]
    pts["ProcessedPromptTokens"]["gpt4o-prod"] += [(T0, 300.0), (T0 + timedelta(minutes=1), bad)]
    config = load(azure, tmp_path)
    poller = make_poller(config, tls[1], Clock(T0 + timedelta(minutes=10)))
    poller.poll_once()
    assert_metrics_poll_failed(poller, config)
    assert tok("support", "gpt-4o", AOAI_SRC, "input") not in scrape(poller)[1]


def _fails_then_counts(
    azure: FakeAzureServer,
    tls: tuple[ssl.SSLContext, str],
    tmp_path: Path,
    heal: Callable[[], None],
) -> None:
    """The poll of a broken answer fails without counting; once `heal` mends it, the next
    poll counts the window's 1000 input tokens."""
    config = load(azure, tmp_path)
    clock = Clock(T0 + timedelta(minutes=10))
    poller = make_poller(config, tls[1], clock)
    poller.poll_once()
    assert_metrics_poll_failed(poller, config)

    heal()
    clock.now = T0 + timedelta(minutes=11)
    poller.poll_once()
    _, got = scrape(poller)
    assert got[key(metrics.EXPORTER_UP.name, source=AOAI_SRC)] == 1.0
    assert got[tok("support", "gpt-4o", AOAI_SRC, "input")] == 1000


def test_a_metric_the_answer_says_failed_fails_the_poll_and_is_counted_later(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    """A 200 getBatch answer whose ProcessedPromptTokens carries an errorCode (and no
    series) read as a window without traffic: counted as 0 and never read again."""
    fake = azure.fake
    fake.points[AOAI]["ProcessedPromptTokens"]["gpt4o-prod"] += [
        (T0, 300.0),
        (T0 + timedelta(minutes=2), 700.0),
    ]
    fake.failed_metrics["ProcessedPromptTokens"] = "InternalServerError"
    _fails_then_counts(azure, tls, tmp_path, fake.failed_metrics.clear)


def test_a_resource_the_answer_leaves_out_fails_the_poll_and_is_counted_later(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    """A getBatch answer without one of the resources asked for read as a window without
    traffic for it: counted as 0, the watermark moved on, its tokens lost."""
    fake = azure.fake
    fake.points[AOAI]["ProcessedPromptTokens"]["gpt4o-prod"] += [(T0, 1000.0)]
    fake.omitted.add(AOAI)
    _fails_then_counts(azure, tls, tmp_path, fake.omitted.clear)


def _twelve_deployments(fake: FakeAzure) -> None:
    for n in range(12):
        fake.points[AOAI]["ProcessedPromptTokens"][f"gpt4o-{n:02}"] += [(T0, 100.0)]


def test_every_deployment_of_a_resource_is_counted(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    """With a dimension filter Azure returns 10 series unless `top` says more: 12
    deployments would be counted as 10 and the watermark would move past the rest."""
    _twelve_deployments(azure.fake)
    poller = make_poller(load(azure, tmp_path), tls[1], Clock(T0 + timedelta(minutes=10)))
    poller.poll_once()
    _, got = scrape(poller)
    counted = sum(
        v
        for k, v in got.items()
        if k[0] == metrics.LLM_TOKENS.name and ("source", AOAI_SRC) in k[1]
    )
    assert counted == 1200


def test_an_answer_as_long_as_the_series_cap_fails_the_poll(
    azure: FakeAzureServer,
    tls: tuple[ssl.SSLContext, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("aispend.exporters.tokens.aoai_metrics.MAX_SERIES", 12)
    _twelve_deployments(azure.fake)
    config = load(azure, tmp_path)
    poller = make_poller(config, tls[1], Clock(T0 + timedelta(minutes=10)))
    poller.poll_once()
    assert_metrics_poll_failed(poller, config)


@pytest.mark.parametrize(
    ("watermarks", "tokens", "why"),
    [
        ({"azure_apim": "2025-01-01T00:00:00"}, [], "has no UTC offset"),
        ({"azure_apim": "2999-01-01T00:00:00+00:00"}, [], "is in the future"),
        ({"azure_apim": "9999-12-31T23:00:00-05:00"}, [], "out of range once in UTC"),
        ({}, [["search", "", "", "azure", "gpt-4o", APIM, "input", float("nan")]], "finite"),
        ({}, [["search", "", "", "azure", "gpt-4o", APIM, "input", -5]], "finite"),
        ({}, [["search", "", "", "azure", "gpt-4o", APIM, "input", True]], "not a number"),
    ],
    ids=[
        "naive-watermark",
        "future-watermark",
        "watermark-past-year-9999-in-utc",
        "nan-total",
        "negative-total",
        "bool-total",
    ],
)
def test_state_file_values_that_cannot_be_right_are_an_error(
    tmp_path: Path, watermarks: dict[str, str], tokens: list[list[Any]], why: str
) -> None:
    """A naive watermark crashed the poller thread at its first comparison; a future one
    stopped counting; a NaN or negative total was served as a counter (a reset)."""
    path = tmp_path / "tokens.json"
    state = {"version": 1, "watermarks": watermarks, "tokens": tokens, "cost": []}
    path.write_text(json.dumps(state))
    with pytest.raises(StateError, match=why):
        load_state(path)


def test_the_poll_loop_survives_an_unexpected_error(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    poller = make_poller(load(azure, tmp_path), tls[1], Clock(T0 + timedelta(minutes=10)))
    calls = []

    def poll_source(source: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("a bug")

    poller._poll_source = poll_source  # type: ignore[method-assign]
    poller._settings = poller._settings.model_copy(update={"poll_interval_seconds": 0})
    poller.start()
    try:
        wait_until(lambda: len(calls) >= 3, 10, what="more polls after the error")
    finally:
        poller.stop()


def test_a_source_held_up_does_not_hold_up_the_other(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    """azure-core sleeps out a 429's Retry-After inside the call, however long (the
    backoff settings do not cap it). Simulated by holding the Log Analytics answer until
    released: meanwhile the metrics source is still polled and counted."""
    fake = azure.fake
    fake.points[AOAI]["ProcessedPromptTokens"]["gpt4o-prod"] += [(T0, 300.0)]
    released = threading.Event()
    fake.held["logs"] = released
    poller = make_poller(load(azure, tmp_path), tls[1], Clock(T0 + timedelta(minutes=10)))
    poller.start()
    try:
        wait_until(
            lambda: scrape(poller)[1].get(tok("support", "gpt-4o", AOAI_SRC, "input")) == 300,
            10,
            what="the metrics source counted while the logs answer is held",
        )
        assert poller.status[APIM].last_success is None
        released.set()
        wait_until(lambda: poller.status[APIM].last_success is not None, 10, what="the logs poll")
    finally:
        released.set()
        poller.stop()


@pytest.mark.parametrize(
    ("endpoint", "audience", "scope"),
    [
        (
            "https://usgovvirginia.metrics.monitor.azure.us",
            None,
            "https://metrics.monitor.azure.us/.default",
        ),
        (
            "https://chinaeast2.metrics.monitor.azure.cn",
            None,
            "https://metrics.monitor.azure.cn/.default",
        ),
        (
            "https://eastus.metrics.monitor.azure.com",
            None,
            "https://metrics.monitor.azure.com/.default",
        ),
        (
            "https://metrics.example.internal",
            "https://metrics.monitor.azure.us/",
            "https://metrics.monitor.azure.us/.default",
        ),
    ],
    ids=["us-government", "china", "public", "explicit-audience"],
)
def test_metrics_tokens_are_asked_for_the_endpoints_cloud(
    endpoint: str, audience: str | None, scope: str, tmp_path: Path
) -> None:
    """Before, MetricsClient asked for a https://metrics.monitor.azure.com token whatever
    metrics_endpoint said, so Azure Government or China refused every call."""
    text = (
        "teams: [{name: support}]\nsources:\n  azure_tokens:\n"
        f"    metrics_endpoint: {endpoint}\n"
        + (f"    metrics_audience: {audience}\n" if audience else "")
        + f'    openai_resources: [{{id: "{AOAI}", team: support}}]\n'
        f"    state_file: {tmp_path / 'state.json'}\n"
    )
    settings = parse_config(text).sources.azure_tokens
    assert settings is not None
    credential = RefusingCredential()
    [source] = build_sources(settings, credential, lambda source: None)
    with pytest.raises(ClientAuthenticationError):
        source.fetch(T0, T0 + timedelta(minutes=5))
    assert credential.scopes and set(credential.scopes) == {(scope,)}


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (
            "[ProcessedPromptTokens, InputTokens, GeneratedTokens]",
            "'ProcessedPromptTokens' and 'InputTokens' both count input tokens",
        ),
        ("[ProcessedPromptTokens, TokenTransaction]", "'TokenTransaction' is not a token metric"),
        ("[]", "must not be empty"),  # was accepted: a poll that asks for no metric
    ],
)
def test_metric_names_that_would_count_twice_or_nothing_are_refused(names: str, error: str) -> None:
    text = (
        "teams: [{name: search}]\nsources:\n  azure_tokens:\n"
        "    metrics_endpoint: https://eastus.metrics.monitor.azure.com\n"
        f"    metric_names: {names}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    [issue] = info.value.issues
    assert str(issue).startswith(f"sources.azure_tokens.metric_names: {error}")


def test_window_totals_are_priced_without_the_long_context_tier(
    azure: FakeAzureServer, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    """A window's tokens are a sum over many requests: 600k input tokens in an hour of
    2,000-token requests are charged the base rate, not the tier a single 600k-token
    request would reach (it was 1.8x for gpt-5.4)."""
    from aispend.pricing import TokenUsage
    from tests.gateway.test_pricing import _tiered_model

    model = _tiered_model()

    class OneWindow:
        name = AOAI_SRC

        def fetch(self, start: datetime, end: datetime) -> list[Usage]:
            return [Usage("support", "", "", model, input=600_000, output=60_000)]

    poller = make_poller(load(azure, tmp_path), tls[1], Clock(T0 + timedelta(minutes=10)))
    poller.set_sources([OneWindow()])
    poller.poll_once()
    pricer = Pricer(parse_config(CONFIG % {"url": "x", "aoai": AOAI, "state": "s"}).prices)
    request = pricer.price("azure", model, TokenUsage(input=2_000, output=200)).total
    assert sum(poller.state.cost.values()) == pytest.approx(300 * request)
