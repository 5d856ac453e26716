"""APIM AI gateway logs: per-request tokens from Log Analytics, attributed to teams.

One KQL query per poll, through azure-monitor-query's `LogsQueryClient`:
`ApiManagementGatewayLlmLog` (PromptTokens, CompletionTokens, ModelName,
DeploymentName) joined on CorrelationId to `ApiManagementGatewayLogs` for the caller
(ApimSubscriptionId, ProductId), summed per caller and model in the workspace.

Windows are by `ingestion_time()`, not TimeGenerated: a record that arrives late is
counted in the window in which it was ingested, so consecutive windows
[watermark, now - settle delay) count every record exactly once, however late it came
(up to `max_ingestion_lag_seconds`, which bounds the TimeGenerated scan).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from aispend.exporters.tokens.settings import AzureTokensSettings
from aispend.exporters.tokens.usage import SourceError, Usage, token_count
from aispend.metrics import UNATTRIBUTED_TEAM

SOURCE = "azure_apim"

QUERY = """ApiManagementGatewayLlmLog
| where ingestion_time() >= datetime({start}) and ingestion_time() < datetime({end})
| join kind=leftouter (
    ApiManagementGatewayLogs
    | where TimeGenerated >= datetime({scan_start})
    | distinct CorrelationId, ApimSubscriptionId, ProductId
  ) on CorrelationId
| summarize PromptTokens = sum(PromptTokens), CompletionTokens = sum(CompletionTokens)
    by ApimSubscriptionId, ProductId, ModelName, DeploymentName"""

LOGS_RESULT = "Log Analytics result"


def _iso(t: datetime) -> str:
    """A KQL datetime literal: `t` converted to UTC, which the `Z` says it is."""
    if t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no UTC offset")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_query(start: datetime, end: datetime, scan_start: datetime) -> str:
    return QUERY.format(start=_iso(start), end=_iso(end), scan_start=_iso(scan_start))


class ApimLogsSource:
    name = SOURCE

    def __init__(self, client: Any, settings: AzureTokensSettings):
        self._client = client
        self._settings = settings

    def fetch(self, start: datetime, end: datetime) -> list[Usage]:
        from azure.monitor.query import LogsQueryStatus

        settings = self._settings
        assert settings.workspace_id is not None
        scan_start = start - timedelta(seconds=settings.max_ingestion_lag_seconds)
        response = self._client.query_workspace(
            settings.workspace_id,
            build_query(start, end, scan_start),
            timespan=(scan_start, end),
        )
        if response.status != LogsQueryStatus.SUCCESS:
            error = getattr(response, "partial_error", None)
            raise SourceError(f"Log Analytics answered a partial result: {error}")
        if not response.tables:
            return []
        sums: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for row in response.tables[0].rows:
            owner = settings.owner(row["ApimSubscriptionId"] or "", row["ProductId"] or "")
            team, project, agent = (
                (owner.team, owner.project or "", owner.agent or "")
                if owner
                else (UNATTRIBUTED_TEAM, "", "")
            )
            deployment = row["DeploymentName"] or ""
            model = row["ModelName"] or settings.deployments.get(deployment) or deployment
            acc = sums[(team, project, agent, model)]
            acc[0] += token_count(row["PromptTokens"], LOGS_RESULT)
            acc[1] += token_count(row["CompletionTokens"], LOGS_RESULT)
        return [
            Usage(team, project, agent, model, input=i, output=o)
            for (team, project, agent, model), (i, o) in sums.items()
        ]
