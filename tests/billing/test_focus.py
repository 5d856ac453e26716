"""FOCUS files: `aispend focus summarize`, the exporter's figures, and bad files.

Real data: the FinOps Foundation's FOCUS 1.0 sample (1,000 rows, AWS, Microsoft and
Oracle) read from ../shared/data/focus, never copied. Expected totals are computed
independently here with the csv module and Decimal.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import signal
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from aispend import metrics
from aispend.exporters.billing.focus import FocusError, FocusReader, FocusSource
from aispend.exporters.billing.model import build_snapshot
from aispend.exporters.billing.settings import FocusSettings, FocusTags
from aispend.procs import ManagedProcess, wait_until
from tests.billing.focus_files import write_rows
from tests.conftest import SHARED_DATA, free_port, require_binary, scrape

SAMPLE = SHARED_DATA / "focus" / "focus_sample.csv"
TAGS = FocusTags(team="business_unit", project="application", environment="environment")


def sample_rows(path: Path = SAMPLE) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def expected_totals(by: list[str], cost: str) -> dict[tuple[str, ...], Decimal]:
    totals: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for row in sample_rows():
        value = row[cost]
        totals[tuple(row[c] for c in by)] += Decimal("0" if value == "NULL" else value)
    return dict(totals)


def summarize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aispend", "focus", "summarize", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def parse_output(text: str, n_keys: int) -> dict[tuple[str, ...], Decimal]:
    rows = list(csv.reader(text.splitlines()))
    return {tuple(r[:n_keys]): Decimal(r[-1]) for r in rows[1:]}


def booked_day(row: dict[str, str]) -> str:
    """The day the exporter books a row on: its charge day, or the first day of its
    billing period when charged before it."""
    return max(row["ChargePeriodStart"][:10], row["BillingPeriodStart"][:10])


@pytest.mark.parametrize("cost", ["EffectiveCost", "BilledCost"])
@pytest.mark.parametrize("by", [["ProviderName"], ["ServiceCategory"]])
def test_summarize_totals_equal_an_independent_decimal_sum(by: list[str], cost: str) -> None:
    done = summarize(str(SAMPLE), "--by", *by, "--cost", cost)
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0]
    assert header == ",".join([*by, "BillingCurrency", cost])
    got = parse_output(done.stdout, len(by))
    assert got == expected_totals(by, cost)
    assert {r.split(",")[-2] for r in done.stdout.splitlines()[1:]} == {"USD"}


def test_summarize_by_provider_exact_figures() -> None:
    """The sample's totals, spelled out (they are also checked against Decimal above)."""
    done = summarize(str(SAMPLE), "--by", "ProviderName", "--cost", "BilledCost")
    got = parse_output(done.stdout, 1)
    assert set(got) == {("AWS",), ("Microsoft",), ("Oracle",)}
    assert sum(got.values()) == sum(expected_totals([], "BilledCost").values())


def test_summarize_by_team_tag_keeps_untagged_cost() -> None:
    done = summarize(str(SAMPLE), "--by", "team", "--team-tag", "business_unit")
    assert done.returncode == 0, done.stderr
    got = parse_output(done.stdout, 1)
    expected: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for row in sample_rows():
        tags = {} if row["Tags"] == "NULL" else json.loads(row["Tags"])
        team = tags.get("business_unit") or metrics.UNTAGGED_TEAM
        expected[(team,)] += Decimal(row["EffectiveCost"])
    assert got == dict(expected)
    assert (metrics.UNTAGGED_TEAM,) in got


def test_gzip_and_parquet_read_the_same(tmp_path: Path) -> None:
    gz = tmp_path / "focus.csv.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    parquet = tmp_path / "focus.parquet"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_csv('{SAMPLE}', nullstr='NULL',"
        " types={'BilledCost': 'DECIMAL(38,12)', 'EffectiveCost': 'DECIMAL(38,12)'}))"
        f" TO '{parquet}' (FORMAT parquet)"
    )
    con.close()
    want = expected_totals(["ServiceCategory"], "BilledCost")
    for path in (gz, parquet):
        header, rows = FocusReader([str(path)], "BilledCost").summarize(["ServiceCategory"])
        assert header == ["ServiceCategory", "BillingCurrency", "BilledCost"]
        assert {(r[0],): Decimal(r[2]) for r in rows} == want, path
    # a glob over both files counts each once
    header, rows = FocusReader([str(tmp_path / "focus.*")], "BilledCost").summarize([])
    assert rows == [("USD", str(2 * sum(want.values()).normalize()))]


def test_exporter_figures_match_the_file() -> None:
    """Per team, each day's and each month's cost = the file's per business_unit tag, each
    row on its booked day. The sample bills one Oracle row of 2024-09-30 22:00 in October:
    it is booked on 10-01, a day the data (up to 10-01 00:00) has not reached. The month
    served is the one the data has reached, September (it was October: a month to date
    of that one row, 0.00 of EffectiveCost, below the last day's 1.00); the last complete
    day is 2024-09-30. The data timestamp is the newest ChargePeriodEnd."""
    result = FocusReader([str(SAMPLE)], "BilledCost", TAGS).daily()
    snapshot = build_snapshot(result.rows, result.newest_period_end, fetched_at=2e9)
    october = build_snapshot(
        result.rows, result.newest_period_end, fetched_at=2e9, month=(2024, 10)
    )
    assert snapshot.data_timestamp == 1727740800.0  # 2024-10-01T00:00:00Z
    assert str(snapshot.last_day) == "2024-09-30"
    assert snapshot.month == (2024, 9)
    expected: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in sample_rows():
        tags = {} if row["Tags"] == "NULL" else json.loads(row["Tags"])
        team = tags.get("business_unit") or metrics.UNTAGGED_TEAM
        day = booked_day(row)
        cost = Decimal(row["BilledCost"])
        expected[day[:7]][team] += cost
        if day == "2024-09-30":
            expected["last"][team] += cost
    assert dict(expected["2024-10"]) == {"DenverDesign": Decimal("0.24")}
    for figures, month in ((snapshot, "2024-09"), (october, "2024-10")):
        by_team: dict[str, float] = defaultdict(float)
        last_by_team: dict[str, float] = defaultdict(float)
        for labels, fig in figures.costs.items():
            by_team[labels.team] += fig.month_to_date
            last_by_team[labels.team] += fig.last_day
        assert set(by_team) == set(expected[month]) | set(expected["last"])
        for team in by_team:
            want = expected[month].get(team, Decimal(0))
            want_last = expected["last"].get(team, Decimal(0))
            assert by_team[team] == pytest.approx(float(want), abs=1e-9), (month, team)
            assert last_by_team[team] == pytest.approx(float(want_last), abs=1e-9), team


def test_resource_series_are_of_the_served_month() -> None:
    """The top resources' month to date is of the month the figures serve: September,
    the month the data has reached. The one Oracle row billed in October (booked on
    10-01) made the resources October's, one line of 0.00 beside September's 14.98."""
    result = FocusReader([str(SAMPLE)]).daily(resource_cap=5)  # read now: after the data
    snapshot = build_snapshot(result.rows, result.newest_period_end, 2e9, result.resources)
    month_to_date = sum(f.month_to_date for f in snapshot.costs.values())
    resources = sum(r.month_to_date for r in snapshot.resources)
    assert snapshot.month == (2024, 9)
    assert round(month_to_date, 6) == 14.976514
    assert round(resources, 6) == round(month_to_date, 6)
    assert len([r for r in snapshot.resources if r.resource != metrics.OTHER]) == 5


def test_missing_columns_are_all_named(tmp_path: Path) -> None:
    rows = sample_rows()
    dropped = ["BilledCost", "ServiceName", "ChargePeriodStart"]
    path = tmp_path / "partial.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        fields = [c for c in rows[0] if c not in dropped]
        writer = csv.DictWriter(fh, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows[:10])
    done = summarize(str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == (
        f"aispend focus summarize: {path}: not a FOCUS export: missing columns"
        f" BilledCost, ChargePeriodStart, ServiceName ({44 - 3} columns found)"
    )


def _bad_copy(tmp_path: Path, line: int, column: str, value: str, **also: str) -> Path:
    """The sample with one field (and `also`) replaced on the given file line (header =
    line 1)."""
    rows = sample_rows()
    rows[line - 2][column] = value
    rows[line - 2].update(also)
    path = tmp_path / "bad.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]), quoting=csv.QUOTE_MINIMAL)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_malformed_cost_names_line_and_column(tmp_path: Path) -> None:
    path = _bad_copy(tmp_path, 57, "EffectiveCost", "twelve")
    with pytest.raises(FocusError) as err:
        FocusReader([str(path)]).summarize(["ProviderName"])
    message = str(err.value)
    assert message.startswith(f"{path}: line 57: ")
    assert 'column "EffectiveCost"' in message and '"twelve"' in message


def test_malformed_tags_name_the_line(tmp_path: Path) -> None:
    path = _bad_copy(tmp_path, 301, "Tags", '{"business_unit": "Lagos')
    with pytest.raises(FocusError) as err:
        FocusReader([str(path)], tags=TAGS).daily()
    assert str(err.value) == f"{path}: column Tags is not a JSON object on line 301"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-inf", "1e400"])
def test_cost_that_is_not_finite_names_the_line(tmp_path: Path, value: str) -> None:
    # The exporter reads costs as DOUBLE, which takes these; the exact summary's
    # DECIMAL refuses them on its own.
    path = _bad_copy(tmp_path, 42, "EffectiveCost", value)
    with pytest.raises(FocusError) as err:
        FocusReader([str(path)], tags=TAGS).daily()
    assert str(err.value) == f"{path}: column EffectiveCost is NaN or infinite on line 42"
    with pytest.raises(FocusError, match=f"{path}: line 42: "):
        FocusReader([str(path)]).summarize(["ProviderName"])


@pytest.mark.parametrize("value", ["", "NULL"])
@pytest.mark.parametrize("alone", [True, False])
def test_empty_cost_names_the_line(tmp_path: Path, value: str, alone: bool) -> None:
    """FOCUS costs are never null. A sum would count one as 0 beside other rows, and
    alone in its group the sum is null (the exporter crashed on it)."""
    also = {"ServiceName": "A Service No Other Row Has"} if alone else {}
    path = _bad_copy(tmp_path, 42, "EffectiveCost", value, **also)
    expected = f"{path}: column EffectiveCost is empty on line 42 (FOCUS: never null)"
    for read in (
        lambda: FocusReader([str(path)], tags=TAGS).daily(),
        lambda: FocusReader([str(path)]).summarize(["ProviderName"]),
    ):
        with pytest.raises(FocusError) as err:
            read()
        assert str(err.value) == expected


def test_row_without_charge_period_start_is_refused(tmp_path: Path) -> None:
    # The exporter cannot place such a cost on a day; it keeps its last good snapshot.
    path = _bad_copy(tmp_path, 12, "ChargePeriodStart", "NULL")
    with pytest.raises(FocusError) as err:
        FocusReader([str(path)], tags=TAGS).daily()
    assert str(err.value) == f"{path}: rows without ChargePeriodStart"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("ChargePeriodStart", "09/18/2024 22:00:00"),
        ("ChargePeriodEnd", "tomorrow"),
        ("BillingPeriodStart", "2024-13-01 00:00:00"),
        ("ChargePeriodStart", "infinity"),
        ("BillingPeriodStart", "infinity"),
    ],
)
def test_malformed_period_names_the_line(tmp_path: Path, column: str, value: str) -> None:
    """The module promises file, line and column; DuckDB's cast error gave neither line.
    DuckDB reads `infinity` as a timestamp: such a row was booked on no day, and its
    cost vanished from every figure."""
    path = _bad_copy(tmp_path, 22, column, value)
    with pytest.raises(FocusError) as err:
        FocusReader([str(path)], tags=TAGS).daily()
    assert str(err.value) == f"{path}: column {column} is not a timestamp on line 22: {value!r}"


def test_a_row_charged_in_the_future_is_refused_naming_the_line(tmp_path: Path) -> None:
    """A row starting more than a day after the read time (FUTURE_TOLERANCE_SECONDS) was
    booked on a day no figure shows, and its end moved the data timestamp up to the read
    time: stale data looked fresh. A day ahead is allowed (clock skew)."""
    path = _bad_copy(
        tmp_path,
        22,
        "ChargePeriodStart",
        "2024-10-03 00:00:00",
        ChargePeriodEnd="2024-10-03 01:00:00",
        BillingPeriodStart="2024-10-01 00:00:00",
        BillingPeriodEnd="2024-11-01 00:00:00",
    )
    settings = FocusSettings(paths=[str(path)], cost_column="BilledCost", tags=TAGS)
    october_1 = 1727740800.0  # 2024-10-01 00:00 UTC, two days before the row
    with pytest.raises(FocusError) as err:
        FocusSource(settings, "USD", clock=lambda: october_1).fetch()
    assert str(err.value) == (
        f"{path}: column ChargePeriodStart is more than 1 day after the read time"
        " (2024-10-01T00:00:00Z) on line 22: '2024-10-03 00:00:00' (a row from the future"
        " would be left out of every figure: check the clock of this host and of the export)"
    )
    a_day_later = october_1 + 86400 + 3600  # the row starts 23 hours after this read
    assert FocusSource(settings, "USD", clock=lambda: a_day_later).fetch().costs


def test_short_row_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    text = SAMPLE.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([*text[:5], "1,2,3", *text[5:]]) + "\n", encoding="utf-8")
    with pytest.raises(FocusError) as err:
        FocusReader([str(path)]).summarize(["ProviderName"])
    assert str(err.value).startswith(f"{path}: line 6: Expected Number of Columns: 44 Found: 3")


def test_unknown_by_column_and_missing_file(tmp_path: Path) -> None:
    done = summarize(str(SAMPLE), "--by", "Nope")
    assert done.returncode == 1
    assert "missing column Nope" in done.stderr
    done = summarize(str(SAMPLE.parent))  # a folder was reported as "no such file"
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"aispend focus summarize: {SAMPLE.parent}: is a directory; give a glob of its"
        f" files, such as {SAMPLE.parent / '**' / '*.parquet'}"
    )
    missing = tmp_path / "absent-*.csv"
    done = summarize(str(missing))
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == f"aispend focus summarize: {missing}: no such file (glob matched none)"
    )


def test_once_output_passes_promtool(tmp_path: Path) -> None:
    """The whole sample: September is the month served (its one row billed in October
    waits for the data to reach 10-01), with more resources than the cap."""
    config = tmp_path / "aispend.yaml"
    config.write_text(
        "teams: [{name: search}]\n"
        "sources:\n"
        "  focus:\n"
        f"    paths: ['{SAMPLE}']\n"
        "    cost_column: BilledCost\n"
        "    tags: {team: business_unit, project: application}\n"
        "    resource_series: true\n"
        "    max_resources: 50\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "aispend", "exporter", "billing", "--config", str(config), "--once"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert 'aispend_exporter_up{source="focus"} 1.0' in text
    assert 'aispend_cloud_cost_data_timestamp_seconds{source="focus"} 1.7277408e+09' in text
    resource_lines = [
        line
        for line in text.splitlines()
        if line.startswith(metrics.CLOUD_RESOURCE_COST_MONTH_TO_DATE.name + "{")
    ]
    assert len([r for r in resource_lines if 'resource="other"' not in r]) == 50
    check = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=done.stdout,
        capture_output=True,
        check=False,
    )
    assert check.returncode == 0 and check.stdout == b"" and check.stderr == b"", check


def test_sighup_keeps_the_billing_exporter_serving(tmp_path: Path) -> None:
    """SIGHUP's default ends a process. The README says the gateway, budgets and GPU
    exporters reload aispend.yaml on it, so an operator may send it to every aispend
    process: the billing exporter, which reads its config at start only, went away
    without a log line. It keeps serving and says a restart applies the change."""
    config = tmp_path / "aispend.yaml"
    config.write_text(
        f"teams: [{{name: search}}]\nsources: {{focus: {{paths: ['{SAMPLE}']}}}}\n",
        encoding="utf-8",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "billing.log"
    argv = [sys.executable, "-m", "aispend", "exporter", "billing", "--config", str(config)]
    proc = ManagedProcess(
        "billing",
        [*argv, "--listen", f"127.0.0.1:{port}"],
        log,
        ready_url=url,
    )
    up = 'aispend_exporter_up{source="focus"} 1.0'
    proc.start()
    try:
        proc.wait_ready(30)
        wait_until(lambda: up in scrape(url), 30, what="the first FOCUS refresh")
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGHUP)
        wait_until(
            lambda: "restart it to apply an edit" in log.read_text(), 10, what="the log line"
        )
        assert proc.alive()
        assert up in scrape(url)
    finally:
        proc.stop()


def test_a_file_reached_by_two_paths_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative and an absolute path, or a symlink, to one export: counted once."""
    monkeypatch.chdir(SAMPLE.parent)
    link = tmp_path / "link.csv"
    link.symlink_to(SAMPLE)
    reader = FocusReader([SAMPLE.name, str(SAMPLE), str(link)], "BilledCost")
    assert reader.summarize([])[1] == FocusReader([str(SAMPLE)], "BilledCost").summarize([])[1]


def test_tag_key_outside_ascii_is_matched(tmp_path: Path) -> None:
    """The JSON path must carry the key's own characters: DuckDB does not decode \\u."""
    rows = sample_rows()
    for row in rows:
        if row["Tags"] != "NULL":
            tags = json.loads(row["Tags"])
            if "business_unit" in tags:
                tags["équipe"] = tags.pop("business_unit")
            row["Tags"] = json.dumps(tags, ensure_ascii=False)
    path = write_rows(tmp_path / "focus.csv", rows)
    tags = FocusTags(team="équipe", project="application", environment="environment")
    teams = {r.labels.team for r in FocusReader([str(path)], "BilledCost", tags).daily().rows}
    expected = {r.labels.team for r in FocusReader([str(SAMPLE)], "BilledCost", TAGS).daily().rows}
    assert teams == expected
    assert teams - {metrics.UNTAGGED_TEAM}


@pytest.mark.parametrize(("currency", "named"), [("EUR", "EUR"), ("", "(empty)")])
def test_rows_in_another_currency_or_none_are_refused(
    tmp_path: Path, currency: str, named: str
) -> None:
    """The exporter's series carry no currency: a row not in the config's would be added
    to the rest as if it were."""
    path = _bad_copy(tmp_path, 10, "BillingCurrency", currency)
    source = FocusSource(FocusSettings(paths=[str(path)], cost_column="BilledCost"), "USD")
    with pytest.raises(
        FocusError, match=rf"BillingCurrency {re.escape(named)}, but the config's currency is USD"
    ):
        source.fetch()


@pytest.mark.parametrize(
    ("command", "prog"),
    [
        (["focus", "summarize"], "aispend focus summarize"),
        (["backfill", "focus"], "aispend backfill"),
    ],
)
def test_bad_tag_key_is_one_line_in_the_validators_words(
    command: list[str], prog: str, tmp_path: Path
) -> None:
    """Checked before any file is read (backfill needs promtool on PATH to get there)."""
    if command[0] == "backfill":
        require_binary("promtool")
    done = subprocess.run(
        [sys.executable, "-m", "aispend", *command, str(SAMPLE), "--team-tag", 'a"b']
        + (["--tsdb", str(tmp_path / "tsdb")] if command[0] == "backfill" else []),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        f"{prog}: bad tag key: must be a tag key of 1-512 characters without quotes or"
        " backslashes\n"
    )
    assert not (tmp_path / "tsdb").exists()


def month_long_tax(template: dict[str, str]) -> dict[str, str]:
    """A row charged for the whole of September, as AWS and Azure bill tax and fees."""
    return template | {
        "ChargeCategory": "Tax",
        "ServiceName": "Tax",
        "ServiceCategory": "Other",
        "ChargePeriodStart": "2024-09-01 00:00:00",
        "ChargePeriodEnd": "2024-10-01 00:00:00",
        "BilledCost": "0.5",
        "EffectiveCost": "0.5",
        "Tags": "NULL",
    }


def test_a_month_long_row_does_not_extend_the_data(tmp_path: Path) -> None:
    """An export whose usage stops at 2024-09-10 06:00, read ten days later, with one
    month-long tax row: the data still ends at 09-10 06:00 (09-10 is partial, and the
    staleness alert sees a 10-day-old data timestamp). It read up to the read time:
    09-10 served as the complete last day, and the alert silenced."""
    cut = "2024-09-10 06:00:00"
    kept = [r for r in sample_rows() if r["ChargePeriodEnd"] <= cut]
    path = write_rows(tmp_path / "partial.csv", [*kept, month_long_tax(kept[0])])
    read_at = 1726833600.0  # 2024-09-20 12:00 UTC
    source = FocusSource(FocusSettings(paths=[str(path)], tags=TAGS), "USD", clock=lambda: read_at)
    snapshot = source.fetch()
    assert snapshot.data_timestamp == 1725948000.0  # 2024-09-10 06:00 UTC
    assert str(snapshot.last_day) == "2024-09-09"
    month = sum(f.month_to_date for f in snapshot.costs.values())
    want = sum(Decimal(r["EffectiveCost"]) for r in kept) + Decimal("0.5")
    assert month == pytest.approx(float(want), abs=1e-9)  # the tax is still counted

    # Only long rows: no row says how far the data reaches; the end of the newest day.
    only_tax = write_rows(tmp_path / "tax.csv", [month_long_tax(kept[0])])
    result = FocusReader([str(only_tax)]).daily()
    assert result.newest_period_end is None
    snapshot = build_snapshot(result.rows, result.newest_period_end, fetched_at=read_at)
    assert snapshot.data_timestamp == 1725235200.0  # 2024-09-02 00:00 UTC


def test_a_correction_of_a_closed_month_counts_in_the_month_that_bills_it(
    tmp_path: Path,
) -> None:
    """October's export (the sample moved a month on) with a -5 refund of September usage,
    filed as FOCUS prescribes: BillingPeriod October, ChargePeriod in September. It is in
    October's month to date, which then equals the October invoice. It was booked on
    09-15, in no month the exporter serves: the refund vanished from every figure."""
    rows = []
    for row in sample_rows():
        for column in ("ChargePeriodStart", "ChargePeriodEnd"):
            row[column] = row[column].replace("2024-10-01", "2024-11-01").replace("-09-", "-10-")
        row["BillingPeriodStart"] = "2024-10-01 00:00:00"
        row["BillingPeriodEnd"] = "2024-11-01 00:00:00"
        rows.append(row)
    refund = rows[0] | {
        "ChargeCategory": "Credit",
        "ChargeClass": "Correction",
        "ChargePeriodStart": "2024-09-15 00:00:00",
        "ChargePeriodEnd": "2024-09-16 00:00:00",
        "BilledCost": "-5",
        "EffectiveCost": "-5",
        "Tags": '{"business_unit": "ViennaAI"}',
    }
    path = write_rows(tmp_path / "october.csv", [*rows, refund])
    result = FocusReader([str(path)], "EffectiveCost", TAGS).daily()
    refund_rows = [r for r in result.rows if r.cost == -5.0]
    assert [(r.labels.team, str(r.day)) for r in refund_rows] == [("ViennaAI", "2024-10-01")]
    snapshot = build_snapshot(result.rows, result.newest_period_end, fetched_at=2e9)
    assert snapshot.month == (2024, 10)
    _, invoice = FocusReader([str(path)]).summarize(["BillingPeriodStart"])
    assert invoice == [("2024-10-01 00:00:00", "USD", invoice[0][2])]
    month = sum(f.month_to_date for f in snapshot.costs.values())
    assert month == pytest.approx(float(invoice[0][2]), abs=1e-9)
    vienna = sum(f.month_to_date for k, f in snapshot.costs.items() if k.team == "ViennaAI")
    want = sum(Decimal(r["EffectiveCost"]) for r in [*rows, refund] if "ViennaAI" in r["Tags"])
    assert vienna == pytest.approx(float(want), abs=1e-9)
