"""`aispend demo history` and the demo's options: what they refuse and what they write.

Real parts: promtool loads the generated OpenMetrics into TSDB blocks. The spend in the
history is the demo's simulated workload, by design.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aispend.cli import main
from tests.conftest import EXAMPLE_CONFIG, require_binary


def test_label_values_with_quotes_are_escaped(tmp_path: Path) -> None:
    """A team owner such as `Search "on-call" <...>` passes `config check`; written into
    the history unescaped, promtool refused the file and `make demo` stopped there."""
    require_binary("promtool")
    owner = 'Search "on-call" \\\\ <search-oncall@example.com>'
    config = tmp_path / "aispend.yaml"
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    config.write_text(
        text.replace("owner: search-oncall@example.com", f"owner: '{owner}'"), encoding="utf-8"
    )
    assert main(["config", "check", str(config)]) == 0
    out, tsdb = tmp_path / "history", tmp_path / "tsdb"
    argv = ["demo", "history", "--config", str(config), "--out", str(out), "--days", "1"]
    assert main([*argv, "--tsdb", str(tsdb)]) == 0
    escaped = 'owner="Search \\"on-call\\" \\\\\\\\ <search-oncall@example.com>"'
    assert escaped in (out / "history.om.txt").read_text(encoding="utf-8")
    assert any(p.is_dir() and (p / "meta.json").exists() for p in tsdb.iterdir())


@pytest.mark.parametrize("command", [["demo"], ["demo", "history", "--out", "unused"]])
@pytest.mark.parametrize("days", ["nan", "-1", "0", "61"])
def test_days_outside_the_range_are_refused(
    command: list[str], days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`aispend demo --days nan` crashed in the generator; -1 started a stack with no
    history. Both commands now take the range `demo history` checked."""
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--days", days])
    assert exit_.value.code == 2
    assert f"argument --days: must be in (0, 60], got '{days}'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--rules-backfill-hours", "--warmup"])
def test_demo_durations_must_be_finite_and_not_negative(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for value in ("nan", "-1", "inf"):
        with pytest.raises(SystemExit) as exit_:
            main(["demo", option, value])
        assert exit_.value.code == 2
        assert f"must be a finite number >= 0, got '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("held", ["a block", "a file"])
def test_a_tsdb_that_is_not_an_empty_directory_is_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], held: str
) -> None:
    """Loaded twice into one directory (or beside a Prometheus's own scrapes), the two
    sets of counter samples interleave and every dip reads as a counter reset: a day's
    spend came out 58 times too high. Nothing is written when it is refused."""
    out, tsdb = tmp_path / "history", tmp_path / "tsdb"
    if held == "a block":
        (tsdb / "01JEXAMPLE").mkdir(parents=True)
        expected = "is not empty: load the demo history into an empty directory"
    else:
        tsdb.write_text("")
        expected = "is a file, not a directory"
    argv = ["demo", "history", "--config", str(EXAMPLE_CONFIG), "--out", str(out), "--days", "1"]
    assert main([*argv, "--tsdb", str(tsdb)]) == 1
    assert f"aispend demo history: --tsdb {tsdb}: {expected}" in capsys.readouterr().err
    assert not out.exists()
