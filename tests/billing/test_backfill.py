"""`aispend backfill focus`: TSDB blocks from the FOCUS sample, loaded by a real Prometheus.

Real parts: promtool (creates the blocks), Prometheus 2.x (serves them, started on a
free loopback port with --storage.tsdb.path = the backfilled dir), the FOCUS 1.0
sample. Expected daily totals come from the csv module and Decimal.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aispend import metrics
from aispend.procs import ManagedProcess
from tests.billing.focus_files import write_rows
from tests.conftest import SHARED_DATA, free_port, require_binary

pytestmark = pytest.mark.integration

SAMPLE = SHARED_DATA / "focus" / "focus_sample.csv"
LAST_DAY = metrics.CLOUD_COST_LAST_DAY.name
MTD = metrics.CLOUD_COST_MONTH_TO_DATE.name
DATA_TS = metrics.CLOUD_COST_DATA_TIMESTAMP.name


def backfill(*args: str) -> subprocess.CompletedProcess[str]:
    """`aispend backfill focus ARGS` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "aispend", "backfill", "focus", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def day_end(day: str) -> float:
    d = dt.date.fromisoformat(day) + dt.timedelta(days=1)
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()


def expected() -> tuple[dict[str, dict[str, Decimal]], dict[str, Decimal]]:
    """BilledCost per day per team (business_unit tag), and per provider for September.
    A row counts on its charge day, or on its billing period's first day when charged
    before it: the sample's one row billed in October is on 10-01, a partial day."""
    per_day: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    per_provider: dict[str, Decimal] = defaultdict(Decimal)
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            tags = {} if row["Tags"] == "NULL" else json.loads(row["Tags"])
            team = tags.get("business_unit") or metrics.UNTAGGED_TEAM
            cost = Decimal(row["BilledCost"])
            day = max(row["ChargePeriodStart"][:10], row["BillingPeriodStart"][:10])
            if day < "2024-10-01":
                per_day[day][team] += cost
                per_provider[row["ProviderName"]] += cost
    return per_day, per_provider


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    tsdb = tmp_path / "tsdb"
    done = backfill(
        str(SAMPLE), "--tsdb", str(tsdb), "--cost", "BilledCost", "--team-tag", "business_unit"
    )
    assert done.returncode == 0, done.stderr
    assert "x 30 days (2024-09-01 to 2024-09-30)" in done.stdout
    assert "left out 2024-10-01: not complete in the data" in done.stdout
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n", encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        "prometheus",
        [
            require_binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
        ready_url=f"{url}/-/ready",
    )
    proc.start()
    try:
        proc.wait_ready(timeout=60)
        yield url, tsdb
    finally:
        proc.stop()


def query(url: str, expr: str, at: float) -> list[dict[str, Any]]:
    qs = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{qs}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


@pytest.mark.timeout(180)
def test_backfilled_history_returns_the_files_daily_totals(
    prometheus: tuple[str, Path],
) -> None:
    url, _ = prometheus
    per_day, per_provider = expected()
    assert len(per_day) == 30
    for day in ("2024-09-01", "2024-09-18", "2024-09-30"):
        got = by_label(query(url, f"sum by (team) ({LAST_DAY})", day_end(day)), "team")
        want = per_day[day]
        assert set(got) >= {t for t, v in want.items() if v != 0}, day
        for team, total in want.items():
            assert got.get(team, 0.0) == pytest.approx(float(total), abs=1e-9), (day, team)

    month_end = day_end("2024-09-30")
    window = f"sum by (provider) (sum_over_time({LAST_DAY}[30d]))"
    got = by_label(query(url, window, month_end), "provider")
    assert set(got) == set(per_provider)
    for provider, total in per_provider.items():
        assert got[provider] == pytest.approx(float(total), abs=1e-9), provider

    mtd = by_label(query(url, f"sum by (provider) ({MTD})", month_end), "provider")
    for provider, total in per_provider.items():
        assert mtd[provider] == pytest.approx(float(total), abs=1e-9), provider

    # The dashboards' "Bill data up to" at noon on 2024-10-01: the end of the 30th.
    data_end = f"max(last_over_time({DATA_TS}[25h]))"
    got = query(url, data_end, month_end + 12 * 3600)
    assert [float(r["value"][1]) for r in got] == [month_end]


def test_files_in_two_currencies_are_refused(tmp_path: Path) -> None:
    """The backfilled series carry no currency: EUR rows would be added to USD ones."""
    require_binary("promtool")
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows[:10]:
        row["BillingCurrency"] = "EUR"
    mixed = write_rows(tmp_path / "mixed.csv", rows)
    tsdb = tmp_path / "tsdb"
    done = backfill(str(mixed), "--tsdb", str(tsdb))
    assert done.returncode == 1
    assert "BillingCurrency must be one currency, found EUR, USD" in done.stderr
    assert "Traceback" not in done.stderr
    assert not tsdb.exists()


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        ("file", ["--tsdb", "{tmp}/afile"], "--tsdb {tmp}/afile: must be a directory"),
        ("file", ["--tsdb", "{tmp}/afile/sub"], "cannot write {tmp}/afile/sub: Not a directory"),
        (
            "dir",
            ["--tsdb", "{tmp}/tsdb", "--openmetrics", "{tmp}/adir"],
            "--openmetrics {tmp}/adir: must be a file",
        ),
        (
            "dir",
            ["--tsdb", "{tmp}/tsdb", "--openmetrics", "{tmp}/no/such/om.txt"],
            "--openmetrics: no directory {tmp}/no/such",
        ),
    ],
)
def test_output_paths_that_cannot_be_written_are_clear_errors(
    tmp_path: Path, make: str, args: list[str], message: str
) -> None:
    """They were tracebacks, and the bad --openmetrics left an empty --tsdb behind."""
    require_binary("promtool")
    if make == "file":
        (tmp_path / "afile").touch()
    else:
        (tmp_path / "adir").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(tmp=tmp_path) for a in args]
    done = backfill(str(SAMPLE), *argv)
    assert done.returncode == 1
    assert done.stderr == f"aispend backfill: {message.format(tmp=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_day_the_export_covers_in_part_is_left_out(tmp_path: Path) -> None:
    """Hourly rows of 1.0 for 2024-09-29 (24) and 2024-09-30 00:00-06:00 (6): only the
    29th is a complete day, as the billing exporter's last_day says. The 30th was written
    as a last_day of 6.0 and counted in the month to date."""
    require_binary("promtool")
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        template = next(csv.DictReader(fh))
    start = dt.datetime(2024, 9, 29)
    rows = []
    for hour in range(30):
        row = dict(template)
        begin, end = start + dt.timedelta(hours=hour), start + dt.timedelta(hours=hour + 1)
        row["ChargePeriodStart"] = begin.strftime("%Y-%m-%d %H:%M:%S")
        row["ChargePeriodEnd"] = end.strftime("%Y-%m-%d %H:%M:%S")
        row["BilledCost"] = row["EffectiveCost"] = "1.0"
        rows.append(row)
    export = write_rows(tmp_path / "partial.csv", rows)
    om = tmp_path / "history.om.txt"
    argv = [str(export), "--tsdb", str(tmp_path / "tsdb"), "--openmetrics", str(om)]
    done = backfill(*argv)
    assert done.returncode == 0, done.stderr
    assert "x 1 days (2024-09-29 to 2024-09-29)" in done.stdout
    assert (
        "left out 2024-09-30: not complete in the data (up to 2024-09-30 06:00 UTC); backfill a"
        " later export into the same --tsdb for it (if that export restates days written now,"
        " it is refused and says how to replace them)\n"
    ) in done.stdout
    samples = [line.rsplit(" ", 2) for line in om.read_text().splitlines() if line[0] != "#"]
    end_of_29th = str(int(day_end("2024-09-29")))
    assert [(name.split("{")[0], value, ts) for name, value, ts in samples] == [
        (LAST_DAY, "24.0", end_of_29th),
        (MTD, "24.0", end_of_29th),
        (DATA_TS, f"{end_of_29th}.0", end_of_29th),
    ]

    only_partial = write_rows(tmp_path / "only-partial.csv", rows[24:])
    tsdb = tmp_path / "tsdb2"
    done = backfill(str(only_partial), "--tsdb", str(tsdb))
    assert done.returncode == 1
    assert done.stderr == (
        "aispend backfill: the files hold no complete day (data up to 2024-09-30 06:00 UTC);"
        " nothing written\n"
    )
    assert not tsdb.exists()


def test_a_month_long_row_does_not_complete_a_partial_day(tmp_path: Path) -> None:
    """Hourly rows up to 2024-09-30 06:00 and a tax row for all of September: the 30th is
    still partial and left out. The tax row's end (10-01) made it count as complete."""
    require_binary("promtool")
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        template = next(csv.DictReader(fh))
    rows = []
    for hour in range(6):
        row = dict(template)
        row["ChargePeriodStart"] = f"2024-09-30 0{hour}:00:00"
        row["ChargePeriodEnd"] = f"2024-09-30 0{hour + 1}:00:00"
        rows.append(row)
    for day in range(1, 30):
        row = dict(template)
        row["ChargePeriodStart"] = f"2024-09-{day:02d} 00:00:00"
        row["ChargePeriodEnd"] = f"2024-09-{day + 1:02d} 00:00:00"
        rows.append(row)
    tax = template | {"ServiceName": "Tax", "ChargePeriodStart": "2024-09-01 00:00:00"}
    rows.append(tax | {"ChargePeriodEnd": "2024-10-01 00:00:00", "BilledCost": "0.5"})
    export = write_rows(tmp_path / "partial.csv", rows)
    om = tmp_path / "history.om.txt"
    argv = [str(export), "--tsdb", str(tmp_path / "tsdb"), "--openmetrics", str(om)]
    done = backfill(*argv, "--cost", "BilledCost")
    assert done.returncode == 0, done.stderr
    assert "x 29 days (2024-09-01 to 2024-09-29)" in done.stdout
    assert "left out 2024-09-30: not complete in the data (up to 2024-09-30 06:00 UTC)" in (
        done.stdout
    )
    samples = [line.rsplit(" ", 2) for line in om.read_text().splitlines() if line[0] != "#"]
    assert str(int(day_end("2024-09-30"))) not in {ts for _, _, ts in samples}
    tax_mtd = [v for n, v, _ in samples if n.startswith(MTD) and 'service="Tax"' in n]
    assert tax_mtd[-1] == "0.5"


def _blocks(tsdb: Path) -> set[str]:
    return {p.name for p in tsdb.iterdir() if (p / "meta.json").exists()}


def test_a_restated_day_already_backfilled_is_refused(tmp_path: Path) -> None:
    """The documented workflow: backfill an export up to 09-09, then a later export into
    the same --tsdb. Prometheus keeps the samples it holds where blocks overlap, so a
    later export that restates 09-05 (+1.0) could not correct it: it was written
    (exit 0) and history stayed wrong. Now it is refused before anything is written; the
    same export again, or a later one that only adds days, is written."""
    require_binary("promtool")
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    first = [r for r in rows if r["ChargePeriodEnd"] <= "2024-09-10 00:00:00"]
    restated = [
        r | {"BilledCost": str(Decimal(r["BilledCost"]) + 1)}
        if r["ChargePeriodStart"].startswith("2024-09-05")
        else r
        for r in rows
    ]
    files = {}
    for name, data in (("sep09", first), ("later", rows), ("restated", restated)):
        files[name] = tmp_path / f"{name}.csv"
        write_rows(files[name], data)
    tsdb = tmp_path / "tsdb"
    argv = ["--tsdb", str(tsdb), "--cost", "BilledCost", "--team-tag", "business_unit"]
    done = backfill(str(files["sep09"]), *argv)
    assert done.returncode == 0, done.stderr
    assert "x 9 days (2024-09-01 to 2024-09-09)" in done.stdout
    again = backfill(str(files["sep09"]), *argv)  # a re-run: the same values
    assert again.returncode == 0, again.stderr
    before = _blocks(tsdb)

    done = backfill(str(files["restated"]), *argv)
    assert done.returncode == 1
    # 09-05's last day, and the month to date of 09-05 to 09-09, differ
    assert done.stderr.startswith(
        f"aispend backfill: {tsdb} already holds other values for 2024-09-05, 2024-09-06,"
        " 2024-09-07, 2024-09-08, 2024-09-09 (an earlier backfill; this export restates"
        " them), and Prometheus keeps the samples it holds: nothing written. To replace"
        " those days, delete the old samples and run this again: with Prometheus running"
        " with --web.enable-admin-api, POST /api/v1/admin/tsdb/delete_series?match[]="
        '{__name__=~"aispend_cloud_cost_last_day|aispend_cloud_cost_month_to_date"}'
        "&start=2024-09-06T00:00:00Z&end=2024-09-10T00:00:00Z (a day's samples are at its"
        " end). Or backfill into an empty directory"
    )
    assert done.stdout == ""
    assert _blocks(tsdb) == before

    done = backfill(str(files["later"]), *argv)
    assert done.returncode == 0, done.stderr
    assert "x 30 days (2024-09-01 to 2024-09-30)" in done.stdout
    assert _blocks(tsdb) > before


def test_a_tsdb_whose_samples_cannot_be_read_is_refused(tmp_path: Path) -> None:
    """Without the check a restated day would be written unseen: refuse, with promtool's
    reason. (A block directory with a meta.json but no chunks: promtool reports it.)"""
    require_binary("promtool")
    tsdb = tmp_path / "tsdb"
    block = tsdb / "01M96HGCJDWT468C5RZRS95A0N"
    block.mkdir(parents=True)
    meta = {"ulid": block.name, "minTime": 1725235200000, "maxTime": 1727740800001}
    (block / "meta.json").write_text(json.dumps({**meta, "version": 1}), encoding="utf-8")
    done = backfill(str(SAMPLE), "--tsdb", str(tsdb))
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"aispend backfill: cannot read the samples already in {tsdb} (to check that this"
        f" export does not restate days written before): promtool tsdb dump failed (1):"
        f" corrupted block {block.name}"
    )
    assert sorted(p.name for p in tsdb.iterdir()) == [block.name]


@pytest.mark.timeout(180)
def test_a_day_that_ends_in_a_running_prometheuss_head_is_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run at 01:00 UTC, the newest complete day's samples (at 00:00) fall in a running
    Prometheus's head: a block there made it drop, at restart, its head samples older
    than 00:00 of every series (2 hours of every exporter's data, for a backfill run by
    cron after each nightly export). That day waits until 03:00; the days before go in."""
    from aispend import backfill as backfill_module
    from aispend.cli import main

    require_binary("promtool")
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        template = next(csv.DictReader(fh))
    rows = []
    for day in ("2024-09-29", "2024-09-30"):
        row = dict(template)
        row["ChargePeriodStart"] = f"{day} 00:00:00"
        row["ChargePeriodEnd"] = f"{dt.date.fromisoformat(day) + dt.timedelta(days=1)} 00:00:00"
        row["BilledCost"] = row["EffectiveCost"] = "1.0"
        rows.append(row)
    export = write_rows(tmp_path / "two-days.csv", rows)
    one_am = dt.datetime(2024, 10, 1, 1, tzinfo=dt.UTC).timestamp()
    monkeypatch.setattr(backfill_module, "time", type("Clock", (), {"time": lambda: one_am}))

    assert main(["backfill", "focus", str(export), "--tsdb", str(tmp_path / "tsdb")]) == 0
    out = capsys.readouterr().out
    assert "x 1 days (2024-09-29 to 2024-09-29)" in out
    assert (
        "held back 2024-09-30: its samples, at its end, would be in the newest 3 hours,"
        " which a running Prometheus may still hold in its head (a block there makes it"
        " drop its older head samples, of every series, at restart); backfill it again"
        " after 2024-10-01 03:00 UTC\n"
    ) in out

    last = write_rows(tmp_path / "last-day.csv", rows[1:])
    tsdb = tmp_path / "tsdb2"
    assert main(["backfill", "focus", str(last), "--tsdb", str(tsdb)]) == 1
    assert capsys.readouterr().err.endswith("2024-10-01 03:00 UTC; nothing written\n")
    assert not tsdb.exists()
