"""Tokens exporter: Azure token usage that bypasses the aispend gateway, priced.

Modules: `settings` (the `sources.azure_tokens` section), `apim_logs` (APIM LLM gateway
logs through azure-monitor-query's LogsQueryClient), `aoai_metrics` (Azure OpenAI
resource metrics through azure-monitor-querymetrics' MetricsClient), `watermark`
(counted-up-to times and totals, persisted atomically), `collector` (the background
poller and Prometheus collector), `cli` (`aispend exporter tokens`).
"""

from aispend.exporters.tokens.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
