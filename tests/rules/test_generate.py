"""The generated rule files: committed output equals regeneration, promtool accepts them,
tunables override and fail with the field named."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from textwrap import indent

import pytest
import yaml

from aispend import metrics
from aispend.dashboards.docs import panels
from aispend.rules import backfill
from aispend.rules.cli import ALERTS_FILE, RULES_FILE, RUNBOOKS_FILE, generate, render_all
from aispend.rules.promql import seconds
from aispend.rules.render import TEAM_QUERY
from aispend.rules.spend import burn_windows
from aispend.rules.tunables import Tunables, TunablesError, load_tunables
from tests.conftest import REPO, file_size_limit, require_binary


def test_committed_files_equal_regeneration(tmp_path: Path) -> None:
    generate(tmp_path)
    for rel in (RULES_FILE, ALERTS_FILE, RUNBOOKS_FILE):
        assert (tmp_path / rel).read_text() == (REPO / rel).read_text(), (
            f"{rel} is stale: run `aispend rules generate`"
        )


def test_rendering_is_stable_and_has_header() -> None:
    first, second = render_all(Tunables()), render_all(Tunables())
    assert first == second
    assert first[RULES_FILE].startswith("# DO NOT EDIT")
    assert first[ALERTS_FILE].startswith("# DO NOT EDIT")


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    out = subprocess.run(
        [promtool, "check", "rules", str(REPO / RULES_FILE), str(REPO / ALERTS_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for path in (RULES_FILE, ALERTS_FILE):
        doc = yaml.safe_load((REPO / path).read_text())
        count = sum(len(group["rules"]) for group in doc["groups"])
        assert count > 0
        assert f"Checking {REPO / path}\n  SUCCESS: {count} rules found" in out.stdout


def _recorded() -> set[str]:
    data = yaml.safe_load((REPO / RULES_FILE).read_text())
    return {r["record"] for g in data["groups"] for r in g["rules"]}


def test_every_named_recorded_series_is_recorded() -> None:
    recorded = _recorded()
    missing = [s.name for s in metrics.RECORDED_SERIES if s.name not in recorded]
    assert missing == []
    assert f"{metrics.REC_BURN_PREFIX}5m" in recorded
    assert f"{metrics.REC_SCOPE_COST_RATE_PREFIX}3d" in recorded


def test_spend_to_date_sums_the_recorded_hourly_spend_not_a_month_of_raw_counters() -> None:
    """At 16,000 cost series, reading the raw counters over a month at each evaluation
    took 155 s, past Prometheus's query timeout (docs/benchmarks.md, "Rules at scale")."""
    data = yaml.safe_load((REPO / RULES_FILE).read_text())
    (group,) = [g for g in data["groups"] if g["name"] == "aispend-spend-to-date"]
    order = [rule["record"] for rule in group["rules"]]
    exprs = {rule["record"]: rule["expr"] for rule in group["rules"]}
    hourly = metrics.REC_SCOPE_COST_1H.name
    this_hour = metrics.REC_SCOPE_COST_THIS_HOUR.name
    raw_read = re.compile(
        rf"(increase|rate|last_over_time|changes)\(({metrics.LLM_COST.name}|"
        rf"{metrics.LLM_COST.created_name}|{metrics.GPU_COST.name})\b"
    )
    readers = {
        metrics.REC_SCOPE_COST_TODAY.name: (hourly, this_hour),
        metrics.REC_SCOPE_COST_MONTH.name: (hourly, this_hour),
        f"{metrics.REC_SCOPE_COST_RATE_PREFIX}7d": (hourly,),
        metrics.REC_ESTIMATE_BILL_DAY.name: (hourly,),
    }
    for name, inputs in readers.items():
        assert not raw_read.search(exprs[name]), name
        for recorded in inputs:
            assert recorded in exprs[name], (name, recorded)
            # Recorded earlier in the same group: the rule reads this evaluation's value.
            assert order.index(recorded) < order.index(name), (name, recorded)


def test_the_baselines_read_weeks_of_the_recorded_hourly_rate_at_whole_hours() -> None:
    """At 16,000 cost series, subqueries over weeks of raw counters took the baselines
    group past its 60 s interval (docs/benchmarks.md, "Rules at scale"). They read the
    recorded hourly rate instead, and only at whole hours (subquery steps of 1h on whole-
    hour offsets, or a 1h window), so `aispend rules backfill`'s hourly samples suffice."""
    data = yaml.safe_load((REPO / RULES_FILE).read_text())
    (group,) = [g for g in data["groups"] if g["name"] == "aispend-baselines"]
    hourly = (metrics.REC_TEAM_MODEL_COST_RATE1H.name, metrics.REC_TEAM_AGENT_COST_RATE1H.name)
    assert set(hourly) <= set(backfill.HOURLY_SERIES)
    long_subquery = re.compile(r"(\S*)\[(\d+[dw]):(\w+)\](?: offset (\w+))?")
    reads = 0
    for rule in group["rules"]:
        for before, _, step, offset in long_subquery.findall(rule["expr"]):
            assert before.endswith(hourly) and step == "1h", rule["record"]
            assert offset == "" or offset.endswith(("h", "d", "w")), rule["record"]
            reads += 1
        for at in re.finditer(rf"(?:{'|'.join(hourly)})(?![\w:])", rule["expr"]):
            window = rule["expr"][at.end() :].split("]", 1)[0]
            assert window in ("[1h", "[1w:1h", "[1d:1h"), (rule["record"], window)
        raw_ranges = re.findall(
            rf"(?:{metrics.LLM_COST.name}|{metrics.GPU_COST.name})\[(\w+)\]", rule["expr"]
        )
        assert set(raw_ranges) <= {"1h", "5m"}, rule["record"]
    assert reads >= 16  # per level and period: the mean, the stddev, 3 trends


def test_burn_windows_of_6h_or_more_are_recorded_every_minute() -> None:
    """The burn rates of 6h to 3d read the raw counters over their whole window: at a
    real scrape's density aispend-spend took 6.3 s of its 15 s with them at 2,000 cost
    series (docs/benchmarks.md, "Rules at scale"). They are recorded every minute in
    their own group; the shorter windows stay in aispend-spend, every 15 s (the global
    interval)."""
    data = yaml.safe_load((REPO / RULES_FILE).read_text())
    interval = {
        rule["record"]: (group["name"], group.get("interval"))
        for group in data["groups"]
        for rule in group["rules"]
    }
    windows = burn_windows(Tunables())
    long_ = [w for w in windows if seconds(w) >= seconds("6h")]
    assert long_ and len(long_) < len(windows)
    for window in windows:
        expected = (
            ("aispend-spend-long-windows", "1m") if window in long_ else ("aispend-spend", None)
        )
        for prefix in (metrics.REC_SCOPE_COST_RATE_PREFIX, metrics.REC_BURN_PREFIX):
            assert interval[f"{prefix}{window}"] == expected, window


def test_burn_windows_all_under_6h_give_no_empty_long_window_group(tmp_path: Path) -> None:
    """The long-window group held nothing under such tunables: an empty group in
    Prometheus's rule list and its evaluation metrics, there for nothing."""
    tunables = tmp_path / "t.yaml"
    tunables.write_text(
        "month_burn: [{severity: critical, factor: 14.4, long: 1h, short: 5m}]\n"
        "day_burn: [{severity: warning, factor: 3, long: 4h, short: 20m}]\n"
    )
    rules = render_all(load_tunables(tunables))[RULES_FILE]
    groups = yaml.safe_load(rules)["groups"]
    assert all(group["rules"] for group in groups), [g["name"] for g in groups if not g["rules"]]
    records = {rule.get("record") for group in groups for rule in group["rules"]}
    assert f"{metrics.REC_BURN_PREFIX}4h" in records
    path = tmp_path / "rules.yml"
    path.write_text(rules)
    done = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_burn_window_reads_the_raw_counters_once_not_once_per_scope() -> None:
    """Summed per scope, a series with a project and an agent was decoded three times
    over each window. One rate by the series' own team, project and agent reads them;
    the scope rates sum it, after it in the same group (its value of this evaluation).
    The sums' values: alert-rules/tests/scopes.test.yml."""
    data = yaml.safe_load((REPO / RULES_FILE).read_text())
    raw = re.compile(rf"\b({metrics.LLM_COST.name}|{metrics.GPU_COST.name})\[")
    for window in burn_windows(Tunables()):
        parts = f"{metrics.REC_LABELS_COST_RATE_PREFIX}{window}"
        scope = f"{metrics.REC_SCOPE_COST_RATE_PREFIX}{window}"
        (group,) = [g for g in data["groups"] if any(r.get("record") == scope for r in g["rules"])]
        order = [rule.get("record") for rule in group["rules"]]
        exprs = {rule.get("record"): rule["expr"] for rule in group["rules"]}
        assert order.index(parts) < order.index(scope), window
        assert not raw.search(exprs[scope]), window
        assert exprs[scope].count(parts) == 3, window
        assert len(raw.findall(exprs[parts])) == 2, window  # LLM and GPU, once each


def test_alerts_have_required_labels_and_annotations() -> None:
    data = yaml.safe_load((REPO / ALERTS_FILE).read_text())
    names = set()
    for group in data["groups"]:
        for rule in group["rules"]:
            names.add(rule["alert"])
            assert rule["alert"].startswith("AISpend")
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert set(rule["annotations"]) == {
                "summary",
                "description",
                "runbook_url",
                "dashboard_url",
            }
            assert rule["labels"].get("action") in (None, "throttle", "pause", "notify")
    assert names == {
        "AISpendBudgetExceeded",
        "AISpendBudgetBurnFast",
        "AISpendBudgetBurnSlow",
        "AISpendSpendAnomaly",
        "AISpendRunawaySpend",
        "AISpendTeamRunaway",
        "AISpendForecastOverrun",
        "AISpendGPUIdle",
        "AISpendGPUUnpriced",
        "AISpendGPULost",
        "AISpendCostPerRequestHigh",
        "AISpendUnattributedSpend",
        "AISpendBillingDataStale",
        "AISpendExporterDown",
        "AISpendActuatorFailing",
        "AISpendEstimateBillMismatch",
        "AISpendRulesFailing",
        "AISpendNotificationsFailing",
    }
    runbooks = (REPO / RUNBOOKS_FILE).read_text()
    for name in names:
        assert f"\n## {name}\n" in runbooks


def _unknown_dashboard_links(alerts_yaml: str) -> list[str]:
    """dashboard_url annotations whose /d/<uid> is no uid of dashboards/*.json."""
    uids = {json.loads(path.read_text())["uid"] for path in (REPO / "dashboards").glob("*.json")}
    assert len(uids) == 6
    unknown = []
    for group in yaml.safe_load(alerts_yaml)["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"]["dashboard_url"]
            match = re.match(r"http://localhost:3000/d/([^/?{]+)", url)
            assert match, url
            if match.group(1) not in uids:
                unknown.append(f"{rule['alert']}: {url}")
    return unknown


def test_dashboard_urls_name_generated_dashboards() -> None:
    """Every alert links to a dashboard that exists (uid of a generated dashboard)."""
    assert _unknown_dashboard_links((REPO / ALERTS_FILE).read_text()) == []
    # The check catches a link to a uid no dashboard has (as the links once were).
    stale = (REPO / ALERTS_FILE).read_text().replace("/d/aispend-gpu-fleet", "/d/aispend-gpu")
    link = "http://localhost:3000/d/aispend-gpu" + TEAM_QUERY
    assert _unknown_dashboard_links(stale) == [f"AISpendGPUIdle: {link}"] * 2 + [
        f"AISpendGPUUnpriced: {link}",
        f"AISpendGPULost: {link}",
    ]


CITATION = re.compile(
    r'dashboard "(?P<dashboard>[^"]+)", panels? (?P<panels>"[^"]+"(?:(?:, | and )"[^"]+")*)'
)


def _runbook_citation_problems(runbooks: str) -> list[str]:
    """Dashboards and panels the runbooks name that the generated dashboards lack, and
    dashboards mentioned other than by a citation."""
    dashboards = [json.loads(p.read_text()) for p in (REPO / "dashboards").glob("*.json")]
    titles = {d["title"]: {p["title"] for p in panels(d)} for d in dashboards}
    problems = []
    for match in CITATION.finditer(runbooks):
        known = titles.get(match["dashboard"])
        if known is None:
            problems.append(f"no dashboard {match['dashboard']!r}")
            continue
        for title in re.findall(r'"([^"]+)"', match["panels"]):
            if title not in known:
                problems.append(f"{match['dashboard']!r} has no panel {title!r}")
    rest = CITATION.sub("", runbooks)
    for phrase in ("the alert's dashboard link", "no dashboard shows"):
        rest = rest.replace(phrase, "")
    problems += [f"uncited: {line}" for line in rest.splitlines() if "dashboard" in line]
    return problems


def test_runbooks_cite_panels_that_exist() -> None:
    runbooks = (REPO / RUNBOOKS_FILE).read_text()
    assert len(CITATION.findall(runbooks)) >= 6
    assert _runbook_citation_problems(runbooks) == []
    # The checks catch what the runbooks once said.
    old = (
        'Open the budgets dashboard for the team; dashboard "aispend / GPU fleet", panel '
        '"Processes on the GPU"; dashboard "aispend / LLM", panel "Tokens per request by type".'
    )
    assert _runbook_citation_problems(old) == [
        "'aispend / GPU fleet' has no panel 'Processes on the GPU'",
        "no dashboard 'aispend / LLM'",
        "uncited: Open the budgets dashboard for the team; ; .",
    ]


def test_estimate_below_the_bill_names_requests_without_usage() -> None:
    """Requests the gateway could not meter count at no cost: the mismatch runbook
    names them among the causes of an estimate below the bill, with their panel."""
    from aispend.dashboards import refs

    runbooks = (REPO / RUNBOOKS_FILE).read_text()
    section = runbooks.split("## AISpendEstimateBillMismatch", 1)[1].split("\n## ", 1)[0]
    assert f"`{metrics.LLM_USAGE_UNKNOWN.name}` by reason" in section
    assert refs.cite(refs.REQUESTS_WITHOUT_USAGE) in section


def test_acting_alerts_exclude_critical_teams() -> None:
    """throttle/pause rules drop critical teams; their twin with notify keeps only them
    (GPUIdle's notify: every idle GPU its pause rule leaves, critical teams' included).
    TeamRunaway has no acting twin: it notifies for every team and never throttles."""
    data = yaml.safe_load((REPO / ALERTS_FILE).read_text())
    critical = 'aispend_team_info{criticality="critical"}'
    rules = [rule for group in data["groups"] for rule in group["rules"]]
    acting = {r["alert"] for r in rules if r["labels"].get("action") in ("throttle", "pause")}
    assert acting == {"AISpendRunawaySpend", "AISpendGPUIdle"}
    for rule in rules:
        action = rule["labels"].get("action")
        if action in ("throttle", "pause"):
            assert rule["expr"].endswith(f"unless on(team) {critical}")
        elif action == "notify" and rule["alert"] == "AISpendGPUIdle":
            (pause,) = (r for r in rules if r["alert"] == "AISpendGPUIdle" and r is not rule)
            assert rule["expr"].endswith(f"unless on(UUID) (\n{indent(pause['expr'], '  ')}\n)")
        elif action == "notify" and rule["alert"] in acting:
            assert rule["expr"].endswith(f"and on(team) {critical}")
    team_runaway = [r for r in rules if r["alert"] == "AISpendTeamRunaway"]
    assert [r["labels"] for r in team_runaway] == [{"severity": "critical", "action": "notify"}]
    assert critical not in team_runaway[0]["expr"]


def test_tunables_override_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "t.yaml"
    good.write_text("anomaly_sigma: 4\nzscore_opt_out: []\n")
    tunables = load_tunables(good)
    assert tunables.anomaly_sigma == 4
    alerts = render_all(tunables)[ALERTS_FILE]
    assert "team_model:aispend_cost:zscore > 4\n" in alerts
    assert 'zscore{team="research"}' not in alerts
    one = tmp_path / "one.yaml"
    one.write_text("anomaly_baselines: [1w]\n")
    only_1w = render_all(load_tunables(one))[ALERTS_FILE]
    assert 'team_model:aispend_cost:zscore{baseline=~"1w"} > 5\n' in only_1w
    assert "team_model:aispend_cost:zscore > 5\n" in render_all(Tunables())[ALERTS_FILE]
    bad = tmp_path / "bad.yaml"
    bad.write_text("anomaly_sigma: -1\nsigma_typo: 3\n")
    with pytest.raises(TunablesError) as err:
        load_tunables(bad)
    assert "anomaly_sigma" in str(err.value) and "sigma_typo" in str(err.value)


def test_reconcile_bill_selectors(tmp_path: Path) -> None:
    """The bill side of the reconciliation reads only the selected services; more label
    sets are joined with `or`; a label the bill series lack is an error naming it."""
    rules = render_all(Tunables())[RULES_FILE]
    assert (
        "sum by (team) (\n"
        '        aispend_cloud_cost_last_day{service_category="AI and Machine Learning"}\n'
        "      )" in rules
    )
    two = tmp_path / "two.yaml"
    two.write_text(
        "reconcile_bill_selectors:\n"
        "  - {service_category: AI and Machine Learning}\n"
        "  - {service: Virtual Machines, account: gpu-prod}\n"
    )
    rules = render_all(load_tunables(two))[RULES_FILE]
    assert (
        '  aispend_cloud_cost_last_day{service_category="AI and Machine Learning"}\n'
        '        or aispend_cloud_cost_last_day{account="gpu-prod", service="Virtual Machines"}\n'
        in rules
    )
    bad = tmp_path / "bad.yaml"
    for text, named in (
        ("reconcile_bill_selectors: [{sku: NC24}]\n", "not sku"),
        ("reconcile_bill_selectors: []\n", "at least 1 item"),
    ):
        bad.write_text(text)
        with pytest.raises(TunablesError) as err:
            load_tunables(bad)
        assert "reconcile_bill_selectors" in str(err.value) and named in str(err.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("anomaly_for: banana\n", "anomaly_for: not a Prometheus duration: 'banana'"),
        ("gpu_idle_for: 0m\n", "gpu_idle_for: '0m' must be longer than 0s"),
        (
            "month_burn: [{severity: critical, factor: 14.4, long: 1x, short: 5m}]\n",
            "month_burn.0.long: not a Prometheus duration: '1x'",
        ),
        ("gpu_hourly_prices: {H100: .nan}\n", "gpu_hourly_prices.H100:"),
        ("gpu_hourly_prices: {H100: -1}\n", "gpu_hourly_prices.H100:"),
        ("zscore_opt_out: [{teams: research}]\n", "zscore_opt_out:"),
    ],
)
def test_tunables_that_would_break_or_silently_change_the_rules(
    tmp_path: Path, text: str, named: str
) -> None:
    """Each was accepted: rules promtool rejects (a bad duration), a traceback (a bad
    burn window), `vector(NaN)` as a price, or an opt-out silently dropped."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(TunablesError) as err:
        load_tunables(bad)
    assert named in str(err.value)


def test_opt_out_label_value_with_a_quote_gives_valid_rules(tmp_path: Path) -> None:
    tunables = tmp_path / "t.yaml"
    tunables.write_text("zscore_opt_out: [{team: 'a\"b'}]\n")
    alerts = render_all(load_tunables(tunables))[ALERTS_FILE]
    assert 'zscore{team="a\\"b"}' in alerts
    path = tmp_path / "alerts.yml"
    path.write_text(alerts)
    done = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generate_into_a_path_that_cannot_be_written_writes_nothing(tmp_path: Path) -> None:
    """`docs` is a file: the error names it, and no rule file was written before it."""
    (tmp_path / "docs").write_text("not a directory")
    done = subprocess.run(
        [sys.executable, "-m", "aispend", "rules", "generate", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot write {tmp_path / 'docs'}")
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.rglob("*.yml"))


def test_a_write_that_fails_part_way_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    """Each file was rewritten in place: a full disk cut aispend.alerts.yml in the middle
    of an annotation, and promtool (and Prometheus) still loaded it, with its last six
    alerts gone (the ones that watch aispend itself). Now every file is written whole
    beside the old one before any is replaced."""
    generate(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    tunables = tmp_path / "tunables.yml"
    tunables.write_text(f'dashboard_url: "https://grafana.example.com/{"p" * 600}/d"\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aispend",
            "rules",
            "generate",
            "--out",
            str(tmp_path),
            "--tunables",
            str(tunables),
        ],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=file_size_limit(40_000),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.match(rf"error: cannot write {tmp_path}/\S+: File too large", done.stderr)
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    after.pop(tunables)
    assert after == before  # no file cut, no temporary file left
