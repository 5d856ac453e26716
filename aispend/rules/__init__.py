"""Rules as code: generates the Prometheus recording and alerting rules of aispend.

Stages, each its own module (sloth's layout):

- `tunables`  thresholds, windows and factors as data (pydantic, overridable from YAML)
- `promql`    small PromQL builders: the combined LLM + GPU spend expression, windows
- `spend`     recording rules: spend rates, spend so far today / this month, GPU series,
              budget pace and burn rates, forecast, reconciliation with the bill
- `anomaly`   recording rules: baselines with fallbacks, seasonal predictions, z-scores
- `alerts`    alerting rules (with their runbook text)
- `render`    YAML with a DO NOT EDIT header and stable order; docs/runbooks.md
- `cli`       `aispend rules generate [--out DIR] [--tunables FILE]`

Recorded series names are spelled once, in `aispend.metrics` (section "Rules").
"""
