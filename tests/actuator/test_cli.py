"""`aispend actuator audit` output, and start-up errors a user can act on."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
import yaml

from aispend.actuators.cli import with_dry_run
from aispend.actuators.policy import dry_run_of
from aispend.actuators.settings import ActionsSettings
from aispend.actuators.store import ActionRow, AuditRecord, Store
from aispend.cli import main
from tests.conftest import EXAMPLE_CONFIG


def _fill(path, clock):
    store = Store(path, clock=clock)
    labels = {"alertname": "AISpendRunawaySpend", "team": "search", "agent": "rerank-agent"}
    store.record(
        ActionRow(
            "ab12",
            "2024-05-01T10:00:00+00:00",
            "applied",
            labels,
            "throttle-agent",
            "gw",
            "throttle",
            False,
            "search",
        ),
        AuditRecord(
            "ab12",
            "2024-05-01T10:00:00+00:00",
            "firing",
            labels,
            "apply",
            "ok",
            "throttle-agent",
            "gw",
            "throttle",
            False,
            detail="rate rule am-ab12",
        ),
    )
    return store


def test_audit_text_json_and_since(tmp_path, capsys):
    db = tmp_path / "state.sqlite3"
    now = [1_714_557_600.0]  # 2024-05-01T10:00:00Z
    store = _fill(db, lambda: now[0])
    now[0] += 7200
    store.record(
        None,
        AuditRecord(
            "cd34",
            "2024-05-01T12:00:00+00:00",
            "firing",
            {"alertname": "X", "team": "support"},
            "skip",
            "skipped: critical",
            "throttle-agent",
            "gw",
            "throttle",
            False,
        ),
    )
    store.close()
    assert main(["actuator", "audit", "--state-db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "2024-05-01T10:00:00Z apply  ok                       AISpendRunawaySpend[ab12] team=search"
        " throttle-agent -> gw/throttle rate rule am-ab12"
    )
    assert lines[1].startswith(
        "2024-05-01T12:00:00Z skip   skipped: critical        X[cd34] team=support"
    )
    assert main(["actuator", "audit", "--state-db", str(db), "--json"]) == 0
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["decision"], r["result"], r["team"]) for r in records] == [
        ("apply", "ok", "search"),
        ("skip", "skipped: critical", "support"),
    ]
    assert records[0]["labels"]["agent"] == "rerank-agent"
    # --since is relative to now: both records are older than an hour ago.
    assert main(["actuator", "audit", "--state-db", str(db), "--since", "1h"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["actuator", "audit", "--state-db", str(db), "--since", "soon"]) == 2
    assert "--since: must be a duration" in capsys.readouterr().err


def test_audit_without_database(tmp_path, capsys):
    assert main(["actuator", "audit", "--state-db", str(tmp_path / "none.sqlite3")]) == 1
    assert "no actuator state database" in capsys.readouterr().err


def test_audit_of_a_file_that_is_not_the_state_database(tmp_path, capsys):
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_text("not sqlite")
    assert main(["actuator", "audit", "--state-db", str(garbage)]) == 1
    assert capsys.readouterr().err == (
        f"{garbage}: not an actuator state database: file is not a database\n"
    )
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE t (a)").connection.commit()
    assert main(["actuator", "audit", "--state-db", str(other)]) == 1
    assert "not an actuator state database: no such table: audit" in capsys.readouterr().err


def test_audit_log_is_append_only(tmp_path):
    _fill(tmp_path / "s.sqlite3", lambda: 1.0).close()
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET result = 'forged'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "aispend", "actuator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_start_refused_without_token(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = _run("--config", str(EXAMPLE_CONFIG), "--state-db", str(tmp_path / "s"), env=env)
    assert r.returncode == 1
    assert "actuator webhook token: cannot read /etc/aispend/secrets/actuator_token" in r.stderr


def test_start_refused_without_gateway_admin_token(tmp_path):
    (tmp_path / "token").write_text("t0k3n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    r = _run(
        "--config",
        str(EXAMPLE_CONFIG),
        "--token-file",
        str(tmp_path / "token"),
        "--state-db",
        str(tmp_path / "s"),
        env=env,
    )
    assert r.returncode == 1
    assert "actions.targets.gateway: target gateway: admin token: cannot read" in r.stderr
    assert "t0k3n" not in r.stderr


def test_start_refused_when_the_state_database_is_not_one(tmp_path):
    (tmp_path / "token").write_text("t0k3n")
    config = tmp_path / "aispend.yaml"
    config.write_text("teams:\n  - {name: search}\n")
    db = tmp_path / "state.sqlite3"
    db.write_text("not sqlite")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    token = str(tmp_path / "token")
    r = _run("--config", str(config), "--token-file", token, "--state-db", str(db), env=env)
    assert r.returncode == 1
    assert f"cannot open the state database {db}: file is not a database" in r.stderr
    assert "Traceback" not in r.stderr
    assert db.read_text() == "not sqlite"  # left as it was


def test_bad_config_is_reported_by_field(tmp_path):
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["actions"]["rules"][0]["target"] = "nowhere"
    data["actions"]["rules"].append({"name": "second", "match": {"action": "pause"}})
    data["actions"]["rules"][1].update(target="gateway", mode="explode")
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(data))
    r = subprocess.run(
        [sys.executable, "-m", "aispend", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 1
    assert "actions.rules[1].mode: must be one of" in r.stderr
    data["actions"]["rules"][1]["mode"] = "pause"
    path.write_text(yaml.safe_dump(data))
    r = subprocess.run(
        [sys.executable, "-m", "aispend", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "rules[0].target: unknown target 'nowhere' (targets: gateway)" in r.stderr


def test_dry_run_env_is_validated(tmp_path):
    (tmp_path / "token").write_text("t0k3n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AISPEND_ACTUATOR_DRY_RUN": "maybe"}
    r = _run("--config", str(EXAMPLE_CONFIG), "--token-file", str(tmp_path / "token"), env=env)
    assert r.returncode == 2
    assert "$AISPEND_ACTUATOR_DRY_RUN: expected true or false, got 'maybe'" in r.stderr


@pytest.mark.parametrize("name", ["state#prod.sqlite3", "state?x.sqlite3", "state %41.sqlite3"])
def test_audit_reads_a_database_whose_name_has_uri_characters(tmp_path, capsys, name):
    """The read-only open is a file: URI; a '#' or '?' in the name ended the file name
    there, so another file was opened (and created)."""
    _fill(tmp_path / name, lambda: 1.0).close()
    assert main(["actuator", "audit", "--state-db", str(tmp_path / name), "--json"]) == 0
    assert '"fingerprint": "ab12"' in capsys.readouterr().out
    # Only the database and SQLite's own WAL files: no other file opened or created.
    assert {p.name for p in tmp_path.iterdir()} <= {name, f"{name}-wal", f"{name}-shm"}


def test_dry_run_true_holds_back_every_rule_and_false_keeps_a_rehearsed_one():
    """`--dry-run true` ($AISPEND_ACTUATOR_DRY_RUN=true, Compose's default) is the switch
    that stops all actions: a rule set `dry_run: false` acted through it. `false` keeps a
    rule set `dry_run: true` in rehearsal."""
    settings = ActionsSettings.model_validate(
        {
            "dry_run": False,
            "rules": [
                {"name": "live", "match": {"a": "1"}, "target": "t", "mode": "pause",
                 "dry_run": False},
                {"name": "rehearsed", "match": {"a": "2"}, "target": "t", "mode": "pause",
                 "dry_run": True},
                {"name": "default", "match": {"a": "3"}, "target": "t", "mode": "pause"},
            ],
            "targets": {"t": {"type": "command", "apply": ["true"]}},
        }
    )  # fmt: skip
    held = with_dry_run(settings, True)
    assert [dry_run_of(rule, held) for rule in held.rules] == [True, True, True]
    live = with_dry_run(settings.model_copy(update={"dry_run": True}), False)
    assert [dry_run_of(rule, live) for rule in live.rules] == [False, True, False]
