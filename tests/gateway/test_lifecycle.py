"""`aispend gateway` as a process: a taken port, and SIGTERM with a stream in flight.

Simulated: the provider, by the demo upstream (streams paced by
X-Demo-Chunk-Interval-Ms) on a real loopback socket. The gateway is the real CLI.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.gateway.harness import SEARCH_RANKER, gateway, process_env, upstream, write_config

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


def test_sigterm_lets_a_stream_in_flight_finish(tmp_path: Path) -> None:
    with upstream(tmp_path) as up, gateway(tmp_path, write_config(tmp_path, up.url)) as gw:
        host, port = gw.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=20)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                "stream": True}  # fmt: skip
        headers = {"Authorization": f"Bearer {SEARCH_RANKER}", "X-Demo-Chunk-Interval-Ms": "150"}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
        response = conn.getresponse()
        assert response.status == 200
        first = response.read1(65536)
        assert first.startswith(b"data: ")
        proc = gw.proc.proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)  # about 1 s of the stream is still to come
        rest = response.read()  # the whole stream, to its last event
        assert (first + rest).rstrip().endswith(b"data: [DONE]")
        conn.close()
        assert proc.wait(timeout=15) == 0
        # Stopped: new connections are refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5)
