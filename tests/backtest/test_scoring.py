"""Labels (NAB shape), the scorer, the two daily baselines, rule files, for: episodes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from aispend.backtest import baselines, openmetrics
from aispend.backtest.evaluate import episodes_from_steps
from aispend.backtest.history import DAY, History, SeriesKey
from aispend.backtest.labels import Labels, LabelsError, Window, load_labels
from aispend.backtest.rulefiles import (
    RecordingRule,
    RulesError,
    parse_duration,
    recording_levels,
    with_inputs,
)
from aispend.backtest.scoring import Episode, detections, score

T0 = 1785542400  # 2026-08-01T00:00:00Z, a Saturday
H = 3600


def test_label_key_is_the_longest_path_suffix(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps(
            {
                "spend_0001.csv": [["2026-08-02T00:00:00Z", "2026-08-02T01:00:00Z"]],
                "traces/spend_0001.csv": [["2026-08-03 00:00:00.000000", "2026-08-03 02:00:00"]],
                "traces/spend_0002.csv": [],
            }
        )
    )
    history = tmp_path / "data" / "traces" / "spend_0001.csv"
    got = load_labels(labels, history)
    assert got.key == "traces/spend_0001.csv"
    assert got.for_team("any") == [Window(T0 + 2 * DAY, T0 + 2 * DAY + 2 * H)]
    assert load_labels(labels, history, "traces/spend_0002.csv").for_team("x") == []
    with pytest.raises(LabelsError, match="--label-key 'nope' is not in the labels file"):
        load_labels(labels, history, "nope")
    with pytest.raises(LabelsError, match="no key in the labels file is a path suffix of"):
        load_labels(labels, tmp_path / "other.csv")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must be a JSON object"),
        ("{", "not JSON"),
        ("[" * 100_000, "not JSON: JSON nested too deeply to parse"),
        ('{"h.csv": [["2026-08-01T00:00:00Z"]]}', r"h.csv\[0\]: must be \[start, end\]"),
        ('{"h.csv": [["2026-08-02T00:00:00Z", "2026-08-01T00:00:00Z"]]}', "end is before start"),
        ('{"h.csv": [["soon", "later"]]}', r"h.csv\[0\]: timestamp 'soon' is not RFC 3339"),
        ('{"h.csv": {"a": 3}}', r"h.csv.a: must be a list"),
    ],
)
def test_bad_labels(tmp_path: Path, content: str, message: str) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(content)
    with pytest.raises(LabelsError, match=message):
        load_labels(labels, tmp_path / "h.csv")


def test_per_team_labels(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"h.csv": {"a": [[T0, T0 + 60]], "b": []}}))
    got = load_labels(labels, tmp_path / "h.csv")
    assert got.for_team("a") == [Window(T0, T0 + 60)]
    assert got.for_team("b") == []
    assert got.for_team("c") == []


def test_score_merges_episodes_per_team_and_counts_false_alarms() -> None:
    labels = Labels(
        "k",
        {
            "a": [Window(T0 + 10 * H, T0 + 12 * H), Window(T0 + 30 * H, T0 + 31 * H)],
            "b": [Window(T0 + 5 * H, T0 + 6 * H)],
        },
    )
    episodes = [
        # a: two alerts for the first incident (merged into one episode), delay 15 min
        Episode("X", "a", T0 + 10 * H + 900, T0 + 11 * H),
        Episode("Y", "a", T0 + 10 * H + 1800, T0 + 13 * H),
        # a: a false alarm, then nothing for the second incident
        Episode("X", "a", T0 + 20 * H, T0 + 21 * H),
        # b: already firing when its incident starts (delay 0), still firing at the end
        Episode("X", "b", T0 + 4 * H, None),
    ]
    end = T0 + 7 * DAY
    s = score(episodes, labels, ["a", "b"], T0, end)
    assert s.to_json() == {
        "incidents": 3,
        "caught": 2,
        "recall": 0.6667,
        "alert_episodes": 3,
        "false_alarms": 1,
        "precision": 0.6667,
        "false_alarms_per_week": 1.0,
        "delay_median_seconds": 450.0,
        "delay_p90_seconds": 810.0,
    }
    found = detections(episodes, labels, ["a", "b"], T0, end)[0]
    assert [(d.team, d.delay_seconds) for d in found] == [("a", 900), ("a", None), ("b", 0)]
    # Incidents outside the scored range are left out.
    assert score(episodes, labels, ["a"], T0 + 29 * H, end).incidents == 1


def test_episode_and_range_ends_are_exclusive() -> None:
    """An episode is [fired_at, resolved_at), the range [start, end). Before, an alert
    resolving as an incident started "caught" it, and windows touching the range's
    ends were scored."""
    start, end = T0, T0 + 4 * DAY
    labels = Labels(
        "k",
        {
            None: [
                Window(start - H, start),  # ends where the range starts
                Window(T0 + 2 * H, T0 + 3 * H),  # starts as the alert resolves
                Window(T0 + 5 * H, T0 + 5 * H),  # one instant, inside
                Window(end, end + H),  # starts at the range's exclusive end
            ]
        },
    )
    episodes = [Episode("X", "a", T0 + H, T0 + 2 * H), Episode("X", "a", T0 + 5 * H, T0 + 6 * H)]
    found, total, false = detections(episodes, labels, ["a"], start, end)
    assert [(str(d.window), d.delay_seconds) for d in found] == [
        ("2026-08-01T02:00:00Z..2026-08-01T03:00:00Z", None),
        ("2026-08-01T05:00:00Z..2026-08-01T05:00:00Z", 0),
    ]
    assert (total, false) == (2, 1)
    s = score(episodes, labels, ["a"], start, end)
    assert (s.incidents, s.caught, s.false_alarms, s.precision) == (2, 1, 1, 0.5)


def test_label_key_matches_a_symlinked_history_by_the_path_given(tmp_path: Path) -> None:
    """The link's own path names the labels entry; before, only its target was tried."""
    target = tmp_path / "store" / "blob-1234.csv"
    target.parent.mkdir()
    target.write_text("timestamp,team,cost\n")
    link = tmp_path / "traces" / "spend_0001.csv"
    link.parent.mkdir()
    link.symlink_to(target)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"traces/spend_0001.csv": [[T0, T0 + H]], "blob-1234.csv": []}))
    assert load_labels(labels, link).key == "traces/spend_0001.csv"
    assert load_labels(labels, target).key == "blob-1234.csv"
    # A key naming only the target still matches through the link.
    labels.write_text(json.dumps({"store/blob-1234.csv": []}))
    assert load_labels(labels, link).key == "store/blob-1234.csv"


def test_score_without_incidents_or_alerts() -> None:
    s = score([], Labels("k", {None: []}), ["a"], T0, T0 + 14 * DAY)
    assert (s.incidents, s.recall, s.precision, s.false_alarms_per_week) == (0, None, None, 0.0)
    assert (s.delay_median_seconds, s.delay_p90_seconds) == (None, None)


def daily_history(totals: list[float], team: str = "t") -> History:
    """One row per hour, each day's total spread evenly over its 24 hours."""
    points = [
        (T0 + d * DAY + h * H, total / 24) for d, total in enumerate(totals) for h in range(24)
    ]
    return History(H, {SeriesKey(team): points})


def test_static_baseline_flags_days_over_150_percent_of_30_day_average() -> None:
    totals = [100.0] * 10 + [151.0, 160.0, 100.0, 149.0, 100.0]
    history = daily_history(totals)
    assert baselines.static_rule(history) == [
        # day 10 and 11 flagged: fires when day 10 ends, resolves when day 12 ends
        Episode(baselines.STATIC, "t", T0 + 11 * DAY, T0 + 13 * DAY),
    ]


def test_zscore_baseline_on_14_previous_days_needs_7_days() -> None:
    # Alternating 90/110: mean 100, sample stdev ~10.5 over 14 days.
    totals = [90.0, 110.0] * 7 + [200.0, 100.0, 130.0]
    history = daily_history(totals)
    # A spike in the first 7 days is not judged (too little history).
    early = daily_history([100.0, 100.0, 500.0, 100.0, 100.0, 100.0, 100.0, 100.0])
    assert baselines.zscore_rule(early) == []
    # Day 14 (200): z = 9.6, flagged when it ends. Day 15 (100) is not: resolved when it
    # ends. Day 16 (130): mean 107.1, sd 27.6 of days 2..15 -> z 0.83, not flagged.
    assert baselines.zscore_rule(history) == [
        Episode(baselines.ZSCORE, "t", T0 + 15 * DAY, T0 + 16 * DAY),
    ]


def test_baselines_skip_partial_days() -> None:
    # Starts at noon: the first (partial) day is not a complete daily total.
    points = [(T0 + 12 * H + i * H, 1.0) for i in range(24 * 9)]
    totals = baselines.complete_daily_totals(History(H, {SeriesKey("t"): points}))
    assert totals["t"][0] == (T0 + DAY, 24.0)
    assert len(totals["t"]) == 8


def test_derive_budgets_and_openmetrics_text() -> None:
    history = History(300, {SeriesKey("a", agent="bot"): [(T0, 0.3), (T0 + 300, 0.6)]})
    budgets = openmetrics.derive_budgets(history, headroom=1.5)
    assert budgets == [
        openmetrics.BudgetSeries("a", "month", round(1.5 * 0.9 * 30.44, 4)),
        openmetrics.BudgetSeries("a", "day", 1.35),
    ]
    out = io.StringIO()
    count = openmetrics.write_openmetrics(
        openmetrics.TextSink(out),
        history,
        budgets[:1],
        [openmetrics.TeamMeta("a", "critical")],
        scrape=150,
    )
    lines = out.getvalue().splitlines()
    samples = [line for line in lines if line.startswith("aispend_llm_cost_total")]
    assert samples == [
        'aispend_llm_cost_total{agent="bot",team="a"} 0.0 1785542400',
        'aispend_llm_cost_total{agent="bot",team="a"} 0.15 1785542550',
        'aispend_llm_cost_total{agent="bot",team="a"} 0.3 1785542700',
        'aispend_llm_cost_total{agent="bot",team="a"} 0.6 1785542850',
        'aispend_llm_cost_total{agent="bot",team="a"} 0.9 1785543000',
    ]
    assert 'aispend_budget{period="month",team="a"} 41.094 1785543000' in lines
    assert 'aispend_team_info{criticality="critical",team="a"} 1.0 1785542400' in lines
    assert lines[-1] == "# EOF"
    assert count == 5 * 4


def test_each_series_exists_only_over_its_own_span() -> None:
    # Team "b" starts a day late and ends early: before and after its data it has no
    # counter (a new team, not one that spent nothing) and no daily totals.
    early = [(T0 + i * H, 1.0) for i in range(24 * 3)]
    late = [(T0 + DAY + i * H, 2.0) for i in range(24)]
    history = History(H, {SeriesKey("a"): early, SeriesKey("b"): late})
    assert history.team_spans() == {"a": (T0, T0 + 3 * DAY), "b": (T0 + DAY, T0 + 2 * DAY)}
    out = io.StringIO()
    openmetrics.write_openmetrics(openmetrics.TextSink(out), history, [], [], scrape=1800)
    times_b = [
        int(line.rsplit(" ", 1)[1])
        for line in out.getvalue().splitlines()
        if line.startswith('aispend_llm_cost_total{team="b"}')
    ]
    assert times_b == list(range(T0 + DAY, T0 + 2 * DAY + 1, 1800))
    assert out.getvalue().count('aispend_llm_cost_total{team="a"}') == 3 * 48 + 1
    totals = baselines.complete_daily_totals(history)
    assert totals == {
        "a": [(T0, 24.0), (T0 + DAY, 24.0), (T0 + 2 * DAY, 24.0)],
        "b": [(T0 + DAY, 48.0)],
    }


def test_unknown_gaps_have_no_samples_and_no_daily_totals() -> None:
    # Measurements (NAB): hours 30-41 of day 1 have no row. Unknown, not zero spend.
    points = [(T0 + i * H, 1.0) for i in range(24 * 3) if not 30 <= i < 42]
    history = History(H, {SeriesKey("m"): points}, gaps_are_unknown=True)
    assert [len(run) for run in history.runs(points)] == [30, 30]
    out = io.StringIO()
    openmetrics.write_openmetrics(openmetrics.TextSink(out), history, [], [], scrape=H)
    times = [
        int(line.rsplit(" ", 1)[1])
        for line in out.getvalue().splitlines()
        if line.startswith("aispend_llm_cost_total")
    ]
    assert times == [T0 + i * H for i in range(24 * 3 + 1) if not 31 <= i < 42]
    assert baselines.complete_daily_totals(history)["m"] == [(T0, 24.0), (T0 + 2 * DAY, 24.0)]
    zero = History(H, {SeriesKey("m"): points})  # billing rows: a missing row spent 0
    assert baselines.complete_daily_totals(zero)["m"][1] == (T0 + DAY, 12.0)


def test_recording_levels_follow_dependencies() -> None:
    rules = [
        RecordingRule("c", "avg_over_time(b[1h]) / a"),
        RecordingRule("a", "sum by (team) (rate(aispend_llm_cost_total[5m]))"),
        RecordingRule("b", 'a * on(team) group_left aispend_budget{period="day"}'),
        RecordingRule("d", 'label_replace(vector(1), "x", "c", "", "")'),
    ]
    levels = recording_levels(rules)
    assert [[r.record for r in level] for level in levels] == [["a", "d"], ["b"], ["c"]]
    with pytest.raises(RulesError, match="cycle"):
        recording_levels([RecordingRule("x", "y"), RecordingRule("y", "x + 1")])


def test_with_inputs_takes_the_named_rules_and_what_they_read_at_any_depth() -> None:
    rules = [
        RecordingRule("c", "avg_over_time(b[1h]) / a"),
        RecordingRule("a", "sum by (team) (rate(aispend_llm_cost_total[5m]))"),
        RecordingRule("b", 'a * on(team) group_left aispend_budget{period="day"}'),
        RecordingRule("d", 'label_replace(vector(1), "x", "c", "", "")'),
        RecordingRule("b", "a * 2"),  # a second rule recording b
    ]
    assert [r.record for r in with_inputs(rules, ["c"])] == ["c", "a", "b", "b"]
    assert [r.record for r in with_inputs(rules, ["b"])] == ["a", "b", "b"]
    # "c" in d is a string, not a series read; a name no rule records is no rule.
    assert [r.record for r in with_inputs(rules, ["d", "missing"])] == ["d"]


def test_parse_duration() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1w") == 604800
    with pytest.raises(RulesError):
        parse_duration("5 minutes")


def test_for_duration_delays_firing_and_drops_short_runs() -> None:
    step = 60
    active = [T0 + i * step for i in (0, 1, 2, 3, 4, 5, 6, 10, 11, 20, 21, 22, 23, 24, 25)]
    # for 5m: first run fires at +5m and resolves at +7m; the 2-step run never fires.
    assert episodes_from_steps(active, step, 300) == [
        (T0 + 300, T0 + 420),
        (T0 + 25 * step, T0 + 26 * step),
    ]
    assert episodes_from_steps(active, step, 0) == [
        (T0, T0 + 420),
        (T0 + 600, T0 + 720),
        (T0 + 1200, T0 + 1560),
    ]
