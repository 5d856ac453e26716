"""The metric contract in aispend/metrics.py follows the naming conventions, and
docs/metrics.md is exactly what it generates."""

from __future__ import annotations

import re

from aispend import metrics
from aispend.docs import render_metrics_md
from tests.conftest import REPO

NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


def test_names_are_unique_prefixed_and_well_formed():
    names = [m.name for m in metrics.ALL_METRICS]
    assert len(names) == len(set(names))
    for m in metrics.ALL_METRICS:
        assert NAME_RE.match(m.name), m.name
        assert m.name.startswith(("aispend_", "gen_ai_")), m.name
        assert (m.type == "counter") == m.name.endswith("_total"), m.name
        if m.type == "info":
            assert m.name.endswith("_info"), m.name
        if m.unit == metrics.MONEY:
            assert "cost" in m.name or m.name == "aispend_budget", m.name
            assert "reporting currency" in m.full_help
        if m.unit == "ratio":
            assert m.name.endswith("_ratio"), m.name
        if m.unit in ("seconds", "bytes", "watts", "joules", "celsius"):
            assert m.unit in m.name, m.name
        for label in m.labels:
            assert not re.search(r"[a-z][A-Z]", label), f"camelCase label {label} in {m.name}"
        assert m.help.endswith("."), m.name


def test_family_names_strip_the_suffix_prometheus_client_adds():
    assert metrics.LLM_COST.family_name == "aispend_llm_cost"
    assert metrics.TEAM_INFO.family_name == "aispend_team"
    assert metrics.BUDGET.family_name == "aispend_budget"


def test_docs_metrics_md_is_generated_from_the_contract():
    committed = (REPO / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert committed == render_metrics_md(), "run `make generate` and commit docs/metrics.md"
    for m in metrics.ALL_METRICS:
        assert f"`{m.name}`" in committed
