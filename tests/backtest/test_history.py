"""History loading: CSV and FOCUS files, and the errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from aispend.backtest.history import HistoryError, SeriesKey, load_history

T0 = 1785542400  # 2026-08-01T00:00:00Z


def write(tmp_path: Path, text: str, name: str = "h.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_with_optional_columns_splits_series(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp,team,cost,agent,model\n"
        "2026-08-01T00:00:00Z,search,0.5,rerank,gpt-4o\n"
        "2026-08-01T00:00:00Z,search,0.25,crawler,gpt-4o\n"
        "2026-08-01T00:05:00Z,search,1.5,rerank,gpt-4o\n"
        "2026-08-01T00:15:00Z,search,2,rerank,gpt-4o\n",
    )
    history = load_history(path)
    assert history.step == 300
    assert history.series == {
        SeriesKey("search", agent="rerank", model="gpt-4o"): [
            (T0, 0.5),
            (T0 + 300, 1.5),
            (T0 + 900, 2.0),
        ],
        SeriesKey("search", agent="crawler", model="gpt-4o"): [(T0, 0.25)],
    }
    assert (history.start, history.end) == (T0, T0 + 1200)
    assert history.team_totals(600) == {"search": [(T0, 2.25), (T0 + 600, 2.0)]}


def test_nab_style_and_unix_timestamps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp,team,cost\n2026-08-01 00:00:00,a,1\n1785542460,a,2\n",
    )
    history = load_history(path)
    assert history.step == 60
    assert history.series[SeriesKey("a")] == [(T0, 1.0), (T0 + 60, 2.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "timestamp,cost\n2026-08-01T00:00:00Z,1\n",
            "h.csv line 1: missing column team ",
        ),
        (
            "time,team,price\n",
            "h.csv line 1: missing columns timestamp, cost ",
        ),
        (
            "timestamp,team,cost\n2026-08-01T00:05:00Z,a,1\n2026-08-01T00:00:00Z,a,1\n",
            "h.csv line 3: unsorted timestamp 2026-08-01T00:00:00Z: not after line 2 "
            "(2026-08-01T00:05:00Z) for team=a",
        ),
        (
            "timestamp,team,cost\n2026-08-01T00:05:00Z,a,1\n2026-08-01T00:05:00Z,a,2\n",
            "h.csv line 3: duplicate timestamp 2026-08-01T00:05:00Z: not after line 2",
        ),
        (
            "timestamp,team,cost\n2026-08-01T00:00:00Z,a,1\n2026-08-01T00:05:00Z,a,1.2.3\n",
            "h.csv line 3: cost '1.2.3' is not a number",
        ),
        (
            "timestamp,team,cost\n2026-08-01T00:00:00Z,a,nan\n",
            "h.csv line 2: cost 'nan' is not a finite number",
        ),
        (
            "timestamp,team,cost\n2026-08-01T00:00:00Z,a,-1\n",
            "h.csv line 2: cost '-1' is negative",
        ),
        (
            "timestamp,team,cost\nyesterday,a,1\n",
            "h.csv line 2: timestamp 'yesterday' is not RFC 3339",
        ),
        (
            "timestamp,team,cost\n2026-08-01T00:00:00Z,,1\n",
            "h.csv line 2: empty team",
        ),
        (
            "timestamp,team,cost\n1785542400000,a,1\n",  # milliseconds: year 58551
            "h.csv line 2: timestamp '1785542400000' is not Unix seconds from 1970 to 5138"
            " (milliseconds? divide by 1000)",
        ),
        (
            "timestamp,team,cost\n2026-08-01T00:00:00Z,a,1\n2026-08-01T00:05:00Z,a\n",
            "h.csv line 3: too few fields",
        ),
        (
            # An unquoted thousands separator: "1,234.50" read as 1 with 234.50 dropped.
            "timestamp,team,cost\n2026-08-01T00:00:00Z,a,1,234.50\n2026-08-01T00:05:00Z,a,2\n",
            "h.csv line 2: too many fields (expected 3; quote a value that holds a comma)",
        ),
        (
            "timestamp,team,cost\n"
            "2026-08-01T00:00:00Z,a,1\n2026-08-01T00:05:00Z,a,1\n2026-08-01T00:12:00Z,a,1\n",
            "h.csv line 4: irregular step for team=a: 420 s after line 3, not a multiple of"
            " the smallest gap, 300 s (team=a, line 3)",
        ),
        (
            # Before, the last "cost" column was read and the first silently ignored.
            "timestamp,team,cost,cost\n2026-08-01T00:00:00Z,a,1,5\n",
            "h.csv line 1: column 'cost' appears twice (columns 3 and 4); keep one",
        ),
        ("timestamp,team,cost\n", "h.csv: no rows after the header"),
        ("", "h.csv: empty file"),
    ],
)
def test_bad_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(HistoryError) as err:
        load_history(path)
    assert message in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot read"):
        load_history(tmp_path / "absent.csv")


FOCUS_HEADER = "BilledCost,ChargePeriodStart,ChargePeriodEnd,ProviderName,Tags\n"


def test_focus_export_is_summed_per_day_and_team_tag(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FOCUS_HEADER
        + '1.5,2024-09-01 10:00:00,2024-09-01 11:00:00,AWS,"{""team"": ""search""}"\n'
        + '2.5,2024-09-01 22:00:00,2024-09-01 23:00:00,AWS,"{""team"": ""search""}"\n'
        + '4,2024-09-03 00:00:00,2024-09-04 00:00:00,Microsoft,"{""team"": ""search""}"\n'
        + "0.25,2024-09-02 00:00:00,2024-09-03 00:00:00,Microsoft,NULL\n"
        # A blank team tag is untagged, as the billing exporter and backfill read it (it
        # was team "", a series without a team label that no team alert scores).
        + '0.5,2024-09-02 00:00:00,2024-09-03 00:00:00,Microsoft,"{""team"": "" ""}"\n',
        "focus.csv",
    )
    history = load_history(path)
    day = 86400
    d0 = 1725148800  # 2024-09-01
    assert history.step == day
    assert history.series == {
        SeriesKey("search", source="focus"): [(d0, 4.0), (d0 + day, 0.0), (d0 + 2 * day, 4.0)],
        SeriesKey("untagged", source="focus"): [(d0 + day, 0.75)],
    }


def test_focus_bad_cost_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FOCUS_HEADER + "x,2024-09-01 10:00:00,2024-09-01 11:00:00,AWS,NULL\n",
        "focus.csv",
    )
    with pytest.raises(HistoryError, match=r"focus.csv line 2: BilledCost 'x' is not a number"):
        load_history(path)


def test_clip_keeps_intervals_in_range(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "timestamp,team,cost\n" + "".join(f"{T0 + i * 60},a,{i}\n" for i in range(5)),
    )
    clipped = load_history(path).clip(T0 + 60, T0 + 180)
    assert clipped.series[SeriesKey("a")] == [(T0 + 60, 1.0), (T0 + 120, 2.0)]
    with pytest.raises(HistoryError, match="no history left"):
        load_history(path).clip(T0 + 600, None)


def test_focus_tags_nested_too_deeply_names_the_line(tmp_path: Path) -> None:
    deep = "[" * 10_000  # deeper than json.loads recurses, within the CSV field limit
    path = write(
        tmp_path,
        FOCUS_HEADER + f'1.5,2024-09-01 10:00:00,2024-09-01 11:00:00,AWS,"{deep}"\n',
        "focus.csv",
    )
    with pytest.raises(HistoryError, match=r"focus.csv line 2: Tags is not a JSON object"):
        load_history(path)


def test_header_with_spaces_after_the_commas(tmp_path: Path) -> None:
    rows = "2026-08-01T00:00:00Z,a,1\n2026-08-01T00:05:00Z,a,2\n"
    path = write(tmp_path, "timestamp, team, cost\n" + rows)
    assert load_history(path).series == {SeriesKey("a"): [(1785542400, 1.0), (1785542700, 2.0)]}


def test_focus_export_in_two_currencies_is_refused(tmp_path: Path) -> None:
    header = FOCUS_HEADER.replace("\n", ",BillingCurrency\n")
    path = write(
        tmp_path,
        header
        + "1.5,2024-09-01 10:00:00,2024-09-01 11:00:00,AWS,NULL,USD\n"
        + "2.5,2024-09-01 22:00:00,2024-09-01 23:00:00,AWS,NULL,EUR\n",
        "focus.csv",
    )
    with pytest.raises(HistoryError, match=r"focus.csv line 3: BillingCurrency EUR, but line 2"):
        load_history(path)


def test_series_with_different_steps_are_refused(tmp_path: Path) -> None:
    """An hourly team beside a 5-minute one: before, the file's smallest gap was every
    series' step, so each hour's cost was spent in 5 minutes and paged every hour."""
    rows = [f"{T0 + i * 300},a,0.1" for i in range(36)]
    rows += [f"{T0 + i * 3600},b,1.2" for i in range(3)]
    path = write(tmp_path, "timestamp,team,cost\n" + "\n".join(sorted(rows)) + "\n")
    with pytest.raises(HistoryError) as err:
        load_history(path)
    # b's second row (T0 + 1h) follows the header, b's first row and 13 rows of a.
    assert str(err.value).startswith(
        f"{path} line 16: team=b has a step of 3600 s, but team=a has 300 s (line 4): all"
        " series of a history need the same step"
    )


def test_a_sparse_series_at_the_files_step_is_read_with_missing_rows_as_no_spend(
    tmp_path: Path,
) -> None:
    """A rarely used agent has rows only where it spent, 10 or 15 minutes apart in a
    5-minute file: it is at the file's step, not at another one."""
    rows = [f"{T0 + i * 300},a,0.1," for i in range(12)]
    rows += [f"{T0 + i * 300},a,0.2,rare" for i in (0, 2, 5, 7)]
    path = write(tmp_path, "timestamp,team,cost,agent\n" + "\n".join(sorted(rows)) + "\n")
    history = load_history(path)
    assert history.step == 300
    [rare] = [points for key, points in history.series.items() if key.agent == "rare"]
    assert [ts - T0 for ts, _ in rare] == [0, 600, 1500, 2100]


def test_a_byte_that_is_not_utf8_is_reported_at_its_line(tmp_path: Path) -> None:
    """The decoder reads ahead in blocks: the error was reported at an earlier line."""
    rows = [f"{T0 + i * 300},team,1" for i in range(2000)]
    rows[1498] = f"{T0 + 1498 * 300},\xe9quipe,1"
    path = tmp_path / "h.csv"
    path.write_bytes(("timestamp,team,cost\n" + "\n".join(rows) + "\n").encode("latin-1"))
    with pytest.raises(HistoryError) as err:
        load_history(path)
    assert str(err.value) == (
        f"{path} line 1500: not UTF-8 (byte 0xe9 at column 12); re-save the file as UTF-8"
    )
