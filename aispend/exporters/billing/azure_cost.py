"""Azure Cost Management: month-to-date daily cost per service and team tag.

For each configured scope, one `query.usage` call (azure-mgmt-costmanagement)
asks for daily cost from the first day of the previous month to today (UTC), so that
the last complete day and a fresh data timestamp survive the first hours of a month
that has no rows yet; month to date sums the current month's days. The query has the
configured cost type
(ActualCost or AmortizedCost), grouped by the ServiceName dimension and the team
tag (the API allows two groupings per query; these two are what the metrics need),
and follows `nextLink` pages. The response is the documented Query shape:

    {"properties": {"nextLink": "...?$skiptoken=...",
                    "columns": [{"name": "Cost", "type": "Number"},
                                {"name": "UsageDate", "type": "Number"},
                                {"name": "ServiceName", "type": "String"},
                                {"name": "TagKey", "type": "String"},
                                {"name": "TagValue", "type": "String"},
                                {"name": "Currency", "type": "String"}],
                    "rows": [[12.5, 20240901, "Virtual Machines", "team", "search", "USD"]]}}

A 204 means no cost in the period. Throttling and 5xx are handled by
`CostManagementRetryPolicy`. Rows without the team tag go to team `untagged`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from aispend import metrics
from aispend.exporters.billing.model import CostLabels, DailyCost, Snapshot, build_snapshot
from aispend.exporters.billing.retry import CostManagementRetryPolicy
from aispend.exporters.billing.service_categories import category_of
from aispend.exporters.billing.settings import AzureCostSettings, AzureCredential, AzureScope
from aispend.secrets import require_secret

log = logging.getLogger(__name__)

SOURCE = "azure_cost"
PROVIDER = "Microsoft"
COST_COLUMN = "Cost"
MAX_PAGES = 1000


class AzureCostError(Exception):
    """A Cost Management query failed or answered something unusable."""


def make_credential(settings: AzureCredential) -> Any:
    """DefaultAzureCredential, or the explicit client secret / managed identity."""
    import azure.identity as identity

    if settings.kind == "client_secret":
        assert settings.client_secret_file is not None
        secret = require_secret(
            str(settings.client_secret_file),
            None,
            "sources.azure_cost.credential.client_secret_file",
        )
        return identity.ClientSecretCredential(
            str(settings.tenant_id), str(settings.client_id), secret
        )
    if settings.kind == "managed_identity":
        if settings.client_id:
            return identity.ManagedIdentityCredential(client_id=settings.client_id)
        return identity.ManagedIdentityCredential()
    return identity.DefaultAzureCredential()


def arm_credential_scopes(endpoint: str) -> list[str]:
    """Token scopes for a Resource Manager endpoint set in the config.

    A known cloud's endpoint gets the scope azure-mgmt-core uses for that cloud (Azure
    Government's ARM audience is management.core.usgovcloudapi.net); any other, its own
    `/.default`. Without this the client asks for a public-cloud token whatever the
    endpoint, and a sovereign cloud refuses every call.
    """
    from azure.core import AzureClouds
    from azure.mgmt.core.tools import get_arm_endpoints

    base = endpoint.rstrip("/")
    for cloud in AzureClouds:
        arm = get_arm_endpoints(cloud)
        if str(arm["resource_manager"]).rstrip("/").lower() == base.lower():
            return [str(scope) for scope in arm["credential_scopes"]]
    return [base + "/.default"]


def query_definition(settings: AzureCostSettings, today: dt.date) -> dict[str, Any]:
    """The Query body: daily cost from the first day of the previous month to `today`."""
    previous_month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    return {
        "type": settings.cost_type,
        "timeframe": "Custom",
        "timePeriod": {
            "from": f"{previous_month.isoformat()}T00:00:00Z",
            "to": f"{today.isoformat()}T23:59:59Z",
        },
        "dataset": {
            "granularity": "Daily",
            "aggregation": {"totalCost": {"name": COST_COLUMN, "function": "Sum"}},
            "grouping": [
                {"type": "Dimension", "name": "ServiceName"},
                {"type": "TagKey", "name": settings.team_tag},
            ],
        },
    }


def parse_usage_date(value: Any) -> dt.date:
    """UsageDate is a YYYYMMDD number (or, in some API versions, an ISO string)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        n = int(value)
        return dt.date(n // 10000, n // 100 % 100, n % 100)
    text = str(value).strip()
    if text.isdigit() and len(text) == 8:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def _next_params(next_link: str) -> dict[str, str]:
    """Query parameters of a nextLink (the SDK adds api-version itself).

    Only the parameters are followed, never the link's host, so the bearer token
    never goes anywhere but the configured endpoint. Values come back percent-encoded
    as the SDK encodes its own: it puts `params=` values into the URL as they are, and
    a decoded `$skiptoken` (base64: `+`, `/`, `=`) would reach Azure with `+` read as a
    space and an `&` splitting it.
    """
    query = urllib.parse.urlsplit(next_link).query
    return {
        k: urllib.parse.quote(v, safe="")
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)
        if k.lower() != "api-version"
    }


class AzureCostSource:
    """A billing source that queries every configured scope on each fetch."""

    name = SOURCE

    def __init__(
        self,
        settings: AzureCostSettings,
        currency: str,
        credential: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.currency = currency
        self.refresh_interval = settings.refresh_interval_seconds
        self.throttled = 0
        self._clock = clock
        self.retry_policy = CostManagementRetryPolicy(
            max_retries=settings.max_retries,
            max_wait=settings.max_retry_wait_seconds,
            sleep=sleep,
            clock=clock,
            on_throttled=self._count_throttle,
        )
        self._credential = credential
        self._client: Any = None

    def _count_throttle(self) -> None:
        self.throttled += 1

    def client(self) -> Any:
        if self._client is None:
            from azure.mgmt.costmanagement import CostManagementClient

            credential = self._credential or make_credential(self.settings.credential)
            kwargs: dict[str, Any] = {"retry_policy": self.retry_policy}
            if self.settings.ca_file is not None:
                kwargs["connection_verify"] = str(self.settings.ca_file)
            if self.settings.endpoint:
                kwargs["credential_scopes"] = arm_credential_scopes(self.settings.endpoint)
            self._client = CostManagementClient(
                credential, base_url=self.settings.endpoint, **kwargs
            )
        return self._client

    def fetch(self) -> Snapshot:
        fetched_at = self._clock()
        today = dt.datetime.fromtimestamp(fetched_at, dt.UTC).date()
        rows: list[DailyCost] = []
        for scope in self.settings.scopes:
            rows.extend(self.query_scope(scope, today))
        return build_snapshot(rows, None, fetched_at, month=(today.year, today.month))

    def query_scope(self, scope: AzureScope, today: dt.date) -> list[DailyCost]:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        client = self.client()
        body = query_definition(self.settings, today)
        params: dict[str, str] = {}
        rows: list[DailyCost] = []
        seen: set[tuple[tuple[str, str], ...]] = set()
        for page in range(1, MAX_PAGES + 1):
            try:
                result = client.query.usage(scope.scope, body, params=dict(params))
            except HttpResponseError as exc:
                if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
                    # raised by the credential (sign-in failed): nothing was sent
                    raise AzureCostError(
                        f"{scope.scope}: cannot get an Azure token: {_short(exc.message)}"
                    ) from exc
                raise AzureCostError(
                    f"{scope.scope}: Cost Management query failed: HTTP {exc.status_code}"
                    f" {exc.reason or ''}: {_short(exc.message)}"
                ) from exc
            except AzureError as exc:
                raise AzureCostError(
                    f"{scope.scope}: Cost Management query failed: {_short(str(exc))}"
                ) from exc
            except (ValueError, TypeError) as exc:  # a body the SDK cannot deserialise
                raise AzureCostError(
                    f"{scope.scope}: unreadable Query response page {page}:"
                    f" {_short(str(exc)) or type(exc).__name__}"
                ) from exc
            if result is None:  # 204 No Content: nothing in the period
                return rows
            columns, page_rows, link = _page_fields(scope, result, page)
            rows.extend(self.parse_rows(scope, columns, page_rows, page))
            if not link:
                return rows
            params = _next_params(link)
            key = tuple(sorted(params.items()))  # the same page, its parameters reordered
            if key in seen:
                raise AzureCostError(f"{scope.scope}: nextLink repeats itself: {link}")
            seen.add(key)
        raise AzureCostError(f"{scope.scope}: more than {MAX_PAGES} result pages")

    def parse_rows(
        self, scope: AzureScope, columns: list[Any], rows: list[list[Any]], page: int
    ) -> list[DailyCost]:
        try:
            names = [str(getattr(c, "name", None) or c["name"]) for c in columns]
        except (KeyError, TypeError) as exc:
            raise AzureCostError(
                f"{scope.scope}: Query response has a column without a name: {columns!r:.200}"
            ) from exc
        index = {n.lower(): i for i, n in enumerate(names)}

        def col(*candidates: str, required: bool = True) -> int | None:
            for name in candidates:
                if name.lower() in index:
                    return index[name.lower()]
            if required:
                raise AzureCostError(
                    f"{scope.scope}: Query response has no {candidates[0]} column"
                    f" (columns: {', '.join(names)})"
                )
            return None

        i_cost = col(COST_COLUMN, "PreTaxCost", "CostUSD")
        i_date = col("UsageDate")
        i_service = col("ServiceName")
        i_team = col("TagValue", self.settings.team_tag, required=False)
        i_currency = col("Currency", required=False)
        assert i_cost is not None and i_date is not None and i_service is not None
        out = []
        for n, row in enumerate(rows):
            if not isinstance(row, list):
                raise _not_a_row(scope, n, page, row)
            try:
                cost = float(row[i_cost])
                if not math.isfinite(cost):  # NaN, Infinity, 1e400
                    raise ValueError("cost is not a finite number")
                day = parse_usage_date(row[i_date])
                currency = row[i_currency] if i_currency is not None else None
                service = str(row[i_service] or "")
                team = str(row[i_team] or "").strip() if i_team is not None else ""
            except (TypeError, ValueError, IndexError, OverflowError) as exc:
                raise AzureCostError(f"{_row_name(scope, n, page)}: {row!r:.200}") from exc
            if currency and currency != self.currency:
                raise AzureCostError(
                    f"{scope.scope}: cost in {currency}, but the config's currency is"
                    f" {self.currency}"
                )
            labels = CostLabels(
                provider=PROVIDER,
                account=scope.account,
                service_category=category_of(service, self.settings.service_categories),
                service=service,
                team=team or metrics.UNTAGGED_TEAM,
                project="",
                environment="",
            )
            out.append(DailyCost(labels, day, cost))
        return out


def _page_fields(
    scope: AzureScope, result: Any, page: int
) -> tuple[list[Any], list[Any], str | None]:
    """columns, rows and nextLink of a Query page. The SDK deserialises each field when
    it is first read, and a row that is not a list fails there without a message: the
    raw JSON (the SDK's models are mappings of it) then says which row."""
    try:
        props = result.properties
        if props is None:
            raise AzureCostError(f"{scope.scope}: Query response page {page} without properties")
        return props.columns or [], props.rows or [], props.next_link
    except (ValueError, TypeError) as exc:
        raw = result.get("properties") if isinstance(result, Mapping) else None
        raw_rows = raw.get("rows") if isinstance(raw, Mapping) else None
        for n, row in enumerate(raw_rows if isinstance(raw_rows, list) else []):
            if not isinstance(row, list):
                raise _not_a_row(scope, n, page, row) from exc
        raise AzureCostError(
            f"{scope.scope}: unreadable Query response page {page}: a field is not of the"
            f" documented type ({_short(str(exc)) or type(exc).__name__})"
        ) from exc


def _row_name(scope: AzureScope, n: int, page: int) -> str:
    return f"{scope.scope}: bad Query row {n} of page {page}"


def _not_a_row(scope: AzureScope, n: int, page: int, row: Any) -> AzureCostError:
    return AzureCostError(
        f"{_row_name(scope, n, page)}: a JSON {_json_kind(row)}, not a list of column"
        f" values: {row!r:.200}"
    )


def _json_kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "null" if value is None else "boolean"
    kinds = {dict: "object", str: "string", int: "number", float: "number"}
    return kinds.get(type(value), type(value).__name__)


def _short(text: str | None, limit: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
