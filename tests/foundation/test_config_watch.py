"""ConfigWatcher: what a reload may change while a process runs."""

from __future__ import annotations

from pathlib import Path

import yaml

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
