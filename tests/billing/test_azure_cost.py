"""Azure Cost Management source: the real SDK client against a local HTTPS server.

Simulated: the Cost Management service itself (Azure cannot be reached from here).
`azure_server.py` serves the documented Query wire format over TLS (trustme CA); the
client is the real azure-mgmt-costmanagement `CostManagementClient` with our retry
policy, authenticated by a static bearer token (`AccessToken`). Waits are recorded by
an injected sleep and time comes from an injected clock, so nothing sleeps for real.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from prometheus_client import CollectorRegistry, generate_latest

from aispend import metrics
from aispend.exporters.billing.azure_cost import AzureCostSource
from aispend.exporters.billing.collector import BillingCollector, CachedSource
from aispend.exporters.billing.model import CostLabels, DailyCost, Snapshot, build_snapshot
from aispend.exporters.billing.retry import QPU_RETRY_AFTER
from aispend.exporters.billing.settings import AzureCostSettings
from tests.billing.azure_server import QueryServer, Reply, query_result, running_query_server
from tests.conftest import require_binary

pytestmark = pytest.mark.integration

SCOPE = "subscriptions/00000000-0000-0000-0000-000000000000"
NOW = dt.datetime(2024, 9, 15, 12, 0, tzinfo=dt.UTC).timestamp()
PAGE1 = [
    [10.5, 20240913, "Virtual Machines", "team", "search", "USD"],
    [2.25, 20240914, "Virtual Machines", "team", "search", "USD"],
    [1.0, 20240914, "Azure OpenAI", "team", "research", "USD"],
]
PAGE2 = [
    [4.0, 20240914, "Storage", "", "", "USD"],
    [3.0, 20240915, "Virtual Machines", "team", "search", "USD"],
]


class StaticToken:
    """A TokenCredential that always hands out the same bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("test-token", int(NOW) + 3600)


class RecordingToken(StaticToken):
    """A StaticToken that records the scopes each token is asked for, i.e. which
    audience Entra ID would be asked to sign for; with `fail`, it then refuses the way
    azure-identity does when it cannot sign in, so no request leaves the machine."""

    def __init__(self, fail: str | None = None):
        self.scopes: list[tuple[str, ...]] = []
        self.fail = fail

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.fail is not None:
            raise ClientAuthenticationError(message=self.fail)
        return super().get_token(*scopes, **kwargs)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[QueryServer, Path]]:
    with running_query_server(tmp_path) as running:
        yield running


def make_source(
    server: QueryServer,
    ca_file: Path,
    clock: Clock,
    sleeps: list[float],
    credential: Any = None,
    **extra: Any,
) -> AzureCostSource:
    settings = AzureCostSettings.model_validate(
        {
            "scopes": [{"scope": SCOPE, "name": "prod"}],
            "endpoint": server.base_url,
            "ca_file": str(ca_file),
            **extra,
        }
    )
    return AzureCostSource(
        settings,
        "USD",
        credential=credential or StaticToken(),
        sleep=sleeps.append,
        clock=clock,
    )


def registry_for(cached: CachedSource, clock: Clock) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(BillingCollector([cached], clock=clock))
    return registry


def labels(service: str, category: str, team: str) -> dict[str, str]:
    return {
        "provider": "Microsoft",
        "account": "prod",
        "service_category": category,
        "service": service,
        "team": team,
        "project": "",
        "environment": "",
    }


VM = labels("Virtual Machines", "Compute", "search")
OPENAI = labels("Azure OpenAI", "AI and Machine Learning", "research")
STORAGE = labels("Storage", "Storage", metrics.UNTAGGED_TEAM)


def test_query_pages_and_exported_figures(server: tuple[QueryServer, Path]) -> None:
    srv, ca = server
    next_link = (
        f"{srv.base_url}/{SCOPE}/providers/Microsoft.CostManagement/query"
        "?api-version=2025-03-01&$skiptoken=page2token"
    )
    srv.script(Reply(200, query_result(PAGE1, next_link)), Reply(200, query_result(PAGE2)))
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert cached.refresh(), cached.error
    reg = registry_for(cached, clock)

    assert len(srv.requests) == 2
    first, second = srv.requests
    assert first.path == f"/{SCOPE}/providers/Microsoft.CostManagement/query"
    assert first.query == {"api-version": "2025-03-01"}
    assert second.query == {"api-version": "2025-03-01", "$skiptoken": "page2token"}
    assert first.headers["authorization"] == "Bearer test-token"
    assert (
        first.body
        == second.body
        == {
            "type": "ActualCost",
            "timeframe": "Custom",
            "timePeriod": {"from": "2024-08-01T00:00:00Z", "to": "2024-09-15T23:59:59Z"},
            "dataset": {
                "granularity": "Daily",
                "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
                "grouping": [
                    {"type": "Dimension", "name": "ServiceName"},
                    {"type": "TagKey", "name": "team"},
                ],
            },
        }
    )
    mtd, last = metrics.CLOUD_COST_MONTH_TO_DATE.name, metrics.CLOUD_COST_LAST_DAY.name
    # Newest day 2024-09-15 is partial at 12:00; the last complete day is 2024-09-14.
    assert reg.get_sample_value(mtd, VM) == 15.75
    assert reg.get_sample_value(last, VM) == 2.25
    assert reg.get_sample_value(mtd, OPENAI) == 1.0
    assert reg.get_sample_value(last, OPENAI) == 1.0
    assert reg.get_sample_value(mtd, STORAGE) == 4.0
    assert reg.get_sample_value(last, STORAGE) == 4.0
    src = {"source": "azure_cost"}
    assert reg.get_sample_value(metrics.CLOUD_COST_DATA_TIMESTAMP.name, src) == NOW
    assert reg.get_sample_value(metrics.EXPORTER_UP.name, src) == 1.0
    assert reg.get_sample_value(metrics.SOURCE_LAST_SUCCESS.name, src) == NOW
    assert sleeps == []


def test_the_token_is_asked_for_the_configured_endpoint(
    server: tuple[QueryServer, Path],
) -> None:
    """Before, the client asked for a https://management.azure.com/.default token
    whatever `endpoint` said, so Azure Government or China refused every call."""
    srv, ca = server
    srv.script(Reply(200, query_result(PAGE2)))
    clock, sleeps, cred = Clock(NOW), [], RecordingToken()
    cached = CachedSource(make_source(srv, ca, clock, sleeps, credential=cred), clock)
    assert cached.refresh(), cached.error
    assert cred.scopes == [(f"{srv.base_url}/.default",)]
    assert srv.requests[0].headers["authorization"] == "Bearer test-token"


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        (
            "https://management.usgovcloudapi.net",
            "https://management.core.usgovcloudapi.net/.default",
        ),
        ("https://management.chinacloudapi.cn/", "https://management.chinacloudapi.cn/.default"),
        ("https://management.azure.com", "https://management.azure.com/.default"),
    ],
    ids=["us-government", "china", "public"],
)
def test_a_sovereign_cloud_endpoint_asks_for_that_clouds_token(
    server: tuple[QueryServer, Path], endpoint: str, scope: str
) -> None:
    """The real client's request asks the credential for a token; the credential refuses
    (no Entra ID here), so nothing is sent to the cloud itself. The scopes are those
    azure-mgmt-core uses for each cloud (Government's ARM audience differs from its
    endpoint)."""
    srv, ca = server
    clock, sleeps, cred = Clock(NOW), [], RecordingToken(fail="no Entra ID here")
    source = make_source(srv, ca, clock, sleeps, credential=cred, endpoint=endpoint)
    cached = CachedSource(source, clock)
    assert not cached.refresh()
    assert cred.scopes and set(cred.scopes) == {(scope,)}
    assert srv.requests == []


def test_a_credential_that_cannot_sign_in_is_reported_as_such(
    server: tuple[QueryServer, Path],
) -> None:
    """azure-identity raises ClientAuthenticationError without a status code when it
    cannot get a token (simulated: RecordingToken refuses with DefaultAzureCredential's
    message); it read `Cost Management query failed: HTTP None : ...`. A 401 from the
    service is still an HTTP failure."""
    srv, ca = server
    message = (
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "Attempted credentials:\n\tEnvironmentCredential: EnvironmentCredential"
        " authentication unavailable."
    )
    clock, sleeps = Clock(NOW), []
    source = make_source(srv, ca, clock, sleeps, credential=RecordingToken(fail=message))
    cached = CachedSource(source, clock)
    assert not cached.refresh()
    assert cached.error == (
        f"{SCOPE}: cannot get an Azure token: DefaultAzureCredential failed to retrieve a"
        " token from the included credentials. Attempted credentials: EnvironmentCredential:"
        " EnvironmentCredential authentication unavailable."
    )
    assert srv.requests == []

    srv.script(Reply(401, {"error": {"code": "InvalidAuthenticationToken", "message": "no"}}))
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert not cached.refresh()
    assert cached.error is not None
    assert cached.error.startswith(f"{SCOPE}: Cost Management query failed: HTTP 401 ")


def test_a_new_month_without_rows_keeps_the_last_day_and_a_fresh_timestamp(
    server: tuple[QueryServer, Path],
) -> None:
    """At 01:00 on October 1 Azure has no October rows yet. The query reaches back to
    September 1, so the bill of September 30 and the data timestamp stay (MonthToDate
    alone answered nothing: timestamp 0, AISpendBillingDataStale paged, bill panels
    emptied); October's month to date is 0 so far, not September's total."""
    srv, ca = server
    september = [
        [100.0, 20240929, "Virtual Machines", "team", "search", "USD"],
        [40.0, 20240930, "Virtual Machines", "team", "search", "USD"],
    ]
    october = [[7.0, 20241001, "Virtual Machines", "team", "search", "USD"]]
    srv.script(Reply(200, query_result(september)), Reply(200, query_result(september + october)))
    clock, sleeps = Clock(dt.datetime(2024, 10, 1, 1, 0, tzinfo=dt.UTC).timestamp()), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    reg = registry_for(cached, clock)
    mtd, last = metrics.CLOUD_COST_MONTH_TO_DATE.name, metrics.CLOUD_COST_LAST_DAY.name
    stamp = metrics.CLOUD_COST_DATA_TIMESTAMP.name

    assert cached.refresh(), cached.error
    assert srv.requests[0].body["timePeriod"] == {
        "from": "2024-09-01T00:00:00Z",
        "to": "2024-10-01T23:59:59Z",
    }
    october_1 = dt.datetime(2024, 10, 1, tzinfo=dt.UTC).timestamp()
    assert reg.get_sample_value(stamp, {"source": "azure_cost"}) == october_1
    assert reg.get_sample_value(last, VM) == 40.0
    assert reg.get_sample_value(mtd, VM) == 0.0

    clock.now = october_1 + 86400 + 3600  # October 2, 01:00: October 1 is complete
    assert cached.refresh(), cached.error
    assert reg.get_sample_value(stamp, {"source": "azure_cost"}) == october_1 + 86400
    assert reg.get_sample_value(last, VM) == 7.0
    assert reg.get_sample_value(mtd, VM) == 7.0


def test_429_waits_for_the_qpu_retry_after(server: tuple[QueryServer, Path]) -> None:
    srv, ca = server
    srv.script(
        Reply(
            429, {"error": {"code": "429", "message": "Too many requests"}}, {QPU_RETRY_AFTER: "37"}
        ),
        Reply(200, query_result(PAGE2)),
    )
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert cached.refresh(), cached.error
    assert sleeps == [37.0]
    assert len(srv.requests) == 2
    reg = registry_for(cached, clock)
    assert reg.get_sample_value("aispend_source_throttled_total", {"source": "azure_cost"}) == 1.0
    assert reg.get_sample_value(metrics.CLOUD_COST_MONTH_TO_DATE.name, STORAGE) == 4.0


def test_429_retry_after_header_and_too_long_wait(server: tuple[QueryServer, Path]) -> None:
    srv, ca = server
    srv.script(
        Reply(429, {}, {"Retry-After": "5", QPU_RETRY_AFTER: "3"}),
        Reply(200, query_result(PAGE2)),
    )
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps, max_retry_wait_seconds=60), clock)
    assert cached.refresh()
    assert sleeps == [5.0]  # the longest of the throttling headers
    srv.script(Reply(429, {}, {QPU_RETRY_AFTER: "3600"}))
    assert not cached.refresh()  # asked to wait past the limit: the refresh fails now
    assert sleeps == [5.0]
    assert "HTTP 429" in (cached.error or "")


def test_500s_retried_with_bounded_backoff(server: tuple[QueryServer, Path]) -> None:
    srv, ca = server
    err = {"error": {"code": "InternalServerError", "message": "boom"}}
    srv.script(Reply(500, err), Reply(503, err), Reply(500, err), Reply(200, query_result(PAGE2)))
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps, max_retries=3), clock)
    assert cached.refresh(), cached.error
    assert sleeps == [2.0, 4.0, 8.0]
    assert len(srv.requests) == 4

    srv.requests.clear()
    sleeps.clear()
    srv.script(*(Reply(500, err) for _ in range(4)))
    assert not cached.refresh()
    assert len(srv.requests) == 4  # one try and max_retries=3 retries, no more
    assert sleeps == [2.0, 4.0, 8.0]
    assert "HTTP 500" in (cached.error or "")


@pytest.mark.parametrize(
    "reply", [Reply(204), Reply(200, query_result([]))], ids=["204", "200-no-rows"]
)
def test_an_empty_answer_is_no_cost_not_stale_data(
    server: tuple[QueryServer, Path], reply: Reply
) -> None:
    """A scope without cost, read successfully: no cost series and no data timestamp.
    The timestamp was 0, so AISpendBillingDataStale (time() - timestamp > max age) fired
    for a healthy scope; a failed read is still caught by its last-success time."""
    srv, ca = server
    srv.script(reply)
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert cached.refresh(), cached.error
    reg = registry_for(cached, clock)
    src = {"source": "azure_cost"}
    assert reg.get_sample_value(metrics.EXPORTER_UP.name, src) == 1.0
    assert reg.get_sample_value(metrics.SOURCE_LAST_SUCCESS.name, src) == NOW
    assert reg.get_sample_value(metrics.CLOUD_COST_DATA_TIMESTAMP.name, src) is None
    text = generate_latest(reg).decode()
    assert f"\n{metrics.CLOUD_COST_MONTH_TO_DATE.name}{{" not in text
    assert f"\n{metrics.CLOUD_COST_DATA_TIMESTAMP.name}{{" not in text


def test_cache_serves_scrapes_and_stale_data_keeps_its_timestamp(
    server: tuple[QueryServer, Path], tmp_path: Path
) -> None:
    srv, ca = server
    srv.script(Reply(200, query_result(PAGE1 + PAGE2)))
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps, max_retries=0), clock)
    reg = registry_for(cached, clock)
    assert cached.refresh_if_due()
    for minutes in (1, 30, 60, 239):
        clock.now = NOW + minutes * 60
        assert not cached.refresh_if_due()
        assert reg.get_sample_value(metrics.CLOUD_COST_MONTH_TO_DATE.name, VM) == 15.75
    assert len(srv.requests) == 1  # scrapes and early checks never called the API
    src = {"source": "azure_cost"}
    assert reg.get_sample_value(metrics.SOURCE_CACHE_AGE.name, src) == 239 * 60

    clock.now = NOW + 4 * 3600  # the 4 h refresh interval has passed; the API fails
    srv.script(Reply(500, {"error": {"code": "InternalServerError", "message": "boom"}}))
    assert cached.refresh_if_due() is False
    assert len(srv.requests) == 2
    assert reg.get_sample_value(metrics.EXPORTER_UP.name, src) == 0.0
    assert reg.get_sample_value(metrics.CLOUD_COST_MONTH_TO_DATE.name, VM) == 15.75
    assert reg.get_sample_value(metrics.CLOUD_COST_LAST_DAY.name, VM) == 2.25
    assert reg.get_sample_value(metrics.CLOUD_COST_DATA_TIMESTAMP.name, src) == NOW
    assert reg.get_sample_value(metrics.SOURCE_LAST_SUCCESS.name, src) == NOW
    assert reg.get_sample_value(metrics.SOURCE_CACHE_AGE.name, src) == 4 * 3600

    clock.now += 900  # after a failure the source is retried sooner (15 min), and recovers
    srv.script(
        Reply(200, query_result([[20.0, 20240915, "Virtual Machines", "team", "search", "USD"]]))
    )
    assert cached.refresh_if_due()
    assert reg.get_sample_value(metrics.CLOUD_COST_MONTH_TO_DATE.name, VM) == 20.0
    assert reg.get_sample_value(metrics.CLOUD_COST_MONTH_TO_DATE.name, STORAGE) is None
    assert reg.get_sample_value(metrics.EXPORTER_UP.name, src) == 1.0

    exposition = tmp_path / "metrics.txt"
    exposition.write_bytes(generate_latest(reg))
    check = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=exposition.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0 and check.stdout == b"" and check.stderr == b"", check


def test_other_currency_is_an_error(server: tuple[QueryServer, Path]) -> None:
    srv, ca = server
    srv.script(Reply(200, query_result([[1.0, 20240914, "Storage", "team", "x", "EUR"]])))
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert not cached.refresh()
    assert cached.error == (f"{SCOPE}: cost in EUR, but the config's currency is USD")
    assert cached.snapshot is None


@pytest.mark.parametrize("cost", [float("nan"), float("inf"), "1e400"])
def test_cost_that_is_not_finite_is_an_error(
    server: tuple[QueryServer, Path], cost: object
) -> None:
    # Python's json (which azure-core uses) reads NaN and Infinity; float() takes 1e400.
    srv, ca = server
    srv.script(Reply(200, query_result([[cost, 20240914, "Storage", "team", "x", "USD"]])))
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert not cached.refresh()
    assert cached.error is not None
    assert cached.error.startswith(f"{SCOPE}: bad Query row 0 of page 1: ")
    assert cached.snapshot is None


NAMELESS = [{"type": "Number"}, *query_result([])["properties"]["columns"][1:]]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            query_result([[10.0, 20240914, "VM"]]),
            "bad Query row 0 of page 1: [10.0, 20240914, 'VM']",
        ),
        (
            query_result([[10.0, float("inf"), "VM", "team", "x", "USD"]]),
            "bad Query row 0 of page 1: [10.0, inf, 'VM', 'team', 'x', 'USD']",
        ),
        (
            query_result([{"Cost": 10.0, "UsageDate": 20240914}]),
            "bad Query row 0 of page 1: a JSON object, not a list of column values:"
            " {'Cost': 10.0, 'UsageDate': 20240914}",
        ),
        (
            {"properties": {"columns": NAMELESS, "rows": []}},
            "Query response has a column without a name",
        ),
    ],
    ids=["short-row", "infinite-date", "object-row", "nameless-column"],
)
def test_malformed_query_answer_is_an_error_naming_the_scope(
    server: tuple[QueryServer, Path], body: dict[str, Any], error: str
) -> None:
    """Before: `list index out of range`, `'name'`, `cannot convert float infinity to
    integer`, without the scope; a row that is an object, an empty message (the SDK's
    DeserializationError). The old snapshot is kept either way."""
    srv, ca = server
    srv.script(Reply(200, body))
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert not cached.refresh()
    assert cached.error is not None and cached.error.startswith(f"{SCOPE}: {error}")
    assert cached.snapshot is None


def test_a_bad_row_on_a_later_page_names_that_page(server: tuple[QueryServer, Path]) -> None:
    srv, ca = server
    base = f"{srv.base_url}/{SCOPE}/providers/Microsoft.CostManagement/query"
    srv.script(
        Reply(200, query_result(PAGE1, f"{base}?$skiptoken=A")),
        Reply(200, query_result([PAGE2[0], {"Cost": 1.0}])),
    )
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert not cached.refresh()
    assert cached.error == (
        f"{SCOPE}: bad Query row 1 of page 2: a JSON object, not a list of column values:"
        " {'Cost': 1.0}"
    )


def test_next_link_repeating_with_its_parameters_reordered_is_a_loop(
    server: tuple[QueryServer, Path],
) -> None:
    srv, ca = server
    base = f"{srv.base_url}/{SCOPE}/providers/Microsoft.CostManagement/query"
    srv.script(
        Reply(200, query_result(PAGE1, f"{base}?$skiptoken=A&api-version=2025-03-01")),
        Reply(200, query_result(PAGE2, f"{base}?api-version=2025-03-01&$skiptoken=A")),
    )
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert not cached.refresh()
    assert cached.error is not None and "nextLink repeats itself" in cached.error
    assert len(srv.requests) == 2  # PAGE2 is not counted twice


def test_next_link_skiptoken_reaches_the_service_as_it_was_given(
    server: tuple[QueryServer, Path],
) -> None:
    """A $skiptoken is base64, percent-encoded in the nextLink (Azure's example:
    `$skiptoken=AQAAAA%3D%3D`). It was decoded and sent back raw: `+` arrived as a space
    and `%26` split the token in two."""
    srv, ca = server
    base = f"{srv.base_url}/{SCOPE}/providers/Microsoft.CostManagement/query"
    srv.script(
        Reply(200, query_result(PAGE1, f"{base}?api-version=2021-10-01&$skiptoken=%2BAAAAA%3D%3D")),
        Reply(200, query_result(PAGE1, f"{base}?api-version=2021-10-01&$skiptoken=A%2Fb%26c%3D")),
        Reply(200, query_result(PAGE2)),
    )
    clock, sleeps = Clock(NOW), []
    cached = CachedSource(make_source(srv, ca, clock, sleeps), clock)
    assert cached.refresh(), cached.error
    assert [r.query for r in srv.requests[1:]] == [
        {"api-version": "2025-03-01", "$skiptoken": "+AAAAA=="},
        {"api-version": "2025-03-01", "$skiptoken": "A/b&c="},
    ]


class _CountingSource:
    """A source whose month-to-date grows by 100 on every fetch (simulated: the collector's
    cache is under test, not a billing API)."""

    name = "azure_cost"
    refresh_interval = 60.0
    throttled = 0
    labels = CostLabels("Microsoft", "prod", "Compute", "Virtual Machines", "search", "", "")

    def __init__(self) -> None:
        self.cost = 0.0

    def fetch(self) -> Snapshot:
        self.cost += 100.0
        return build_snapshot([DailyCost(self.labels, dt.date(2024, 9, 14), self.cost)], None, NOW)


def test_a_scrape_serves_the_newest_snapshot_after_two_refreshes_between_scrapes() -> None:
    """With refresh and scrape both every 60 s (or Prometheus away), two refreshes can
    come between scrapes; the freed snapshot's id may be the new one's."""
    source = _CountingSource()
    cached = CachedSource(source, lambda: NOW)
    reg = registry_for(cached, Clock(NOW))
    labels = dict(zip(CostLabels._fields, source.labels, strict=True))
    served = []
    for _ in range(100):
        cached.refresh()
        cached.refresh()
        served.append(reg.get_sample_value(metrics.CLOUD_COST_MONTH_TO_DATE.name, labels))
    assert served == [200.0 * (i + 1) for i in range(100)]


class _FailingSilently(_CountingSource):
    """A source that fails with an exception that carries no message (as azure-core's
    DeserializationError does), simulating an error the source did not foresee."""

    def fetch(self) -> Snapshot:
        raise KeyError()


def test_a_refresh_error_without_a_message_is_still_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log line and the error were empty: `azure_cost refresh failed (no data yet): `."""
    cached = CachedSource(_FailingSilently(), lambda: NOW)
    assert not cached.refresh()
    assert cached.error == "unexpected KeyError without a message"
    assert caplog.messages[-1] == (
        "azure_cost refresh failed (no data yet): unexpected KeyError without a message"
    )
