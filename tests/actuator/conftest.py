"""Fixtures: fake gateway replicas and an in-process actuator on real loopback sockets."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from aispend.actuators.app import build_app
from aispend.actuators.store import AuditRecord, Store, iter_audit
from aispend.config import Config, parse_config
from tests.actuator.fakes import ADMIN_TOKEN, TOKEN, FakeGatewayAdmin, ThreadedServer
from tests.conftest import EXAMPLE_CONFIG


def config_with_actions(actions: dict[str, Any]) -> Config:
    """The example config's teams (support is critical) with these `actions:`."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["actions"] = actions
    return parse_config(yaml.safe_dump(data), "test-config")


def gateway_actions(urls: list[str], token_file: Path, **overrides: Any) -> dict[str, Any]:
    actions: dict[str, Any] = {
        "dry_run": False,
        "rules": [
            {
                "name": "throttle-agent",
                "match": {"action": "throttle"},
                "target": "gw",
                "mode": "throttle",
                "requests_per_minute": 6,
            },
            {"name": "pause-agent", "match": {"action": "pause"}, "target": "gw", "mode": "pause"},
        ],
        "targets": {"gw": {"type": "gateway", "urls": urls, "admin_token_file": str(token_file)}},
    }
    actions.update(overrides)
    return actions


@dataclass
class Actuator:
    server: ThreadedServer
    db: Path

    @property
    def url(self) -> str:
        return self.server.url

    def post(
        self, body: Any, token: str | None = TOKEN, raw: bytes | None = None
    ) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if raw is not None:
            return requests.post(f"{self.url}/alerts", data=raw, headers=headers, timeout=30)
        return requests.post(f"{self.url}/alerts", json=body, headers=headers, timeout=30)

    def audit(self) -> list[AuditRecord]:
        return list(iter_audit(self.db))

    def states(self) -> dict[tuple[str, str], str]:
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return {
                (r[0], r[1]): r[2]
                for r in db.execute("SELECT fingerprint, starts_at, state FROM actions")
            }
        finally:
            db.close()


@pytest.fixture
def admin_token_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway_admin_token"
    path.write_text(ADMIN_TOKEN + "\n")
    return path


@pytest.fixture
def gateways() -> Iterator[list[tuple[FakeGatewayAdmin, ThreadedServer]]]:
    """Two fake gateway replicas (the admin API only)."""
    started: list[tuple[FakeGatewayAdmin, ThreadedServer]] = []
    try:
        for _ in range(2):
            fake = FakeGatewayAdmin()
            started.append((fake, ThreadedServer(fake.app()).start()))
        yield started
    finally:
        for _, server in started:
            server.stop()


@pytest.fixture
def make_actuator(tmp_path: Path) -> Iterator[Callable[..., Actuator]]:
    servers: list[tuple[ThreadedServer, Store]] = []

    def make(
        actions: dict[str, Any],
        db_name: str = "actuator.sqlite3",
        retry_backoff: tuple[float, float] = (5.0, 60.0),
    ) -> Actuator:
        """`retry_backoff`: the retry loop's (first, longest) wait; a test that redelivers
        by hand sets hours, so the loop stays out of its way."""
        config = config_with_actions(actions)
        db = tmp_path / db_name
        store = Store(db)
        criticality = {t.name: t.criticality for t in config.teams}
        app = build_app(config.actions, criticality, store, TOKEN, retry_backoff=retry_backoff)
        server = ThreadedServer(app).start()
        servers.append((server, store))
        return Actuator(server, db)

    try:
        yield make
    finally:
        for server, store in servers:
            server.stop()
            store.close()
