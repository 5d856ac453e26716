"""The generated dashboards: valid JSON, stable, complete, and every query parses.

Parsing uses the real promtool (`promtool check rules` on a throwaway rules file with
each panel query as a recording rule, after substituting Grafana's variables).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aispend.dashboards import refs
from aispend.dashboards.defaults import DATASOURCE, TITLES, UIDS
from aispend.dashboards.docs import panels, render
from aispend.dashboards.generate import build_all, sources, stem_of
from aispend.rules.tunables import Tunables
from tests.conftest import REPO, file_size_limit, require_binary
from tests.dashboards.panels import DASHBOARDS, all_queries, concrete, dashboard_files, load

MODERN_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "piechart", "heatmap"}


def test_one_json_per_source_and_six_dashboards() -> None:
    stems = [stem_of(p) for p in sources(DASHBOARDS)]
    assert sorted(stems) == sorted(UIDS)
    assert [p.stem for p in dashboard_files()] == sorted(stems)


def test_generated_json_equals_committed_json() -> None:
    """Golden check: regenerating changes nothing (run `make generate` if it fails)."""
    for item in build_all(DASHBOARDS):
        committed = (DASHBOARDS / f"{item.stem}.json").read_text(encoding="utf-8")
        assert committed == item.text, f"dashboards/{item.stem}.json is stale"
    docs = (REPO / "docs" / "dashboards.md").read_text(encoding="utf-8")
    assert docs == render(build_all(DASHBOARDS)), "docs/dashboards.md is stale"


def test_json_is_sorted_and_stable() -> None:
    for path in dashboard_files():
        text = path.read_text(encoding="utf-8")
        assert (
            text
            == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        )


def test_uids_are_unique_and_stable() -> None:
    uids = [load(p)["uid"] for p in dashboard_files()]
    assert len(uids) == len(set(uids)) == 6
    assert {load(p)["uid"] for p in dashboard_files()} == set(UIDS.values())
    for path in dashboard_files():
        assert load(path)["uid"] == UIDS[path.stem]


def test_panel_refs_name_panels_of_their_dashboard() -> None:
    """What the runbooks cite (aispend/dashboards/refs.py) exists in the generated JSON."""
    t = Tunables()
    cited = [*refs.ALL, refs.idle_gpus(t.gpu_idle_threshold, t.gpu_idle_for)]
    titles = {p.stem: {panel["title"] for panel in panels(load(p))} for p in dashboard_files()}
    for ref in cited:
        assert ref.title in titles[ref.stem], ref
    for path in dashboard_files():
        assert load(path)["title"] == TITLES[path.stem]
    with pytest.raises(ValueError):
        refs.cite(refs.SPEND_BY_TEAM, refs.MEMORY_PER_GPU)


def test_every_panel_has_modern_type_description_unit_and_queries() -> None:
    count = 0
    for path in dashboard_files():
        data = load(path)
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels(data):
            count += 1
            where = f"{path.name}: {panel['title']!r}"
            assert panel["type"] in MODERN_TYPES, where
            assert panel["description"], where
            assert panel["fieldConfig"]["defaults"]["unit"], f"{where} has no unit"
            assert panel["datasource"] == DATASOURCE, where
            assert panel["targets"], f"{where} has no query"
            for target in panel["targets"]:
                assert target["expr"].strip(), where
                assert target["datasource"] == DATASOURCE, where
    assert count >= 60


def test_dashboards_are_tagged_linked_and_variable_driven() -> None:
    for path in dashboard_files():
        data = load(path)
        assert data["tags"] == ["aispend"]
        assert data["editable"] is False
        assert data["links"][0]["tags"] == ["aispend"] and data["links"][0]["includeVars"]
        names = [v["name"] for v in data["templating"]["list"]]
        assert names[0] == "datasource"
        assert data["templating"]["list"][0]["type"] == "datasource"
        for panel in panels(data):
            for target in panel["targets"]:
                for var in ("team", "project", "model"):
                    if f"${var}" in target["expr"] or f"${{{var}:" in target["expr"]:
                        assert var in names, f"{path.name}: {panel['title']} uses ${var}"


def test_no_metric_name_is_spelled_in_the_dashboard_sources() -> None:
    from aispend import metrics as m

    names = [s.name for s in m.ALL_METRICS] + [r.name for r in m.RECORDED_SERIES]
    for source in sources(DASHBOARDS):
        text = source.read_text(encoding="utf-8")
        for name in names:
            assert name not in text, f"{source.name} spells {name}; import it from metrics.py"


def test_concrete_refuses_unknown_variables() -> None:
    assert concrete('x{team=~"$team"}[$__rate_interval]') == 'x{team=~".*"}[5m]'
    with pytest.raises(KeyError, match=r"\$nope"):
        concrete('x{a=~"$nope"}')


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    queries = list(all_queries())
    rules = [
        {"record": f"dashboard:query:{i}", "expr": concrete(q.expr)} for i, q in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """The parse check can fail: a query with an unbalanced bracket is refused."""
    promtool = require_binary("promtool")
    path = tmp_path / "bad.yml"
    rule = {"record": "dashboard:query:0", "expr": concrete("sum(rate(x[$__rate_interval])")}
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": [rule]}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 1


def _promtool_expr_test(
    tmp_path: Path,
    series: list[dict[str, str]],
    cases: list[dict[str, Any]],
    rule_files: tuple[Path, ...] = (),
) -> None:
    """Evaluate panel queries over input series with `promtool test rules` (1m samples),
    with `rule_files` (e.g. the generated recording rules) evaluated first."""
    test = {
        "rule_files": [str(p) for p in rule_files],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": cases}],
    }
    path = tmp_path / "panels.test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run(
        [require_binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_chargeback_tokens_do_not_count_reasoning_twice(tmp_path: Path) -> None:
    """Reasoning tokens are also in `output`: 100 input + 50 output (20 of it reasoning)
    is 150 tokens. Evaluated by promtool over input series."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    workload = 'team="search",project="ranking",agent="rerank-agent"'
    series = [
        {
            "series": f'{m.LLM_TOKENS.name}{{{workload},model="gpt-4o",token_type="{kind}"}}',
            "values": f"0+{n}x60",
        }
        for kind, n in (("input", 100), ("output", 50), ("reasoning", 20))
    ]
    info = f'{m.TEAM_INFO.name}{{team="search",cost_center="cc-42"}}'
    series.append({"series": info, "values": "1x60"})
    expr = concrete(q.chargeback("tokens"), {"__range": "1h"})
    expected = {"labels": f'{{{workload},cost_center="cc-42"}}', "value": 9000}  # 150/min
    _promtool_expr_test(
        tmp_path,
        series,
        [{"expr": f"round({expr})", "eval_time": "60m", "exp_samples": [expected]}],
    )


def test_chargeback_spend_has_dcgm_gpus_and_teams_without_a_cost_centre(tmp_path: Path) -> None:
    """Search (cost centre cc-42) spends 1/min on LLM tokens; unattributed spends 2/min
    and has no team info row; research's dcgm-exporter GPU costs 0.05/s (180/h), known
    only as a recorded rate. Over the hour each keeps its own row. The GPU's rate is
    integrated at 60 one-minute steps (the 1m subquery at a whole minute took both ends
    of the range in Prometheus 2.x: 61 steps, 183)."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    llm = m.LLM_COST.name
    gpu = 'gpu="0",UUID="GPU-1",model_name="H100",Hostname="n1",team="research"'
    series = [
        {"series": f'{llm}{{team="search",project="ranking",agent="a",source="gateway"}}',
         "values": "0+1x70"},
        {"series": f'{llm}{{team="unattributed",project="",agent="",source="gateway"}}',
         "values": "0+2x70"},
        {"series": f'{m.TEAM_INFO.name}{{team="search",cost_center="cc-42"}}', "values": "1x70"},
        {"series": f'{m.REC_GPU_COST_RATE.name}{{{gpu},project="evals",source="dcgm"}}',
         "values": "0.05x70"},
    ]  # fmt: skip
    expr = concrete(q.chargeback("spend"), {"__range": "1h"})
    expected = [
        {"labels": '{team="search",project="ranking",agent="a",cost_center="cc-42"}', "value": 60},
        {"labels": '{team="unattributed"}', "value": 120},  # empty labels are absent
        {"labels": '{team="research",project="evals"}', "value": 180},
    ]
    _promtool_expr_test(
        tmp_path,
        series,
        [{"expr": f"round({expr}, 0.001)", "eval_time": "70m", "exp_samples": expected}],
    )


def test_chargeback_counts_a_new_agents_first_request(tmp_path: Path) -> None:
    """A new agent's first scrape already shows its first requests (the gateway creates
    the label set's counters at its first request): 20 spent in 2 requests, read as
    increase() 0, and "Chargeback this month" was 20 below the month to date the rules
    record. Its `_created` series (30m) says the series is new in the range, so its
    value counts, as in spend to date. Real promtool and the generated rules; the
    gateway's series are simulated, shaped as prometheus_client exposes them."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    lab = (
        'team="growth",project="campaigns",agent="copywriter-agent",provider="openai",'
        'model="gpt-4o",source="gateway"'
    )
    req = lab.replace('source="gateway"', 'status="200"')
    series = [
        {"series": f"{m.LLM_COST.name}{{{lab}}}", "values": "_x30 20x30"},
        {"series": f"{m.LLM_COST.created_name}{{{lab}}}", "values": "_x30 1800x30"},
        {"series": f"{m.LLM_REQUESTS.name}{{{req}}}", "values": "_x30 2x30"},
        {"series": f"{m.LLM_REQUESTS.created_name}{{{req}}}", "values": "_x30 1800x30"},
        {"series": f'{m.TEAM_INFO.name}{{team="growth",cost_center="CC-5500"}}', "values": "1x60"},
    ]
    row = '{team="growth",project="campaigns",agent="copywriter-agent",cost_center="CC-5500"}'
    month = m.REC_TEAM_COST_MONTH.name
    cases = [
        {"expr": month, "eval_time": "1h",
         "exp_samples": [{"labels": f'{month}{{team="growth"}}', "value": 20}]},
        {"expr": concrete(q.chargeback("spend"), {"__range": "1h"}), "eval_time": "1h",
         "exp_samples": [{"labels": row, "value": 20}]},
        {"expr": concrete(q.chargeback("requests"), {"__range": "1h"}), "eval_time": "1h",
         "exp_samples": [{"labels": row, "value": 2}]},
    ]  # fmt: skip
    rules = REPO / "alert-rules" / "aispend.rules.yml"
    _promtool_expr_test(tmp_path, series, cases, rule_files=(rules,))


def test_spend_by_source_counts_a_source_from_when_it_starts(tmp_path: Path) -> None:
    """Over a 24h range, a source that starts 2h before its end spent 2h of its rate, not
    24h of it (a mean of the samples there are, times the range, said 24h)."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    rate = m.REC_TEAM_SOURCE_COST_RATE5M.name
    series = [
        {"series": f'{rate}{{team="search",source="gateway"}}', "values": "0.01x1440"},
        {"series": f'{rate}{{team="search",source="tokens"}}', "values": "_x1320 0.01x120"},
    ]
    expr = concrete(q.source_spend_in_range(), {"__range": "24h"})
    expected = [
        {"labels": '{source="gateway"}', "value": 864},  # 0.01/s x 86400 s (not 864.6)
        {"labels": '{source="tokens"}', "value": 72},  # 0.01/s x 7200 s (not 864)
    ]
    _promtool_expr_test(
        tmp_path,
        series,
        [{"expr": f"round({expr}, 0.001)", "eval_time": "1440m", "exp_samples": expected}],
    )


def test_forecast_against_budget_leaves_out_teams_without_a_budget(tmp_path: Path) -> None:
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    forecast = m.REC_FORECAST_MONTH_END.name
    budget = m.BUDGET.name
    series = [
        {"series": f'{forecast}{{team="search",project="",agent=""}}', "values": "80x5"},
        {"series": f'{forecast}{{team="unattributed",project="",agent=""}}', "values": "500x5"},
        {"series": f'{budget}{{team="search",project="",agent="",period="month"}}',
         "values": "100x5"},
    ]  # fmt: skip
    expr = concrete(q.forecast_vs_budget_total())
    _promtool_expr_test(
        tmp_path,
        series,
        [{"expr": expr, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 0.8}]}],
    )


def test_idle_gpu_cost_counts_dcgm_gpus(tmp_path: Path) -> None:
    """Two dcgm-exporter GPUs (recorded series only): the idle one (1 %) costs 0.001/s,
    3.6/h; the busy one is left out. The counter of aispend's exporter had neither."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    def gpu(uuid: str) -> str:
        return f'Hostname="n1",gpu="0",UUID="{uuid}",model_name="H100",team="research"'

    series = [
        {"series": f"{m.REC_GPU_UTILIZATION.name}{{{gpu('GPU-idle')}}}", "values": "0.01x10"},
        {"series": f"{m.REC_GPU_UTILIZATION.name}{{{gpu('GPU-busy')}}}", "values": "0.9x10"},
        {"series": f'{m.REC_GPU_COST_RATE.name}{{{gpu("GPU-idle")},source="dcgm"}}',
         "values": "0.001x10"},
        {"series": f'{m.REC_GPU_COST_RATE.name}{{{gpu("GPU-busy")},source="dcgm"}}',
         "values": "0.002x10"},
    ]  # fmt: skip
    expr = concrete(q.gpu_idle_cost_rate(0.05), {"team": ".*"})
    _promtool_expr_test(
        tmp_path,
        series,
        [{"expr": f"round({expr}, 0.01)", "eval_time": "5m", "exp_samples": [{"value": 3.6}]}],
    )


def test_gpu_memory_and_power_panels_show_dcgm_gpus(tmp_path: Path) -> None:
    """Raw exporter series through the generated recording rules into the panel queries.
    n1 GPU 0 is aispend's gpu exporter's (40 of 80 GB, 300 W), also seen by dcgm-exporter
    (which must not count twice); n2 GPU 0 only dcgm-exporter's (20000 of 80000 MiB,
    150 W, no team: unattributed). The panels read only aispend's metrics and left n2
    out, though AISpendGPUIdle sends on-call there for it. Real promtool; the exporter
    series are simulated (no GPU here), shaped as dcgm-exporter and aispend expose them."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    ours = 'gpu="0",UUID="GPU-a",model_name="H100",Hostname="n1",team="search",project=""'
    dcgm_a = 'gpu="0",UUID="GPU-a",modelName="H100",Hostname="n1",device="nvidia0"'
    dcgm_b = 'gpu="0",UUID="GPU-b",modelName="H100",Hostname="n2",device="nvidia0"'
    series = [
        {"series": f"{m.GPU_MEMORY_USED.name}{{{ours}}}", "values": "40e9x10"},
        {"series": f"{m.GPU_MEMORY_TOTAL.name}{{{ours}}}", "values": "80e9x10"},
        {"series": f"{m.GPU_POWER.name}{{{ours}}}", "values": "300x10"},
        *(
            {"series": f"{name}{{{labels}}}", "values": f"{value}x10"}
            for labels, used, power in ((dcgm_a, 70000, 290), (dcgm_b, 20000, 150))
            for name, value in (
                (m.DCGM_FB_USED, used),
                (m.DCGM_FB_FREE, 80000 - used),
                (m.DCGM_POWER_USAGE, power),
            )
        ),
    ]
    rules = (REPO / "alert-rules" / "aispend.rules.yml",)
    every = {"team": ".*"}
    cases = [
        {
            "expr": concrete(query, every),
            "eval_time": "5m",
            "exp_samples": [
                {"labels": '{Hostname="n1",gpu="0"}', "value": n1},
                {"labels": '{Hostname="n2",gpu="0"}', "value": n2},
            ],
        }
        for query, n1, n2 in (
            (q.gpu_memory_used_ratio(q.TEAM), 0.5, 0.25),
            (q.gpu_power(q.TEAM), 300, 150),
        )
    ]
    cases.append(
        {
            "expr": concrete(q.gpu_power(q.TEAM), {"team": m.UNATTRIBUTED_TEAM}),
            "eval_time": "5m",
            "exp_samples": [{"labels": '{Hostname="n2",gpu="0"}', "value": 150}],
        }
    )
    _promtool_expr_test(tmp_path, series, cases, rules)


def test_gpu_count_and_team_variable_have_gpus_without_utilisation(tmp_path: Path) -> None:
    """MIG-enabled GPUs have no utilisation: n1's (aispend's gpu exporter: memory only,
    no price) and n2's (dcgm-exporter: framebuffer fields only). They count as GPUs and
    their teams are in the GPU fleet dashboard's $team list, next to n3's ordinary GPU.
    Raw series through the generated recording rules, real promtool; the exporter
    series are simulated (no GPU here), shaped as aispend and dcgm-exporter expose them."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    mig = 'gpu="0",UUID="GPU-a",model_name="A100",Hostname="n1",team="research",project=""'
    dcgm = 'gpu="0",UUID="GPU-m",modelName="A100",Hostname="n2"'
    plain = 'gpu="0",UUID="GPU-p",model_name="A100",Hostname="n3",team="search",project=""'
    series = [
        {"series": f"{m.GPU_MEMORY_TOTAL.name}{{{mig}}}", "values": "80e9x10"},
        {"series": f"{m.DCGM_FB_USED}{{{dcgm}}}", "values": "40000x10"},
        {"series": f"{m.DCGM_FB_FREE}{{{dcgm}}}", "values": "40000x10"},
        {"series": f"{m.GPU_UTILIZATION.name}{{{plain}}}", "values": "0.5x10"},
    ]
    (variable,) = [
        v["query"]
        for v in load(DASHBOARDS / "gpu-fleet.json")["templating"]["list"]
        if v["name"] == "team"
    ]
    assert variable.startswith("label_values(") and variable.endswith(", team)")
    teams = f"count by (team) ({variable[len('label_values(') : -len(', team)')]})"
    cases = [
        {
            "expr": concrete(q.gpu_count(q.TEAM), {"team": ".*"}),
            "eval_time": "5m",
            "exp_samples": [{"value": 3}],
        },
        {
            "expr": teams,
            "eval_time": "5m",
            "exp_samples": [
                {"labels": f'{{team="{team}"}}', "value": 1}
                for team in ("research", m.UNATTRIBUTED_TEAM, "search")
            ],
        },
    ]
    _promtool_expr_test(tmp_path, series, cases, (REPO / "alert-rules" / "aispend.rules.yml",))


def test_bill_panels_read_backfilled_daily_samples(tmp_path: Path) -> None:
    """`aispend backfill` writes one bill sample per series per day at 00:00 UTC: at
    12:00 a plain selector (5-minute lookback) found nothing, so "Billed this month" and
    "Bill data up to" were empty on such history. Live, scraped every minute: a row that
    left the bill (the Storage row at a new month, from 30m) is not counted though its
    last sample is within the day. Real promtool; the series are simulated, shaped as
    the billing exporter and the backfill write them."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    row = 'provider="Microsoft",account="prod",team="search",service_category="{}"'
    ai, storage = row.format("AI and Machine Learning"), row.format("Storage")
    mtd, data_ts = m.CLOUD_COST_MONTH_TO_DATE.name, m.CLOUD_COST_DATA_TIMESTAMP.name
    backfilled = [  # a sample at 00:00 of two days, nothing between
        {"series": f"{mtd}{{{ai}}}", "values": "100 _x1439 110"},
        {"series": f"{mtd}{{{storage}}}", "values": "40 _x1439 45"},
        {"series": f'{data_ts}{{source="focus"}}', "values": "86400 _x1439 172800"},
    ]
    month = concrete(q.bill_month((), q.TEAM), {"team": "search"})
    by_category = concrete(q.bill_month((m.SERVICE_CATEGORY,), q.TEAM), {"team": "search"})
    _promtool_expr_test(
        tmp_path,
        backfilled,
        [
            {"expr": month, "eval_time": "12h", "exp_samples": [{"value": 140}]},
            {"expr": month, "eval_time": "1d12h", "exp_samples": [{"value": 155}]},
            {
                "expr": by_category,
                "eval_time": "12h",
                "exp_samples": [
                    {"labels": '{service_category="AI and Machine Learning"}', "value": 100},
                    {"labels": '{service_category="Storage"}', "value": 40},
                ],
            },
            {
                "expr": q.bill_data_end(),
                "eval_time": "1d12h",
                "exp_samples": [{"value": 172800000}],
            },
        ],
    )
    live = [
        {"series": f"{mtd}{{{ai}}}", "values": "100x60"},
        {"series": f"{mtd}{{{storage}}}", "values": "40x29 stale"},
    ]
    _promtool_expr_test(
        tmp_path,
        live,
        [
            {"expr": month, "eval_time": "20m", "exp_samples": [{"value": 140}]},
            {"expr": month, "eval_time": "45m", "exp_samples": [{"value": 100}]},
        ],
    )


def test_non_2xx_share_of_a_model_whose_every_request_fails_is_one(tmp_path: Path) -> None:
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    requests = m.LLM_REQUESTS.name
    series = [
        {"series": f'{requests}{{team="a",model="gpt-4o",status="200"}}', "values": "0+10x20"},
        {"series": f'{requests}{{team="a",model="gpt-4o",status="502"}}', "values": "0+10x20"},
        {"series": f'{requests}{{team="a",model="o3",status="502"}}', "values": "0+10x20"},
    ]
    expr = concrete(q.non_2xx_share((m.MODEL,)), {"team": ".*"})
    expected = [
        {"labels": '{model="gpt-4o"}', "value": 0.5},
        {"labels": '{model="o3"}', "value": 1},  # upstream down: every request failed
    ]
    _promtool_expr_test(
        tmp_path, series, [{"expr": expr, "eval_time": "10m", "exp_samples": expected}]
    )


def test_cost_per_request_counts_only_spend_that_has_requests(tmp_path: Path) -> None:
    """The tokens exporter (APIM, Azure OpenAI) exports spend but no request counter:
    its 9.00 per 5 minutes went into the numerator over the gateway's 100 requests, and
    a 0.01 request showed as 0.10. The panels' queries as generated, over series shaped
    as the gateway and the tokens exporter expose them; real promtool."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q
    from aispend.gateway.metrics import SOURCE as GATEWAY_SOURCE

    assert q.REQUEST_COUNTING_SOURCE == GATEWAY_SOURCE
    workload = 'team="search",project="ranking",model="gpt-4o"'
    series = [
        {
            "series": f'{m.LLM_COST.name}{{{workload},agent="a",source="{GATEWAY_SOURCE}"}}',
            "values": "0+0.2x60",
        },
        {
            "series": f'{m.LLM_REQUESTS.name}{{{workload},agent="a",status="200"}}',
            "values": "0+20x60",
        },  # 0.01 a request
        {
            "series": f'{m.LLM_COST.name}{{{workload},agent="",source="azure_apim"}}',
            "values": "0+1.8x60",
        },
    ]
    wanted = {
        ("LLM token economics", "Cost per 1k requests, by model"): '{model="gpt-4o"}',
        ("Team showback", "Cost per request (1h)"): "{}",
        ("Team showback", "Cost per request, by project"): '{project="ranking"}',
    }
    cases = []
    for query in all_queries():
        key = (query.dashboard.removeprefix("aispend / "), query.panel)
        if key in wanted:
            value = 10 if "1k" in query.panel else 0.01
            # Rounded to 1e-5 of the value: rate() over these samples is not exact.
            expr = f"round(1e5 * ({concrete(query.expr, {'team': 'search'})}))"
            value = round(1e5 * value)
            cases.append(
                {
                    "expr": expr,
                    "eval_time": "60m",
                    "exp_samples": [{"labels": wanted[key], "value": value}],
                }
            )
    assert len(cases) == len(wanted), [c["expr"] for c in cases]
    _promtool_expr_test(tmp_path, series, cases)
    descriptions = {
        (d["title"].removeprefix("aispend / "), p["title"]): p.get("description", "")
        for d in map(load, dashboard_files())
        for p in panels(d)
    }
    for key in wanted:
        assert q.COST_PER_REQUEST_SCOPE in descriptions[key], key


def test_requests_without_usage_are_shown_per_reason(tmp_path: Path) -> None:
    """The Stack health panel that shows what the gateway could not meter (counted at
    no cost): one line per reason, summed over teams, providers and models; a 0 line
    (reason "none") while requests flow and every one was metered."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    unknown, requests = m.LLM_USAGE_UNKNOWN.name, m.LLM_REQUESTS.name
    series = [
        {"series": f'{unknown}{{team="a",provider="azure",model="gpt-4o",'
         'reason="missing_usage"}', "values": "_x10 0+60x10"},
        {"series": f'{unknown}{{team="b",provider="azure",model="gpt-4o-mini",'
         'reason="missing_usage"}', "values": "_x10 0+120x10"},
        {"series": f'{unknown}{{team="a",provider="openai",model="gpt-4o",'
         'reason="client_disconnected"}', "values": "_x10 0+6x10"},
        {"series": f'{requests}{{team="a",model="gpt-4o",status="200"}}', "values": "0+600x20"},
    ]  # fmt: skip
    (panel,) = [
        p
        for p in panels(load(REPO / "dashboards" / f"{refs.STACK_HEALTH}.json"))
        if p["title"] == refs.REQUESTS_WITHOUT_USAGE.title
    ]
    (target,) = panel["targets"]
    assert target["expr"] == q.usage_unknown_per_second()
    expr = concrete(target["expr"], {"__rate_interval": "5m"})
    all_metered = [{"labels": '{reason="none"}', "value": 0}]
    by_reason = [
        {"labels": '{reason="missing_usage"}', "value": 3},  # (60 + 120) per minute: 3/s
        {"labels": '{reason="client_disconnected"}', "value": 0.1},
    ]
    _promtool_expr_test(
        tmp_path,
        series,
        [
            {"expr": expr, "eval_time": "8m", "exp_samples": all_metered},
            {"expr": expr, "eval_time": "18m", "exp_samples": by_reason},
        ],
    )


def test_prediction_band_floors_each_stddev_as_the_zscore_does(tmp_path: Path) -> None:
    """Model a: prediction 0.01/s with a flat history (stddev 0), floored to 10 % of the
    prediction, 0.001; model b: 0.02/s, stddev 0.004 (above its floor 0.002). Upper band
    (0.03 + 5 x sqrt(0.001^2 + 0.004^2)) x 3600 = 182.22 per hour; with the raw stddevs
    it read 180, and a flat one-model team had a zero-width band its z-score never used."""
    from aispend import metrics as m
    from aispend.dashboards import queries as q

    prediction = m.REC_TEAM_MODEL_PREDICTION.name
    stddev = prediction.replace(":prediction", ":stddev")

    def labels(model: str) -> str:
        return f'team="search",model="{model}",baseline="1w"'

    series = [
        {"series": f"{prediction}{{{labels('a')}}}", "values": "0.01x10"},
        {"series": f"{stddev}{{{labels('a')}}}", "values": "0x10"},
        {"series": f"{prediction}{{{labels('b')}}}", "values": "0.02x10"},
        {"series": f"{stddev}{{{labels('b')}}}", "values": "0.004x10"},
    ]
    band = q.team_actual_vs_prediction(Tunables(), q.TEAM)
    upper, lower = (concrete(band[k], {"team": ".*"}) for k in ("upper", "lower"))
    _promtool_expr_test(
        tmp_path,
        series,
        [
            {
                "expr": f"round({upper}, 0.01)",
                "eval_time": "5m",
                "exp_samples": [{"labels": '{team="search"}', "value": 182.22}],
            },
            {
                "expr": f"round({lower}, 0.01)",
                "eval_time": "5m",
                "exp_samples": [{"labels": '{team="search"}', "value": 33.78}],
            },
        ],
    )


def test_dashboards_generate_with_the_rules_tunables(tmp_path: Path) -> None:
    """`dashboards generate --tunables` builds from the same file as `rules generate
    --tunables`: the idle-GPU table the runbooks cite exists under its tuned title, and
    the bands and burn windows follow the tunables. A bad file writes nothing."""
    import shutil

    from aispend.cli import main
    from aispend.rules.cli import RUNBOOKS_FILE, render_all
    from aispend.rules.tunables import load_tunables

    tunables_file = tmp_path / "tunables.yml"
    tunables_file.write_text(
        "gpu_idle_threshold: 0.1\ngpu_idle_for: 2h\nanomaly_sigma: 4\nmin_stddev_ratio: 0.2\n"
    )
    (tmp_path / "dashboards").mkdir()
    for source in sources(DASHBOARDS):
        shutil.copy(source, tmp_path / "dashboards" / source.name)
    root = ["dashboards", "generate", "--root", str(tmp_path)]

    assert main([*root, "--tunables", str(tmp_path / "missing.yml")]) == 2
    tunables_file_bad = tmp_path / "bad.yml"
    tunables_file_bad.write_text("gpu_idle_threshold: 2\n")
    assert main([*root, "--tunables", str(tunables_file_bad)]) == 2
    assert not list((tmp_path / "dashboards").glob("*.json"))

    assert main([*root, "--tunables", str(tunables_file)]) == 0
    t = load_tunables(tunables_file)
    idle = refs.idle_gpus(t.gpu_idle_threshold, t.gpu_idle_for)
    assert idle.title == "Idle GPUs (mean utilisation < 10% over 2h)"
    assert refs.cite(idle) in render_all(t)[RUNBOOKS_FILE]
    gpu = json.loads((tmp_path / "dashboards" / "gpu-fleet.json").read_text())
    assert idle.title in {p["title"] for p in panels(gpu)}
    anomalies = json.loads((tmp_path / "dashboards" / "anomalies-budgets.json").read_text())
    legends = {
        target.get("legendFormat")
        for panel in panels(anomalies)
        if panel["title"] == refs.SPEND_VS_PREDICTION.title
        for target in panel["targets"]
    }
    assert "{{team}} + 4 sigma" in legends
    exprs = [target["expr"] for panel in panels(anomalies) for target in panel["targets"]]
    assert any("* 0.2," in expr and "4 * sqrt" in expr for expr in exprs)
    docs = (tmp_path / "docs" / "dashboards.md").read_text(encoding="utf-8")
    assert idle.title in docs


GRAFANA_CURRENCY_IDS = {
    f"currency{code}"
    for code in [
        "USD", "GBP", "EUR", "JPY", "RUB", "UAH", "BRL", "DKK", "ISK", "NOK", "SEK", "CZK",
        "CHF", "PLN", "BTC", "ZAR", "INR", "KRW", "IDR", "PHP", "VND", "TRY", "MYR", "XPF",
        "BGN", "PYG", "UYU", "ILS",
    ]
}  # fmt: skip
"""Grafana's currency unit ids (packages/grafana-data/src/valueFormats/categories.ts)."""


@pytest.mark.parametrize("currency", ["USD", "EUR", "CAD", "AUD", "CNY", "CHF", "XYZ"])
def test_money_unit_is_a_grafana_currency_or_a_suffix(currency: str) -> None:
    """CAD, AUD and CNY mapped to currencyCAD/AUD/CNY, which Grafana does not have: the
    money panels printed "12 currencyCAD"."""
    from aispend.dashboards.defaults import Context

    unit = Context(currency=currency).money
    assert unit in GRAFANA_CURRENCY_IDS or unit == f"suffix: {currency}", unit


def test_dashboards_generate_with_the_config_currency(tmp_path: Path) -> None:
    """`dashboards generate --config aispend.yaml` shows money in the config's currency
    (the committed dashboards are USD: a EUR deployment showed "$" on every money
    panel). A config that does not load writes nothing and exits 2."""
    import shutil

    from aispend.cli import main

    (tmp_path / "dashboards").mkdir()
    for source in sources(DASHBOARDS):
        shutil.copy(source, tmp_path / "dashboards" / source.name)
    root = ["dashboards", "generate", "--root", str(tmp_path)]

    def generated_units() -> set[str | None]:
        return {
            panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            for path in (tmp_path / "dashboards").glob("*.json")
            for panel in panels(json.loads(path.read_text()))
        }

    example = (REPO / "aispend.example.yaml").read_text(encoding="utf-8")
    assert "\ncurrency: USD\n" in example and "  # usd_rate: 0.92\n" in example
    eur = example.replace("\ncurrency: USD\n", "\ncurrency: EUR\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(eur)  # EUR without usd_rate: refused by the config loader
    assert main([*root, "--config", str(bad)]) == 2
    assert main([*root, "--config", str(tmp_path / "missing.yaml")]) == 2
    assert not list((tmp_path / "dashboards").glob("*.json"))
    assert not (tmp_path / "docs").exists()

    config = tmp_path / "aispend.yaml"
    config.write_text(eur.replace("  # usd_rate: 0.92\n", "  usd_rate: 0.92\n"))
    assert main([*root, "--config", str(config)]) == 0
    units = generated_units()
    assert "currencyEUR" in units
    assert "currencyUSD" not in units
    # Grafana has no currencyCAD (nor AUD, CNY): an unknown id prints as "12 currencyCAD".
    assert main([*root, "--currency", "CAD"]) == 0
    units = generated_units()
    assert "suffix: CAD" in units
    assert not {u for u in units if u and u.startswith("currency")}
    with pytest.raises(SystemExit) as both:
        main([*root, "--config", str(config), "--currency", "GBP"])
    assert both.value.code == 2


def test_a_write_that_fails_part_way_leaves_every_dashboard_as_it_was(tmp_path: Path) -> None:
    """Grafana re-reads ./dashboards every 30 s. A full disk cut a dashboard's JSON in
    place (Grafana then drops it) and the command died with a traceback; now every file
    is written whole beside the old one before any is replaced, and the error names it."""
    import shutil

    from aispend.cli import main

    def files() -> dict[Path, bytes]:
        return {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}

    def generate_with_file_limit(limit: int, *args: str) -> str:
        """Its stderr; it must fail."""
        argv = ["dashboards", "generate", "--root", str(tmp_path), *args]
        done = subprocess.run(
            [sys.executable, "-m", "aispend", *argv],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            preexec_fn=file_size_limit(limit),
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        return done.stderr

    (tmp_path / "dashboards").mkdir()
    for source in sources(DASHBOARDS):
        shutil.copy(source, tmp_path / "dashboards" / source.name)
    assert main(["dashboards", "generate", "--root", str(tmp_path)]) == 0
    before = files()
    stderr = generate_with_file_limit(20_000, "--currency", "EUR")
    assert f"cannot write {tmp_path}/" in stderr
    assert "File too large (every file left as it was)" in stderr
    assert files() == before
    # The docs page (some 37 kB) is the one file past the limit: the dashboards wait for it.
    (tmp_path / "dashboards" / "gpu-fleet.json").unlink()
    before = files()
    assert f"cannot write {tmp_path}/docs/dashboards.md" in generate_with_file_limit(35_000)
    assert files() == before
