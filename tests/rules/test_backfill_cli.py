"""`aispend rules backfill`'s errors, without a Prometheus: each names what is wrong and
writes nothing. The success path, against a real Prometheus over backfilled history,
is in test_prometheus_integration.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from aispend.cli import main
from aispend.rules.backfill import default_start
from tests.conftest import REPO, free_port

RULES = str(REPO / "alert-rules" / "aispend.rules.yml")


def test_from_after_to_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "blocks"
    argv = ["rules", "backfill", "--url", "http://127.0.0.1:1", "--output", str(out)]
    code = main([*argv, "--from", "2026-12-02T00:00:00Z", "--to", "2026-12-01T00:00:00Z"])
    assert code == 2
    assert (
        "--from (2026-12-02T00:00:00Z) must be before --to (2026-12-01T00:00:00Z)"
        in capsys.readouterr().err
    )
    assert not out.exists()


def test_a_prometheus_not_answering_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "blocks"
    code = main(["rules", "backfill", "--url", url, "--output", str(out), "--rules", RULES])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Prometheus status/tsdb failed:"), err
    assert not out.exists()


def test_rules_without_the_hourly_spend_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "old.rules.yml"
    rules.write_text("groups:\n- name: g\n  rules:\n  - record: a:b:c\n    expr: vector(1)\n")
    argv = ["rules", "backfill", "--url", "http://127.0.0.1:1", "--output", str(tmp_path / "o")]
    assert main([*argv, "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "records no team_project_agent:aispend_cost:increase1h" in err
    assert "aispend rules generate" in err
    # Rules with the hourly spend but not the baselines' hourly rates are refused too.
    rules.write_text(
        "groups:\n- name: g\n  rules:\n  - record: team_project_agent:aispend_cost:increase1h\n"
        "    expr: vector(1)\n  - record: team_model:aispend_cost:rate1h\n    expr: vector(1)\n"
    )
    assert main([*argv, "--rules", str(rules)]) == 2
    assert "records no team_agent:aispend_cost:rate1h:" in capsys.readouterr().err
    (tmp_path / "bad.yml").write_text("groups: [")
    assert main([*argv, "--rules", str(tmp_path / "bad.yml")]) == 2
    assert "cannot read rules" in capsys.readouterr().err


def test_the_default_start_covers_the_month_and_the_baselines_reach() -> None:
    # 4 weeks and an hour back: the weekly trend's oldest week and the hour before it.
    at = dt.datetime(2026, 12, 3, 17, 25, tzinfo=dt.UTC).timestamp()
    assert default_start(at) == dt.datetime(2026, 11, 5, 16, tzinfo=dt.UTC).timestamp()
    at = dt.datetime(2026, 12, 31, 17, 25, tzinfo=dt.UTC).timestamp()
    assert default_start(at) == dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
