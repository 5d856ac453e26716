"""Backtest: replay spend history through aispend's real rules and score the alerts.

Stages, one module each:
- `history`: read a spend history (CSV, FOCUS daily, or a Prometheus TSDB dir).
- `openmetrics`: turn it into the series the rules read (a cost counter per team plus
  budgets and team info), as OpenMetrics text with timestamps.
- `rulefiles`: read the generated rule files and order recording rules by dependency.
- `tsdb`: build a temporary TSDB (promtool backfill of the history, then of the
  recording rules) and run a temporary real Prometheus over it.
- `evaluate`: `query_range` every alert expression, honouring `for:`, into episodes.
- `labels` / `scoring`: incident windows (NAB shape) and detection scores.
- `baselines`: the two common-practice detectors scored by the same scorer.
- `report` / `cli`: the table, `--json`, and `aispend backtest`.
"""
