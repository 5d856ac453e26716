"""Azure OpenAI resource metrics: tokens per deployment per minute, priced by model.

Uses azure-monitor-querymetrics' `MetricsClient` (the successor of the metrics client
that azure-monitor-query 2.0 dropped; it calls the regional data-plane batch API
`metrics:getBatch`, which serves many resources in one call and has far higher limits
than the ARM metrics API that azure-mgmt-monitor wraps). Metrics `ProcessedPromptTokens`
and `GeneratedTokens` (configurable: `InputTokens`, `OutputTokens`,
`cacheReadInputTokens` where the resource has them), Total at PT1M, split by the
`ModelDeploymentName` dimension (matched case-insensitively).

Only minute buckets with start in [watermark, now - settle delay) are counted, each
once. Cache reads are a part of the prompt tokens, so input = prompt - cached.

With a dimension filter the API returns at most `top` series per resource and metric
(10 when not given): the query asks for MAX_SERIES, and an answer that reaches it fails
the poll (it may be cut short) rather than count some deployments and move on.

A 200 answer may still carry a failed metric: its `errorCode` is not "Success" and it
has no series. The SDK's `Metric` drops errorCode, so that would read as a window with
no traffic; the raw answer is checked instead, and such a poll fails.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from aispend.exporters.tokens.settings import TOKEN_TYPE_OF_METRIC, AzureTokensSettings
from aispend.exporters.tokens.usage import SourceError, Usage, token_count
from aispend.metrics import UNATTRIBUTED_TEAM

SOURCE = "azure_openai_metrics"
NAMESPACE = "Microsoft.CognitiveServices/accounts"
DEPLOYMENT_DIMENSION = "ModelDeploymentName"
BATCH = 50  # resource ids per metrics:getBatch call
MAX_SERIES = 1000  # `top`: deployments per resource and metric (the default is 10)


def resource_of_metric(metric_id: str) -> str:
    """Lowercase resource id of `<resource>/providers/Microsoft.Insights/metrics/<name>`."""
    return metric_id.lower().split("/providers/microsoft.insights/metrics/")[0]


def refuse_failed_metrics(response: Any) -> None:
    """azure-core response hook: a SourceError for a metric the answer says failed."""
    if response.http_response.status_code != 200:
        return  # the SDK raises for an error status
    try:
        body = response.http_response.json()
    except ValueError:
        return  # the SDK reports a body it cannot read
    results = body.get("values") if isinstance(body, dict) else None
    for result in results if isinstance(results, list) else []:
        metrics = result.get("value") if isinstance(result, dict) else None
        for metric in metrics if isinstance(metrics, list) else []:
            code = metric.get("errorCode") if isinstance(metric, dict) else None
            if code not in (None, "Success"):
                name = metric.get("name")
                name = name.get("value") if isinstance(name, dict) else name
                raise SourceError(
                    f"{result.get('resourceid', '?')}: metric {name} failed in Azure Monitor:"
                    f" {code}: {metric.get('errorMessage') or 'no message'}"
                )


class AoaiMetricsSource:
    name = SOURCE

    def __init__(self, client: Any, settings: AzureTokensSettings):
        self._client = client
        self._settings = settings

    def fetch(self, start: datetime, end: datetime) -> list[Usage]:
        settings = self._settings
        owners = {r.id.lower(): r for r in settings.openai_resources}
        by_sub: dict[str, list[str]] = defaultdict(list)
        for r in settings.openai_resources:
            by_sub[r.id.split("/")[2].lower()].append(r.id)
        # (resource id, deployment) -> token type -> tokens
        sums: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        answered: set[tuple[str, str]] = set()
        for ids in by_sub.values():
            for i in range(0, len(ids), BATCH):
                results = self._client.query_resources(
                    resource_ids=ids[i : i + BATCH],
                    metric_namespace=NAMESPACE,
                    metric_names=list(settings.metric_names),
                    timespan=(start, end),
                    granularity=timedelta(minutes=1),
                    aggregations=["Total"],
                    filter=f"{DEPLOYMENT_DIMENSION} eq '*'",
                    max_results=MAX_SERIES,
                    raw_response_hook=refuse_failed_metrics,
                )
                for result in results:
                    answered |= self._add(result, start, end, sums)
        _check_answered(settings, answered)
        out = []
        for (resource_id, deployment), counts in sorted(sums.items()):
            resource = owners.get(resource_id.lower())
            team = (resource.team if resource else None) or UNATTRIBUTED_TEAM
            project = (resource.project if resource else None) or ""
            cached = counts.get("cached_input", 0)
            out.append(
                Usage(
                    team,
                    project,
                    "",
                    settings.deployments.get(deployment, deployment),
                    input=max(0, counts.get("input", 0) - cached),
                    output=counts.get("output", 0),
                    cached_input=cached,
                )
            )
        return out

    @staticmethod
    def _add(
        result: Any, start: datetime, end: datetime, sums: dict[tuple[str, str], dict[str, int]]
    ) -> set[tuple[str, str]]:
        """Add one resource's answer to `sums`; the (resource, metric) pairs it answered."""
        answered: set[tuple[str, str]] = set()
        for metric in result.metrics:
            resource_id = resource_of_metric(str(metric.id or ""))
            answered.add((resource_id, str(metric.name).lower()))
            token_type = TOKEN_TYPE_OF_METRIC.get(str(metric.name).lower())
            if token_type is None:
                continue
            if len(metric.timeseries) >= MAX_SERIES:
                raise SourceError(
                    f"{resource_id}: {metric.name} answered {len(metric.timeseries)} deployment"
                    f" series, the most one query returns: the answer may be cut short"
                )
            for series in metric.timeseries:
                dims = {k.lower(): v for k, v in (series.metadata_values or {}).items()}
                deployment = str(dims.get(DEPLOYMENT_DIMENSION.lower()) or "")
                for point in series.data:
                    if point.total is None or not start <= point.timestamp < end:
                        continue
                    sums[(resource_id, deployment)][token_type] += token_count(
                        point.total, f"Azure Monitor metric {metric.name}"
                    )
        return answered


def _check_answered(settings: AzureTokensSettings, answered: set[tuple[str, str]]) -> None:
    """A SourceError when the answers lack a metric of a resource asked for: a resource
    left out of a batch answer would read as a window without traffic, counted as 0 and
    never read again. (A metric without traffic is answered, with no series.)"""
    for resource in settings.openai_resources:
        for name in settings.metric_names:
            if (resource.id.lower(), name.lower()) not in answered:
                raise SourceError(
                    f"{resource.id}: the Azure Monitor answer has no {name}: not counting"
                    " this window"
                )
