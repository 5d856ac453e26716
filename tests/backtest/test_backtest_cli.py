"""`aispend backtest` end to end: a generated history through a real Prometheus.

The history (one team, two days at 5-minute steps, a spend of 0.1 per interval) has a
labelled incident on day 2 (10:00-11:00, 2.0 per interval) and an unlabelled spike on
day 1 (15:00-15:20). The rules are this test's own small rule files (two recording
levels, `for:` on one alert), so every firing time below is worked out by hand from
PromQL's semantics: rate5m over 60 s samples is the average slope of the last five
minutes, which exceeds 0.001/s from one minute into a spike until four minutes after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aispend.backtest.cli import time_arg
from aispend.backtest.history import format_timestamp
from aispend.cli import main
from tests.conftest import processes_mentioning, require_binary

pytestmark = pytest.mark.integration

RECORDING = """\
groups:
- name: test-spend
  interval: 15s
  rules:
  - record: team:aispend_cost:rate5m
    expr: sum by (team) (rate(aispend_llm_cost_total[5m]))
- name: test-derived
  rules:
  - record: team:aispend_cost:rate5m:max10m
    expr: max_over_time(team:aispend_cost:rate5m[10m])
"""
ALERTING = """\
groups:
- name: test-alerts
  rules:
  - alert: TestHighSpend
    expr: team:aispend_cost:rate5m > 0.001
    for: 5m
    labels: {severity: critical}
  - alert: TestRecentHighSpend
    expr: team:aispend_cost:rate5m:max10m > 0.001
    labels: {severity: warning}
  - alert: TestSpending
    expr: >-
      team:aispend_cost:rate5m > 0
      and on(team) aispend_budget{period="month"} > 0
      and on(team) aispend_team_info{criticality="standard"}
    labels: {severity: info}
  - alert: TestNoSpend
    expr: team:aispend_cost:rate5m == 0
    labels: {severity: info}
"""


def _history(path: Path) -> None:
    rows = ["timestamp,team,cost"]
    for i in range(2 * 288):
        day, minute = divmod(i * 5, 1440)
        hour = minute // 60
        spike = (day == 0 and minute in range(900, 920)) or (day == 1 and hour == 10)
        rows.append(
            f"2026-08-0{1 + day}T{hour:02d}:{minute % 60:02d}:00Z,team-a,{2.0 if spike else 0.1}"
        )
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Path]:
    require_binary("prometheus")
    require_binary("promtool")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "aispend.rules.yml").write_text(RECORDING)
    (rules / "aispend.alerts.yml").write_text(ALERTING)
    history = tmp_path / "traces" / "hist.csv"
    history.parent.mkdir()
    _history(history)
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps({"traces/hist.csv": [["2026-08-02T10:00:00Z", "2026-08-02T11:00:00Z"]]})
    )
    return {"rules": rules, "history": history, "labels": labels}


def test_generated_history_gives_exact_alerts_and_score(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backtest", "--history", str(setup["history"]), "--labels", str(setup["labels"])]
    code = main([*argv, "--rules", str(setup["rules"]), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (out["from"], out["to"], out["teams"]) == (
        "2026-08-01T00:00:00Z",
        "2026-08-03T00:00:00Z",
        ["team-a"],
    )
    assert out["label_key"] == "traces/hist.csv"
    alerts = [
        (a["alertname"], a["team"], a["fired_at"], a["resolved_at"], a["labels"]["severity"])
        for a in out["alerts"]
    ]
    assert alerts == [
        ("TestSpending", "team-a", "2026-08-01T00:01:00Z", None, "info"),
        (
            "TestRecentHighSpend",
            "team-a",
            "2026-08-01T15:01:00Z",
            "2026-08-01T15:35:00Z",
            "warning",
        ),
        ("TestHighSpend", "team-a", "2026-08-01T15:06:00Z", "2026-08-01T15:25:00Z", "critical"),
        (
            "TestRecentHighSpend",
            "team-a",
            "2026-08-02T10:01:00Z",
            "2026-08-02T11:15:00Z",
            "warning",
        ),
        ("TestHighSpend", "team-a", "2026-08-02T10:06:00Z", "2026-08-02T11:05:00Z", "critical"),
    ]
    assert out["score"] == {
        "incidents": 1,
        "caught": 1,
        "recall": 1.0,
        "alert_episodes": 2,
        "false_alarms": 1,
        "precision": 0.5,
        "false_alarms_per_week": 3.5,
        "delay_median_seconds": 60.0,
        "delay_p90_seconds": 60.0,
    }
    assert out["incidents"] == [
        {
            "team": "team-a",
            "start": "2026-08-02T10:00:00Z",
            "end": "2026-08-02T11:00:00Z",
            "caught": True,
            "delay_seconds": 60,
        }
    ]

    # The same run as a table, limited to one alert and a time range.
    code = main(
        [
            *argv,
            "--rules",
            str(setup["rules"]),
            "--alerts",
            "TestHighSpend",
            "--from",
            "2026-08-02T00:00:00Z",
        ]
    )
    table = capsys.readouterr().out
    assert code == 0
    assert table.splitlines()[:3] == [
        "Backtest 2026-08-02T00:00:00Z .. 2026-08-03T00:00:00Z, teams: 1",
        "TEAM    ALERT          SEVERITY  FIRED                 RESOLVED              FOR",
        "team-a  TestHighSpend  critical  2026-08-02T10:06:00Z  2026-08-02T11:05:00Z  59m",
    ]
    assert "  incidents caught  1/1  recall 1.00" in table
    assert "  detection delay   median 6m  p90 6m" in table


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("timestamp,team\n2026-08-01T00:00:00Z,a\n", "line 1: missing column cost"),
        (
            "timestamp,team,cost\n2026-08-01T00:05:00Z,a,1\n2026-08-01T00:00:00Z,a,1\n",
            "line 3: unsorted timestamp",
        ),
        (
            "timestamp,team,cost\n2026-08-01T00:00:00Z,a,lots\n",
            "line 2: cost 'lots' is not a number",
        ),
    ],
)
def test_bad_history_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    history = tmp_path / "h.csv"
    history.write_text(content)
    assert main(["backtest", "--history", str(history)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aispend backtest: {history} ")
    assert message in err
    assert "Traceback" not in err


def test_missing_rules_and_bad_range_are_clear(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    history = str(setup["history"])
    assert main(["backtest", "--history", history, "--rules", str(empty)]) == 1
    assert "no aispend.alerts.yml; generate the rules first" in capsys.readouterr().err
    argv = ["backtest", "--history", history, "--from", "2026-08-02", "--to", "2026-08-01"]
    assert main(argv) == 2
    assert "--to must be after --from" in capsys.readouterr().err
    argv = ["backtest", "--history", history, "--labels", str(setup["labels"]), "--label-key", "x"]
    assert main([*argv, "--rules", str(setup["rules"])]) == 2
    assert "--label-key 'x' is not in the labels file" in capsys.readouterr().err


def test_existing_tsdb_directory_replays_the_same(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Prometheus data directory (here: the one a first run kept) is a history too."""
    keep = tmp_path / "keep"
    rules = ["--rules", str(setup["rules"]), "--alerts", "TestHighSpend", "--json"]
    assert main(["backtest", "--history", str(setup["history"]), "--keep", str(keep), *rules]) == 0
    first = json.loads(capsys.readouterr().out)
    # The kept directory is not reused: its TSDB would be mixed into the next replay.
    kept = sorted(p.relative_to(keep) for p in keep.rglob("*"))
    assert main(["backtest", "--history", str(setup["history"]), "--keep", str(keep), *rules]) == 1
    assert "must be a new or empty directory" in capsys.readouterr().err
    assert sorted(p.relative_to(keep) for p in keep.rglob("*")) == kept
    labels = ["--labels", str(setup["labels"]), "--label-key", "traces/hist.csv"]
    assert main(["backtest", "--history", str(keep / "data"), *labels, *rules]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [(a["fired_at"], a["resolved_at"]) for a in again["alerts"]] == [
        ("2026-08-01T15:06:00Z", "2026-08-01T15:25:00Z"),
        ("2026-08-02T10:06:00Z", "2026-08-02T11:05:00Z"),
    ]
    assert again["alerts"] == first["alerts"]
    assert (again["score"]["caught"], again["score"]["false_alarms"]) == (1, 1)


def test_missing_rows_are_zero_spend_or_unknown(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No rows from 12:00 to 14:00 on either day. Read as billing rows, those two hours spent
    # nothing (TestNoSpend fires); read as measurements, they are unknown (no samples:
    # nothing to fire on).
    history = tmp_path / "gap.csv"
    lines = setup["history"].read_text().splitlines()
    history.write_text(
        "\n".join(line for line in lines if "T12:" not in line and "T13:" not in line) + "\n"
    )
    argv = ["backtest", "--history", str(history), "--rules", str(setup["rules"]), "--json"]

    def no_spend(extra: list[str]) -> list[dict[str, object]]:
        assert main([*argv, *extra]) == 0
        alerts = json.loads(capsys.readouterr().out)["alerts"]
        return [a for a in alerts if a["alertname"] == "TestNoSpend"]

    zero = no_spend([])
    assert [(a["team"], a["fired_at"][:13]) for a in zero] == [
        ("team-a", "2026-08-01T12"),
        ("team-a", "2026-08-02T12"),
    ]
    assert no_spend(["--missing-rows", "unknown"]) == []


def test_labels_for_a_team_the_history_lacks_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Team "A" for team "a": before, nothing was scored and nothing said so."""
    history = tmp_path / "h.csv"
    history.write_text("timestamp,team,cost\n2026-08-01T00:00:00Z,a,1\n2026-08-01T00:05:00Z,a,1\n")
    labels = tmp_path / "labels.json"
    window = ["2026-08-01 00:00:00", "2026-08-01 01:00:00"]
    labels.write_text(json.dumps({"h.csv": {"A": [window]}}))
    assert main(["backtest", "--history", str(history), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "has windows for team(s) A, which the history does not have (its teams: a)" in err
    assert "Traceback" not in err


def test_bad_alerts_regex_headroom_and_rule_files_are_clear(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each is refused before any replay, without a traceback. An --alerts typo replayed
    no rule and read as "No alert would have fired"; a headroom of 0 or NaN derived no
    budget, silently; a malformed rule file was a KeyError or AttributeError."""
    base = ["backtest", "--history", str(setup["history"]), "--rules", str(setup["rules"])]
    assert main([*base, "--alerts", "TestHigh"]) == 2
    err = capsys.readouterr().err
    assert "--alerts 'TestHigh' matches no alert of the rules: TestHighSpend, TestNoSpend" in err
    for argv, message in [
        (["--alerts", "("], "--alerts: not a regular expression: '('"),
        (["--budget-headroom", "0"], "--budget-headroom: must be a finite number > 0, got '0'"),
        (["--budget-headroom", "nan"], "must be a finite number > 0, got 'nan'"),
        # spend to date reads the recorded hourly spend at whole hours: 420s misses some
        (["--eval-interval", "7m"], "--eval-interval: 420s does not divide an hour"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main([*base, *argv])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err

    bad = tmp_path / "bad-rules"
    bad.mkdir()
    (bad / "aispend.rules.yml").write_text(RECORDING)
    alerts = bad / "aispend.alerts.yml"
    for text, message in [
        ("groups:\n- name: g\n  rules:\n  - alert: A\n    for: 5m\n", "group g: A: no expr"),
        ("groups:\n- g\n", "a group is not a mapping (name, rules): 'g'"),
        ("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    for: soon\n",
         "group g: A: for: not a Prometheus duration: 'soon'"),
        ("groups:\n- name: g\n  rules: [x]\n", "group g: rule 1: not a mapping"),
    ]:  # fmt: skip
        alerts.write_text(text)
        argv = ["backtest", "--history", str(setup["history"]), "--rules", str(bad)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"aispend backtest: {alerts}: {message}" in err
        assert "Traceback" not in err


def test_tsdb_history_scores_the_teams_that_raised_no_alert(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels for every team: team-b spends evenly and never alerts, so its incident is
    missed. Before, a TSDB history scored only the teams that alerted (recall 1.0)."""
    history = tmp_path / "two.csv"
    rows = setup["history"].read_text().splitlines()
    quiet = [f"{line.split(',')[0]},team-b,0.1" for line in rows[1:]]
    history.write_text("\n".join([*rows, *quiet]) + "\n")
    labels = tmp_path / "labels.json"
    window = ["2026-08-02T10:00:00Z", "2026-08-02T11:00:00Z"]
    labels.write_text(json.dumps({"two.csv": [window], "keep/data": [window]}))
    keep = tmp_path / "keep"
    rules = ["--rules", str(setup["rules"]), "--alerts", "TestHighSpend", "--json"]

    def replay(path: Path, *extra: str) -> dict[str, object]:
        argv = ["backtest", "--history", str(path), "--labels", str(labels), *rules, *extra]
        assert main(argv) == 0
        return json.loads(capsys.readouterr().out)

    from_csv = replay(history, "--keep", str(keep))
    from_tsdb = replay(keep / "data")
    for out in (from_csv, from_tsdb):
        score = out["score"]
        assert isinstance(score, dict)
        assert (score["incidents"], score["caught"], score["recall"]) == (2, 1, 0.5)
        assert out["teams"] == ["team-a", "team-b"]


def test_range_evaluates_over_the_whole_history(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--from inside the day-1 spike's look-back: TestRecentHighSpend (the max of the
    last 10 minutes) is still firing at 15:25 and resolves at 15:35. Before, the CSV was
    clipped to the range first, so the rules never saw the spike: no alert."""
    argv = ["backtest", "--history", str(setup["history"]), "--rules", str(setup["rules"])]
    argv += ["--alerts", "TestRecentHighSpend", "--json"]
    day_1 = ["--from", "2026-08-01T15:25:00Z", "--to", "2026-08-02T00:00:00Z"]
    assert main([*argv, *day_1]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["from"], out["to"]) == ("2026-08-01T15:25:00Z", "2026-08-02T00:00:00Z")
    assert [(a["fired_at"], a["resolved_at"]) for a in out["alerts"]] == [
        ("2026-08-01T15:25:00Z", "2026-08-01T15:35:00Z")
    ]
    assert main([*argv, "--from", "2026-09-01T00:00:00Z"]) == 2
    assert (
        "no history between --from and --to (the history covers 2026-08-01T00:00:00Z .."
        " 2026-08-03T00:00:00Z)" in capsys.readouterr().err
    )


SIGTERM_DURING_REPLAY = """\
import os, signal, sys
from aispend.backtest import evaluate
from aispend.cli import main

replay = evaluate.alert_episodes

def terminated_while_querying(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return replay(*args, **kwargs)

evaluate.alert_episodes = terminated_while_querying
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_removes_the_temporary_tsdb_and_prometheus(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    """SIGTERM while the temporary Prometheus answers queries (sent from inside the run,
    so it lands at that point every time): exit 143, nothing left in $TMPDIR, no
    Prometheus running over it. Before, the process died where it stood."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    argv = ["backtest", "--history", str(setup["history"]), "--rules", str(setup["rules"])]
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_REPLAY, *argv],
        env={**os.environ, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (143, ""), done.stderr
    assert "aispend backtest: terminated (SIGTERM)" in done.stderr
    assert list(temp.iterdir()) == []
    assert processes_mentioning(str(temp)) == []


@pytest.mark.parametrize("offset_s", [-120, 0, 600])
def test_a_range_start_inside_an_alert_gives_the_full_replays_episode(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], offset_s: int
) -> None:
    """--from while TestHighSpend (for: 5m) is pending (-2 min before it fires), as it
    fires, or firing (+10 min): its episode is the full replay's, cut at --from. Before,
    `for:` counted from --from, so the alert fired 5 minutes late or not at all."""
    argv = ["backtest", "--history", str(setup["history"]), "--rules", str(setup["rules"])]
    argv += ["--alerts", "TestHighSpend", "--json"]
    assert main(argv) == 0
    full = json.loads(capsys.readouterr().out)["alerts"]
    day_2 = [a for a in full if a["fired_at"].startswith("2026-08-02")]
    assert len(day_2) == 1
    fired = time_arg(day_2[0]["fired_at"])
    start = fired + offset_s
    assert main([*argv, "--from", format_timestamp(start)]) == 0
    ranged = json.loads(capsys.readouterr().out)["alerts"]
    assert [(a["fired_at"], a["resolved_at"]) for a in ranged] == [
        (format_timestamp(max(fired, start)), day_2[0]["resolved_at"])
    ]
