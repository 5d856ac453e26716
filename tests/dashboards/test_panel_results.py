"""What panels show: the generated panel queries, with Grafana's variables filled in as
Grafana fills them (`concrete`), evaluated by the real promtool over input series.

Simulated: the input series, shaped as the gateway, the billing exporter, aispend's
gpu exporter and Prometheus' own `up` expose them, or as the generated recording rules
(alert-rules/aispend.rules.yml, evaluated by promtool where a test loads them) record
them. A graph's range query is its instant query at each step (Grafana aligns the steps
to multiples of the step), so a case at each step time is what the graph plots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aispend import metrics as m
from aispend.dashboards import queries as q
from aispend.dashboards.docs import panels
from aispend.dashboards.panels import MIN_STEP
from tests.conftest import REPO
from tests.dashboards.panels import DASHBOARDS, concrete, dashboard_files, load
from tests.dashboards.test_dashboards import _promtool_expr_test

RULES = REPO / "alert-rules" / "aispend.rules.yml"


def _panel(stem: str, title: str) -> dict[str, Any]:
    (panel,) = [p for p in panels(load(DASHBOARDS / f"{stem}.json")) if p["title"] == title]
    return panel


def _expr(stem: str, title: str, values: dict[str, str] | None = None) -> str:
    """The panel's one query, made concrete."""
    (target,) = _panel(stem, title)["targets"]
    return concrete(target["expr"], values)


def _legend(template: str, labels: dict[str, str]) -> str:
    """A legend as Grafana renders `{{label}}` templates for one series."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda found: labels.get(found[1], ""), template)


# ---------------------------------------------------------------- A: $team escaping
def test_team_showback_shows_the_chosen_team_only(tmp_path: Path) -> None:
    """Team showback's $team has one value, which Grafana's Prometheus datasource does
    not regex-escape: team=~"ml.ops" also matched team ml-ops (showback added its
    spend) and team=~"Data Science (EU)", a team from a raw cost tag, matched nothing
    (its bill showed nothing). The $project list must follow the same team."""
    month, mtd = m.REC_TEAM_COST_MONTH.name, m.CLOUD_COST_MONTH_TO_DATE.name
    projects = m.REC_TEAM_PROJECT_COST_RATE5M.name
    ai = 'service_category="AI and Machine Learning"'
    series = [
        {"series": f'{month}{{team="ml.ops"}}', "values": "100x10"},
        {"series": f'{month}{{team="ml-ops"}}', "values": "50x10"},
        {"series": f'{mtd}{{team="ml.ops",{ai}}}', "values": "10x10"},
        {"series": f'{mtd}{{team="ml-ops",{ai}}}', "values": "5x10"},
        {"series": f'{mtd}{{team="Data Science (EU)",{ai}}}', "values": "120x10"},
        {"series": f'{projects}{{team="ml.ops",project="train"}}', "values": "0.1x10"},
        {"series": f'{projects}{{team="ml-ops",project="serve"}}', "values": "0.1x10"},
    ]
    stem = "team-showback"
    (project_var,) = [
        v["query"] for v in load(DASHBOARDS / f"{stem}.json")["templating"]["list"]
        if v["name"] == "project"
    ]  # fmt: skip
    selector = re.fullmatch(r"label_values\((.+), project\)", project_var)
    assert selector, project_var
    cases = []
    for team, month_to_date, billed in (
        ("ml.ops", 100, 10),
        ("ml-ops", 50, 5),
        ("Data Science (EU)", None, 120),
    ):
        values = {"team": team}
        cases += [
            {
                "expr": _expr(stem, "Month to date", values),
                "eval_time": "5m",
                "exp_samples": [] if month_to_date is None else [{"value": month_to_date}],
            },
            {
                "expr": _expr(stem, "Billed this month", values),
                "eval_time": "5m",
                "exp_samples": [{"value": billed}],
            },
        ]
    cases.append(
        {
            "expr": f"count by (project) ({concrete(selector[1], {'team': 'ml.ops'})})",
            "eval_time": "5m",
            "exp_samples": [{"labels": '{project="train"}', "value": 1}],
        }
    )
    _promtool_expr_test(tmp_path, series, cases)


def _single_value_variables(data: dict[str, Any]) -> list[str]:
    return [
        v["name"]
        for v in data["templating"]["list"]
        if v["type"] == "query" and not v.get("multi") and not v.get("includeAll")
    ]


def test_no_single_value_variable_is_put_unescaped_into_a_regex() -> None:
    """Grafana regex-escapes the values of a multi-value or All variable, not the one
    value of a single-value variable: such a variable goes into a regex matcher only
    through the `regex` format, in every panel query and variable query."""
    checked = 0
    for path in dashboard_files():
        data = load(path)
        texts = [t["expr"] for p in panels(data) for t in p["targets"]]
        texts += [v["query"] for v in data["templating"]["list"] if v["type"] == "query"]
        for name in _single_value_variables(data):
            checked += 1
            plain = re.compile(rf"=~\s*[\"`][^\"`]*\$(\{{{name}\}}|{name}\b)")
            bad = [text for text in texts if plain.search(text)]
            assert not bad, f"{path.name}: ${name} unescaped in a regex:\n" + "\n".join(bad)
            assert any(f"${{{name}:regex}}" in text for text in texts), path.name
    assert checked == 1  # Team showback's $team


# ---------------------------------------------------------------- B: rates over the step
SPEND_RATE_GRAPHS = (
    ("overview", "Spend per hour, by team", {}, "team", ("search", "research")),
    ("team-showback", "Spend per hour, by project", {"team": "search"}, "project", ("web",)),
    ("team-showback", "Spend per hour, by agent", {"team": "search"}, "agent", ("runaway",)),
    ("gpu-fleet", "GPU cost per hour, by team", {}, "team", ("research",)),
)


def test_spend_rate_graphs_show_a_burst_shorter_than_their_step(tmp_path: Path) -> None:
    """A runaway agent spends at 1800/h (0.5/s) for 5 minutes, from 61m to 66m, over a
    baseline of 3.6/h; so does a GPU that runs for those 5 minutes only. At 7 days,
    Grafana's step is 15 minutes (maxDataPoints 500), and the graphs plotted the
    recorded 5-minute rate at each step: 3.6 at each, the burst unseen. Averaged over
    each step, the step with the burst shows its spend: 150 / 15 min = 600/h over the
    3.6/h baseline, and mean x step = spend in the step. Raw counters through the
    generated recording rules; the counters are simulated, shaped as the gateway and
    aispend's gpu exporter expose them. The steps fall 30 s after the rule evaluations
    (Prometheus offsets each rule group's evaluations): Prometheus 2.x takes a sample
    exactly on a step boundary into both steps."""
    llm = 'team="search",project="web",agent="runaway",provider="openai",model="gpt-4o"'
    gpu = 'gpu="0",UUID="GPU-1",model_name="H100",Hostname="n1",team="research",project="x"'
    burst = "0+0.06x60 33.66+30.06x4 153.96+0.06x60"  # per minute: 0.001/s, 0.501/s, 0.001/s
    series = [
        {"series": f'{m.LLM_COST.name}{{{llm},source="gateway"}}', "values": burst},
        {"series": f"{m.GPU_COST.name}{{{gpu}}}", "values": burst},
    ]
    cases = []
    for stem, title, values, label, keys in SPEND_RATE_GRAPHS:
        expr = _expr(stem, title, values | {"__interval": "15m"})
        for minute, per_hour in ((60, 3.6), (75, 603.6), (90, 3.6)):
            samples = [{"labels": f'{{{label}="{key}"}}', "value": per_hour} for key in keys]
            cases.append(
                {
                    "expr": f"round({expr}, 0.1)",
                    "eval_time": f"{minute}m30s",
                    "exp_samples": samples,
                }
            )
    _promtool_expr_test(tmp_path, series, cases, (RULES,))


def test_graphs_that_average_over_the_step_have_a_sample_in_each_step() -> None:
    """`[$__interval]` over 1 hour would be 15 s in Grafana (7.2 s, raised to its default
    min step): with rules evaluated every minute, three steps in four would hold no
    sample and the graph would have gaps. Such panels set a min interval of MIN_STEP."""
    found = 0
    for path in dashboard_files():
        for panel in panels(load(path)):
            if any("$__interval" in t["expr"] for t in panel["targets"]):
                found += 1
                assert panel.get("interval") == MIN_STEP, f"{path.name}: {panel['title']}"
    assert found >= len(SPEND_RATE_GRAPHS)
    assert q.STEP == "$__interval"


# ---------------------------------------------------------------- C: cost per request
COST_PER_REQUEST = {
    ("llm-token-economics", "Cost per 1k requests, by model"): ('{model="gpt-4o"}', 1000),
    ("team-showback", "Cost per request (1h)"): ("{}", 1),
    ("team-showback", "Cost per request, by project"): ('{project="ranking"}', 1),
}


def test_cost_per_request_counts_only_answered_requests(tmp_path: Path) -> None:
    """A throttled team: 20 requests a minute answered 200 at 0.01 each, and 100 a
    minute refused with 429 by a throttle, 10 with 400, 5 with 404 and 5 failed upstream
    (502), all at no cost. Cost per request is 0.01 (0.2 / 20), not 0.2 / 140: the
    refused requests made the team look nearly free per request."""
    workload = 'team="search",project="ranking",agent="a",provider="openai",model="gpt-4o"'
    series = [
        {"series": f'{m.LLM_COST.name}{{{workload},source="gateway"}}', "values": "0+0.2x60"},
        *(
            {"series": f'{m.LLM_REQUESTS.name}{{{workload},status="{status}"}}',
             "values": f"0+{per_minute}x60"}
            for status, per_minute in (("200", 20), ("429", 100), ("400", 10), ("404", 5),
                                       ("502", 5))
        ),
    ]  # fmt: skip
    cases = []
    for (stem, title), (labels, scale) in COST_PER_REQUEST.items():
        expr = _expr(stem, title, {"team": "search"})
        # Rounded to 1e-5 of the value: rate() over these samples is not exact.
        cases.append(
            {
                "expr": f"round(1e5 * ({expr}))",
                "eval_time": "60m",
                "exp_samples": [{"labels": labels, "value": round(1e5 * 0.01 * scale)}],
            }
        )
    _promtool_expr_test(tmp_path, series, cases)
    for stem, title in COST_PER_REQUEST:
        assert "2xx" in _panel(stem, title)["description"], title


# ---------------------------------------------------------------- D, E: stack health
def test_data_age_keeps_growing_after_an_exporter_dies(tmp_path: Path) -> None:
    """The billing exporter last read its source at 0 and died at 10m (its series went
    stale): "Data age, by source" went blank instead of growing, just when the data got
    old. It reads 540 s at 9m and 1800 s at 30m; a restart that reads the source again
    (at 40m) starts it over."""
    last = m.SOURCE_LAST_SUCCESS.name
    series = [{"series": f'{last}{{source="azure_cost"}}', "values": "0x10 stale _x29 2400x10"}]
    expr = _expr("stack-health", "Data age, by source")
    cases = [
        {"expr": expr, "eval_time": f"{minute}m",
         "exp_samples": [{"labels": '{source="azure_cost"}', "value": age}]}
        for minute, age in ((9, 540), (30, 1800), (45, 300))
    ]  # fmt: skip
    _promtool_expr_test(tmp_path, series, cases)


def test_scrape_targets_up_names_each_target(tmp_path: Path) -> None:
    """aispend-gpu runs on every GPU node: two targets of one job showed as two stats
    both labelled "aispend-gpu", one of them down."""
    nodes = [
        {"job": "aispend-gpu", "instance": "gpu-node-1:9402"},
        {"job": "aispend-gpu", "instance": "gpu-node-2:9402"},
    ]
    up = [
        (f'up{{job="{n["job"]}",instance="{n["instance"]}"}}', value)
        for n, value in zip(nodes, (1, 0), strict=True)
    ]
    (target,) = _panel("stack-health", "Scrape targets up")["targets"]
    cases = [
        {
            "expr": concrete(target["expr"]),
            "eval_time": "5m",
            "exp_samples": [{"labels": name, "value": value} for name, value in up],
        }
    ]
    _promtool_expr_test(tmp_path, [{"series": s, "values": f"{v}x10"} for s, v in up], cases)
    legends = [_legend(target["legendFormat"], n) for n in nodes]
    assert len(set(legends)) == len(nodes), legends


# ---------------------------------------------------------------- F: no value
STAT_NO_VALUE = {
    ("overview", "Spend today"): "0",
    ("overview", "Month to date"): "0",
    ("overview", "Forecast month end"): "0",
    ("overview", "Forecast vs month budget"): "no budget",
    ("overview", "Spend rate now"): "0",
    ("team-showback", "Spend today"): "0",
    ("team-showback", "Month to date"): "0",
    ("team-showback", "Forecast month end"): "0",
    ("team-showback", "Cost per request (1h)"): "-",
    ("team-showback", "Billed this month"): "no bill data",
    ("team-showback", "Bill data up to"): "no bill data",
    ("gpu-fleet", "GPUs"): "0",
    ("gpu-fleet", "Mean utilisation"): "-",
    ("gpu-fleet", "GPU cost per hour"): "0",
    ("gpu-fleet", "Idle GPU cost per hour"): "0",
    ("stack-health", "Scrape targets up"): "-",
    ("stack-health", "Exporters reading their source"): "-",
    ("stack-health", "Config loaded"): "-",
}
"""What each stat shows without data: 0 only where no series means none (no spend, no
GPU, no idle GPU); a dash, or what is missing, where a 0 would read as a fact."""


def test_stats_show_zero_without_data_only_where_no_data_means_zero() -> None:
    """Every stat showed 0 without data: "Billed this month" read as nothing billed
    without the billing exporter, "Bill data up to" as 1970, "Forecast vs month
    budget" as 0 % without budgets."""
    no_value = {
        (path.name.removesuffix(".json"), panel["title"]): panel["fieldConfig"]["defaults"].get(
            "noValue"
        )
        for path in dashboard_files()
        for panel in panels(load(path))
        if panel["type"] == "stat"
    }
    assert no_value == STAT_NO_VALUE
