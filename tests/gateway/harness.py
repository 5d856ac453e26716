"""Start the demo upstream and the gateway as real processes on free loopback ports.

The gateway runs as `python -m aispend gateway` exactly as `aispend stack up` runs
it; its config is the example config with a `sources.gateway` section pointing at the
test's upstream. `Metrics` reads /metrics with prometheus_client's own parser so tests
compare exact sample values.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from aispend.procs import ManagedProcess
from tests.conftest import EXAMPLE_CONFIG, REPO, free_port

PROVIDER_KEY = "sk-provider-secret-for-tests"
ADMIN_TOKEN = "admin-token-for-tests"
# Demo client keys from aispend.example.yaml (stored there as SHA-256).
SEARCH_RANKER = "sk-aispend-demo-search-ranker"  # team search, agent rerank-agent
SEARCH_CRAWLER = "sk-aispend-demo-search-crawler"  # team search, agent crawler-agent
RESEARCH_EVALS = "sk-aispend-demo-research-evals"  # team research, project evals


@dataclass
class Server:
    proc: ManagedProcess
    url: str

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def post_json(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())


def process_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["OPENAI_API_KEY_FOR_GATEWAY"] = PROVIDER_KEY
    env.pop("AISPEND_GATEWAY_ADMIN_TOKEN", None)
    return env


@contextmanager
def _serve(name: str, argv: list[str], tmp_path: Path, port: int) -> Iterator[Server]:
    """`python -m aispend ARGV` on `port`, ready on /healthz, stopped on exit."""
    proc = ManagedProcess(
        name,
        [sys.executable, "-m", "aispend", *argv],
        tmp_path / f"{name.removeprefix('demo-')}-{port}.log",
        ready_url=f"http://127.0.0.1:{port}/healthz",
        env=process_env(),
        cwd=REPO,
    )
    proc.start()
    try:
        proc.wait_ready(30)
        yield Server(proc, f"http://127.0.0.1:{port}")
    finally:
        proc.stop()


@contextmanager
def upstream(tmp_path: Path, *args: str) -> Iterator[Server]:
    """The demo upstream, demanding PROVIDER_KEY (so a 2xx proves the key was injected)."""
    port = free_port()
    argv = ["demo", "upstream", "--listen", f"127.0.0.1:{port}",
            "--expect-key-env", "OPENAI_API_KEY_FOR_GATEWAY", *args]  # fmt: skip
    with _serve("demo-upstream", argv, tmp_path, port) as server:
        yield server


def write_config(tmp_path: Path, upstream_url: str, **gateway: Any) -> Path:
    """The example config with a gateway section for this test."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    token_file = tmp_path / "gateway_admin_token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    section: dict[str, Any] = {
        "upstreams": {
            p: {"base_url": upstream_url, "api_key_env": "OPENAI_API_KEY_FOR_GATEWAY"}
            for p in ("openai", "azure", "anthropic")
        },
        "azure_deployments": {"chat-prod": "gpt-4o-mini", "embed-prod": "text-embedding-3-small"},
        "admin_token_file": str(token_file),
        "throttle_db": str(tmp_path / "throttles.sqlite3"),
        "header_refinement": True,
        # Tests stop their gateways with usage nobody will scrape: no wait for a last
        # scrape at exit (tests/gateway/test_lifecycle.py sets it to test it).
        "shutdown_scrape_wait_s": 0,
    }
    section.update(gateway)
    data["sources"] = {"gateway": section}
    data["actions"] = {}
    path = tmp_path / "aispend.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextmanager
def gateway(tmp_path: Path, config: Path, port: int | None = None) -> Iterator[Server]:
    port = port or free_port()
    argv = ["gateway", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    with _serve("gateway", argv, tmp_path, port) as server:
        yield server


class Metrics:
    """One scrape of /metrics: `value(name, **labels)` (0 when the series is absent)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    @classmethod
    def scrape(cls, server: Server) -> Metrics:
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
            return cls(response.read().decode())

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum over every series of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


class Delta:
    """Metric changes across one action."""

    def __init__(self, gw: Server) -> None:
        self.gw = gw
        self.before = Metrics.scrape(gw)

    def done(self) -> Delta:
        self.after = Metrics.scrape(self.gw)
        return self

    def __call__(self, name: str, **labels: str) -> float:
        return self.after.total(name, **labels) - self.before.total(name, **labels)


def chat(
    server: Server, key: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """One small chat completion with `key` (and `headers`); returns (status, JSON body)."""
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        server.url + "/v1/chat/completions",
        data=body.encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def admin(server: Server, method: str, path: str, body: Any = None,
          token: str | None = ADMIN_TOKEN, raw: bytes | None = None,
          ) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
    """Call the admin API with `body` as JSON (or `raw` bytes); returns (status, JSON
    body, headers)."""
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(server.url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def raw_http(server: Server, request: bytes) -> tuple[int, bytes]:
    """Send `request` byte for byte on a new connection, for what urllib refuses to send
    (an absolute-form target, non-ASCII header bytes); it should say `Connection:
    close`. Returns (status, body)."""
    url = urllib.parse.urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    data = b""
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(request)
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
