"""Config sections of the billing exporter: `sources.azure_cost` and `sources.focus`.

sources:
  azure_cost:
    scopes:
      - {scope: subscriptions/00000000-0000-0000-0000-000000000000, name: prod}
    cost_type: ActualCost            # or AmortizedCost
    team_tag: team
    refresh_interval_seconds: 14400  # data lands about every 4 h
    credential: {kind: default}      # or client_secret / managed_identity
  focus:
    paths: [/data/exports/focus/*.parquet]
    cost_column: EffectiveCost       # or BilledCost
    tags: {team: team, project: project, environment: environment}
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from aispend.configbase import StrictModel

CostColumn = Literal["EffectiveCost", "BilledCost"]

_SCOPE_RE = re.compile(
    r"^(subscriptions/[^/]+(/resourceGroups/[^/]+)?"
    r"|providers/Microsoft\.Billing/billingAccounts/[^/]+(/.+)?"
    r"|providers/Microsoft\.Management/managementGroups/[^/]+)$",
    re.IGNORECASE,
)
_TAG_KEY_RE = re.compile(r"^[^\"\\\x00-\x1f]{1,512}$")

Seconds = Annotated[float, Field(ge=60, le=7 * 86400)]
"""A refresh interval: at least a minute, at most a week (inf, or past the largest wait
a thread can do, loaded and then ended the refresher)."""


def _tag_key(value: str) -> str:
    if not _TAG_KEY_RE.fullmatch(value):
        raise ValueError("must be a tag key of 1-512 characters without quotes or backslashes")
    return value


class AzureScope(StrictModel):
    """One Cost Management scope; `name` becomes the `account` label (default: the scope)."""

    scope: str
    name: str | None = None

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, value: str) -> str:
        value = value.strip().strip("/")
        if not _SCOPE_RE.fullmatch(value):
            raise ValueError(
                "must be a Cost Management scope: subscriptions/<id>,"
                " subscriptions/<id>/resourceGroups/<name>,"
                " providers/Microsoft.Billing/billingAccounts/<id>[/...] or"
                " providers/Microsoft.Management/managementGroups/<id>"
            )
        return value

    @property
    def account(self) -> str:
        return self.name or self.scope


class AzureCredential(StrictModel):
    """How to authenticate: DefaultAzureCredential, a client secret, or a managed identity."""

    kind: Literal["default", "client_secret", "managed_identity"] = "default"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_file: Path | None = None
    """File holding the client secret (never the secret itself in aispend.yaml)."""

    @model_validator(mode="after")
    def _complete(self) -> AzureCredential:
        if self.kind == "client_secret":
            missing = [
                name
                for name in ("tenant_id", "client_id", "client_secret_file")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"kind client_secret needs {', '.join(missing)}")
        return self


class AzureCostSettings(StrictModel):
    """Azure Cost Management Query API: daily cost since the previous month began."""

    scopes: list[AzureScope] = Field(min_length=1)
    cost_type: Literal["ActualCost", "AmortizedCost"] = "ActualCost"
    team_tag: Annotated[str, Field(min_length=1)] = "team"
    refresh_interval_seconds: Seconds = 4 * 3600.0
    credential: AzureCredential = AzureCredential()
    endpoint: str | None = None
    """Resource Manager endpoint (default: the public cloud's, from azure-core), e.g.
    https://management.usgovcloudapi.net or https://management.chinacloudapi.cn. Tokens
    are asked for that cloud (the SDK's scope for a known cloud, else `<endpoint>/.default`);
    the credential must sign in at that cloud's authority too (AZURE_AUTHORITY_HOST)."""
    ca_file: Path | None = None
    """CA bundle to verify the endpoint with (default: the system's)."""
    max_retries: Annotated[int, Field(ge=0, le=10)] = 4
    max_retry_wait_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0
    """A 429 that asks for a longer wait than this fails the refresh instead of blocking."""
    service_categories: dict[str, str] = {}
    """ServiceName -> FOCUS ServiceCategory, on top of the built-in table."""

    @field_validator("team_tag")
    @classmethod
    def _tag(cls, value: str) -> str:
        return _tag_key(value)

    @field_validator("scopes")
    @classmethod
    def _no_overlap(cls, scopes: list[AzureScope]) -> list[AzureScope]:
        """Each scope's cost is added up: a scope listed twice, or inside another one
        (a resource group of a listed subscription), would be counted twice."""
        folded = [s.scope.lower() for s in scopes]
        for j, inner in enumerate(folded):
            for i, outer in enumerate(folded[:j]):
                if inner == outer:
                    raise ValueError(f"scopes[{j}] is scopes[{i}] again (scopes ignore case)")
                if inner.startswith(outer + "/") or outer.startswith(inner + "/"):
                    raise ValueError(
                        f"scopes[{i}] and scopes[{j}] overlap (one is inside the other):"
                        " their common cost would be counted twice"
                    )
        return scopes


_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def remote_url_error(path: str) -> str | None:
    """Why `path` cannot be read if it is a URL (`https://`, `s3://`, `abfss://`), else
    None. The message shows the URL without its query, fragment and user info, where a
    SAS token or a password would be."""
    if not _URL_RE.match(path):
        return None
    try:
        split = urllib.parse.urlsplit(path)
        shown = f"{split.scheme}://{split.netloc.rpartition('@')[2]}{split.path}"
    except ValueError:  # e.g. a bad IPv6 host
        shown = path.partition("://")[0] + "://..."
    return (
        f"{shown} is a URL: remote exports are not read; download the export first"
        " (azcopy copy, aws s3 cp, gcloud storage cp) and give its local path or glob"
    )


def _local_path(path: str) -> str:
    error = remote_url_error(path)
    if error:
        raise ValueError(error)
    return path


class FocusTags(StrictModel):
    """Which `Tags` keys hold the team, project and environment."""

    team: str = "team"
    project: str = "project"
    environment: str = "environment"

    @field_validator("team", "project", "environment")
    @classmethod
    def _tag(cls, value: str) -> str:
        return _tag_key(value)


class FocusSettings(StrictModel):
    """FOCUS cost exports (CSV, CSV.gz or Parquet), by local path or glob."""

    # A rejected path may be a URL with a SAS token: never in pydantic's error text.
    model_config = ConfigDict(hide_input_in_errors=True)

    paths: list[Annotated[str, Field(min_length=1), AfterValidator(_local_path)]] = Field(
        min_length=1
    )
    cost_column: CostColumn = "EffectiveCost"
    tags: FocusTags = FocusTags()
    refresh_interval_seconds: Seconds = 3600.0
    resource_series: bool = False
    """Also export cost per ResourceId (off by default: cardinality)."""
    max_resources: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """With resource_series: the costliest N resources; the rest fold into `other`."""
