"""`aispend gateway` as a process: a taken port, and SIGTERM with a stream in flight.

Simulated: the provider, by the demo upstream (streams paced by
X-Demo-Chunk-Interval-Ms) on a real loopback socket; Prometheus, by the test reading
/metrics as a scrape does. The gateway is the real CLI.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aispend import metrics as m
from aispend.procs import tail, wait_until
from tests.conftest import REPO
from tests.gateway.harness import (
    SEARCH_RANKER,
    Metrics,
    Server,
    gateway,
    process_env,
    upstream,
    write_config,
)  # fmt: skip

pytestmark = pytest.mark.integration


def test_a_taken_port_exits_2_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, "http://127.0.0.1:9")
        result = subprocess.run(
            [sys.executable, "-m", "aispend", "gateway", "--config", str(config),
             "--listen", f"127.0.0.1:{port}"],
            cwd=REPO, env=process_env(), capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert f"gateway cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
HEADERS = {"Authorization": f"Bearer {SEARCH_RANKER}", "X-Demo-Chunk-Interval-Ms": "150"}


def _stream(gw: Server) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, bytes]:
    """A paced chat stream, its first chunk read."""
    conn = http.client.HTTPConnection(gw.url.removeprefix("http://"), timeout=20)
    conn.request("POST", "/v1/chat/completions", json.dumps(CHAT), HEADERS)
    response = conn.getresponse()
    assert response.status == 200
    first = response.read1(65536)
    assert first.startswith(b"data: ")
    return conn, response, first


def _health(gw: Server) -> int:
    try:
        with urllib.request.urlopen(gw.url + "/healthz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_usage_of_a_stream_drained_at_sigterm_can_be_scraped(tmp_path: Path) -> None:
    """A rolling deploy: SIGTERM while a stream runs. The gateway closed its only
    listener (which serves /metrics too) and then metered the stream into a registry
    nobody could scrape. Now it keeps listening: new proxied requests get 503 and
    `Connection: close`, /metrics answers, and it exits once one scrape has taken the
    stream's usage (well before the 60 s cap)."""
    with (
        upstream(tmp_path) as up,
        gateway(tmp_path, write_config(tmp_path, up.url, shutdown_scrape_wait_s=60)) as gw,
    ):
        assert Metrics.scrape(gw).total(m.LLM_TOKENS.name) == 0  # Prometheus scrapes it
        conn, response, first = _stream(gw)
        proc = gw.proc.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: _health(gw) == 503, 10, what="/healthz to say the gateway stops")
        late = http.client.HTTPConnection(gw.url.removeprefix("http://"), timeout=20)
        late.request("POST", "/v1/chat/completions", json.dumps(CHAT), HEADERS)
        refused = late.getresponse()
        assert refused.status == 503
        assert refused.getheader("Connection") == "close"
        assert json.loads(refused.read())["error"]["code"] == "gateway_stopping"
        late.close()
        rest = response.read()  # the stream in flight goes on to its end
        assert (first + rest).rstrip().endswith(b"data: [DONE]")
        conn.close()
        assert proc.poll() is None  # waiting for the scrape
        scrape = Metrics.scrape(gw)
        assert scrape.total(m.LLM_TOKENS.name) > 0  # the drained stream's usage
        assert scrape.total(m.LLM_REQUESTS.name) == 1  # the refused request is not one
        assert proc.wait(timeout=30) == 0  # after the scrape, not the 60 s cap


def test_sigterm_with_usage_nobody_scrapes_exits_after_the_cap(tmp_path: Path) -> None:
    """The wait for a last scrape ends at shutdown_scrape_wait_s, with a warning."""
    with (
        upstream(tmp_path) as up,
        gateway(tmp_path, write_config(tmp_path, up.url, shutdown_scrape_wait_s=1)) as gw,
    ):
        Metrics.scrape(gw)
        conn, response, _ = _stream(gw)
        response.read()
        conn.close()
        proc = gw.proc.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "no scrape of /metrics in 1 s" in tail(gw.proc.log_path, 50)


def test_sigterm_lets_a_stream_in_flight_finish(tmp_path: Path) -> None:
    with upstream(tmp_path) as up, gateway(tmp_path, write_config(tmp_path, up.url)) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        conn, response, first = _stream(gw)
        proc = gw.proc.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)  # about 1 s of the stream is still to come
        rest = response.read()  # the whole stream, to its last event
        assert (first + rest).rstrip().endswith(b"data: [DONE]")
        conn.close()
        assert proc.wait(timeout=15) == 0  # shutdown_scrape_wait_s is 0 here
        # Stopped: new connections are refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5)
