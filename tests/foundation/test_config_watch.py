"""ConfigWatcher: what a reload may change while a process runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml

from aispend import config_watch
from aispend.config import Config, load_config
from aispend.config_watch import ConfigWatcher
from tests.conftest import EXAMPLE_CONFIG


def test_a_currency_change_is_refused_until_a_restart(tmp_path: Path) -> None:
    """The gateway's cost counters are in the running currency: a reload to EUR priced
    new requests in EUR into the same counters while aispend_info still said USD. The
    edit is refused as a whole, and the last good config stays."""
    path = tmp_path / "aispend.yaml"
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    watcher = ConfigWatcher(path)
    assert watcher.config.currency == "USD"
    teams = len(watcher.config.teams)

    euro = dict(data, currency="EUR", prices={**(data.get("prices") or {}), "usd_rate": 0.9})
    euro["teams"] = [*data["teams"], {**data["teams"][0], "name": "newteam"}]
    path.write_text(yaml.safe_dump(euro), encoding="utf-8")
    assert watcher.reload() is False
    assert watcher.last_reload_ok is False
    assert watcher.config.currency == "USD"
    assert len(watcher.config.teams) == teams  # nothing of the edit was taken

    same_currency = dict(euro, currency="USD", prices=data.get("prices") or {})
    path.write_text(yaml.safe_dump(same_currency), encoding="utf-8")
    assert watcher.reload() is True
    assert len(watcher.config.teams) == teams + 1


def _with_search_month_budget(path: Path, amount: int) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["budgets"][0]["amount"] = amount
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def test_reloads_at_the_same_time_end_on_the_newest_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file watcher is still loading edit 1 when edit 2 lands and SIGHUP's thread
    reloads it. Unserialised, edit 1 was applied last and stayed: the file's stamp was
    already edit 2's, so no later check reloaded it. The first load is held with an
    Event so the overlap happens on every run."""
    path = tmp_path / "aispend.yaml"
    _with_search_month_budget(path, 1000)
    watcher = ConfigWatcher(path)
    first_load_started, release_first_load = threading.Event(), threading.Event()
    loads: list[int] = []

    def load_held_the_first_time(p: Path) -> Config:
        config = load_config(p)
        loads.append(config.budgets[0].amount)
        if len(loads) == 1:
            first_load_started.set()
            release_first_load.wait(10)
        return config

    monkeypatch.setattr(config_watch, "load_config", load_held_the_first_time)
    _with_search_month_budget(path, 2000)
    poll = threading.Thread(target=watcher.check_for_change)
    poll.start()
    assert first_load_started.wait(10)
    _with_search_month_budget(path, 3000)
    sighup = threading.Thread(target=watcher.reload)
    sighup.start()
    sighup.join(1.0)  # unserialised, it has loaded and applied edit 2 by now
    release_first_load.set()
    poll.join(10)
    sighup.join(10)
    assert watcher.config.budgets[0].amount == 3000, loads
    assert watcher.check_for_change() is False
    assert watcher.config.budgets[0].amount == 3000


def test_an_unexpected_error_in_a_reload_fails_the_reload_not_the_watcher(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload that raised anything but a config error (PyYAML's ValueError for
    `!!timestamp 2024-13-45` did) ended the watcher's thread while
    aispend_config_last_reload_success still said 1, and later good edits were never
    applied. Now it fails that reload, keeps the config, and the next one works."""
    path = tmp_path / "aispend.yaml"
    path.write_text(EXAMPLE_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    calls: list[Config] = []

    def on_reload(config: Config) -> None:
        calls.append(config)
        if len(calls) == 1:
            raise RuntimeError("bug in the apply step")

    watcher = ConfigWatcher(path, on_reload=on_reload)
    before = watcher.config
    assert watcher.reload() is False
    assert watcher.last_reload_ok is False and watcher.config is before
    assert "unexpected RuntimeError: bug in the apply step" in caplog.text
    assert watcher.reload() is True and watcher.last_reload_ok is True
    assert watcher.config is calls[1]
