"""Grafana dashboards as code: shared defaults, PromQL, panel helpers and the generator.

The dashboards themselves live in `dashboards/*.dashboard.py` at the repository root;
`aispend dashboards generate` turns them into the committed `dashboards/*.json` and
renders `docs/dashboards.md`.
"""
