"""The `sources.azure_tokens` section of aispend.yaml.

    sources:
      azure_tokens:
        workspace_id: 00000000-0000-0000-0000-000000000000   # Log Analytics (APIM logs)
        subscriptions:                # APIM subscription id -> owner (checked first)
          search-ranker: {team: search, agent: rerank-agent}
        products:                     # APIM product id -> owner (subscription not mapped)
          research-llm: {team: research, project: evals}
        metrics_endpoint: https://eastus.metrics.monitor.azure.com    # regional
        # metrics_audience: https://metrics.monitor.azure.com  # default: from the endpoint
        openai_resources:             # Azure OpenAI accounts whose metrics are read
          - {id: /subscriptions/.../providers/Microsoft.CognitiveServices/accounts/aoai-prod,
             team: support}
        deployments: {gpt4o-prod: gpt-4o}                   # deployment -> model, for pricing
        settle_delay_seconds: 300
        state_file: /var/lib/aispend/tokens-state.json

At least one of workspace_id and openai_resources is required (nothing to read otherwise).

In another cloud, give that cloud's endpoints (e.g. logs_endpoint
https://api.loganalytics.us, metrics_endpoint https://usgovvirginia.metrics.monitor.azure.us):
tokens are asked for the audience of each (for the metrics endpoint, its host without
the region, unless `metrics_audience` says otherwise), and the credential must sign in
at that cloud's authority (AZURE_AUTHORITY_HOST).

Records are counted once: only data older than the settle delay is read, and the
watermark (up to where each source was counted) and the totals live in `state_file`.
Each request must reach aispend through one source: an Azure OpenAI resource's
metrics count every token it served, including traffic that came through the gateway
or through APIM (the logs above), so `openai_resources` lists only resources that
nothing else meters; otherwise spend and budgets count those tokens twice.
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from aispend.configbase import Name, StrictModel

DEFAULT_METRIC_NAMES = ("ProcessedPromptTokens", "GeneratedTokens")
TOKEN_TYPE_OF_METRIC = {
    "processedprompttokens": "input",
    "inputtokens": "input",
    "generatedtokens": "output",
    "outputtokens": "output",
    "cachereadinputtokens": "cached_input",
}
"""Azure OpenAI token metrics (names matched case-insensitively) -> token type."""


def default_metrics_audience(endpoint: str) -> str:
    """The Entra ID audience of a metrics data-plane endpoint.

    `https://<region>.metrics.monitor.<cloud>` -> `https://metrics.monitor.<cloud>`, the
    audience Azure Monitor metrics takes tokens for in each cloud (azure.com, azure.us,
    azure.cn); any other host, its own origin. azure-monitor-querymetrics' MetricsClient
    asks for the public cloud's audience unless told, whatever the endpoint.
    """
    split = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    region, _, rest = (split.hostname or "").partition(".")
    if region and rest.startswith("metrics.monitor."):
        return f"https://{rest}"
    return f"{split.scheme}://{split.netloc}"


class Owner(StrictModel):
    team: Name
    project: Name | None = None
    agent: Name | None = None


class OpenAIResource(StrictModel):
    id: Annotated[str, Field(pattern=r"^/subscriptions/[^/]+/.+")]
    team: Name | None = None
    project: Name | None = None

    @field_validator("id")
    @classmethod
    def _canonical(cls, value: str) -> str:
        """Without a trailing slash, as Azure Monitor names the resource in its answers
        (one written with it failed every poll: the answer seemed to lack it)."""
        return value.rstrip("/")


class AzureTokensSettings(StrictModel):
    workspace_id: str | None = None
    logs_endpoint: str = "https://api.loganalytics.io"
    subscriptions: dict[str, Owner] = {}
    products: dict[str, Owner] = {}
    metrics_endpoint: str | None = None
    metrics_audience: str | None = None
    """Entra ID audience of metrics_endpoint's tokens (default: default_metrics_audience)."""
    openai_resources: list[OpenAIResource] = []
    metric_names: Annotated[list[str], Field(min_length=1)] = list(DEFAULT_METRIC_NAMES)
    deployments: dict[str, str] = {}
    settle_delay_seconds: Annotated[int, Field(ge=0)] = 300
    poll_interval_seconds: Annotated[int, Field(ge=1, le=86400)] = 60
    initial_lookback_seconds: Annotated[int, Field(ge=60)] = 3600
    """How far back the first run (no state file yet) starts counting."""
    max_ingestion_lag_seconds: Annotated[int, Field(ge=60)] = 86400
    """Log records ingested later than this after they were generated are not seen."""
    max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    state_file: str = "aispend-tokens-state.json"

    @field_validator("workspace_id")
    @classmethod
    def _workspace(cls, value: str | None) -> str | None:
        """A blank id (an unset environment variable in a template) read no logs, silently."""
        if value is not None and not value.strip():
            raise ValueError(
                "must not be empty: give the Log Analytics workspace id, or leave"
                " workspace_id out to read no APIM logs"
            )
        return value.strip() if value is not None else None

    @field_validator("metric_names")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        """Each a token metric, one per token type: two (ProcessedPromptTokens and
        InputTokens) would count the same tokens twice; an unknown one, none."""
        by_type: dict[str, str] = {}
        for name in names:
            token_type = TOKEN_TYPE_OF_METRIC.get(name.lower())
            if token_type is None:
                known = ", ".join(sorted(TOKEN_TYPE_OF_METRIC))
                raise ValueError(f"{name!r} is not a token metric (known, any case: {known})")
            if token_type in by_type:
                raise ValueError(
                    f"{by_type[token_type]!r} and {name!r} both count {token_type} tokens:"
                    " they would be counted twice; keep one"
                )
            by_type[token_type] = name
        return names

    @field_validator("openai_resources")
    @classmethod
    def _distinct_resources(cls, resources: list[OpenAIResource]) -> list[OpenAIResource]:
        """A resource listed twice would be read twice (its tokens doubled), with one
        owner silently winning."""
        first: dict[str, int] = {}
        for j, resource in enumerate(resources):
            i = first.setdefault(resource.id.lower().rstrip("/"), j)
            if i != j:
                raise ValueError(
                    f"openai_resources[{j}] is openai_resources[{i}] again"
                    " (Azure resource ids ignore case)"
                )
        return resources

    @model_validator(mode="after")
    def _something_to_read(self) -> AzureTokensSettings:
        """Without either the exporter would start, read nothing and export no series."""
        if self.workspace_id is None and not self.openai_resources:
            raise ValueError(
                "nothing to read: configure workspace_id (APIM gateway logs in Log"
                " Analytics) and/or openai_resources (Azure OpenAI token metrics)"
            )
        return self

    @model_validator(mode="after")
    def _first_window(self) -> AzureTokensSettings:
        """The first poll reads [now - initial_lookback, now - settle delay): empty, it
        never set a watermark, and nothing was ever read."""
        if self.initial_lookback_seconds < self.settle_delay_seconds + 60:
            raise ValueError(
                "initial_lookback_seconds must be at least settle_delay_seconds + 60: the"
                " first poll reads from now - initial_lookback_seconds to now -"
                " settle_delay_seconds"
            )
        return self

    @model_validator(mode="after")
    def _endpoint_for_metrics(self) -> AzureTokensSettings:
        if self.openai_resources and not self.metrics_endpoint:
            raise ValueError(
                "metrics_endpoint is required with openai_resources (the regional endpoint, "
                "e.g. https://eastus.metrics.monitor.azure.com)"
            )
        return self

    def owner(self, subscription: str, product: str) -> Owner | None:
        return self.subscriptions.get(subscription) or self.products.get(product)
