"""Fuzzing the gateway's HTTP/1.1 listener with what a network can send.

The listener's protocol object (aispend/gateway/http_server.py) is fed byte streams,
split at random points: valid requests, valid requests with bytes flipped, inserted or
cut, and plain noise. The transport is a recording stand-in (no socket), so hypothesis
can run hundreds of cases in seconds; the socket-level behaviour is covered by
test_http_server.py. Properties: feeding never raises; whatever is written is HTTP/1.1
responses; every request the handler sees was answered; bodies stay within the limit.
"""

from __future__ import annotations

import asyncio
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from aispend.gateway.http_server import HttpServer, Reply, Request, _Connection

MAX_BODY = 64


class Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "wrote after closing"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0  # written at once

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default  # no socket

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


VALID = [
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET /metrics HTTP/1.0\r\n\r\n",
    b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
    b"POST /x HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabc",
    b"HEAD /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    b"POST /big HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"a" * 100,  # over MAX_BODY
]


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    data = b"".join(draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=4)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "insert", "cut", "noise"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(max_size=20)) + data[at:]
        elif kind == "cut":
            data = data[:at]
        else:
            data += draw(st.binary(max_size=100))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if b > a]


def feed(chunks: list[bytes]) -> tuple[Transport, list[Request]]:
    seen: list[Request] = []

    async def handler(request: Request, reply: Reply) -> None:
        seen.append(request)
        reply.send(200, [], b"ok")

    async def main() -> Transport:
        conn = _Connection(HttpServer(handler, max_body=MAX_BODY))
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        for chunk in chunks:
            conn.data_received(chunk)
            for _ in range(5):  # let the handler task run between reads
                await asyncio.sleep(0)
        for _ in range(20):
            if not conn.busy:
                break
            await asyncio.sleep(0)
        conn.connection_lost(None)
        return transport

    return asyncio.run(main()), seen


STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


@settings(max_examples=400, deadline=None, database=None)
@given(streams())
def test_any_bytes_get_http_answers_and_nothing_unanswered(chunks: list[bytes]) -> None:
    transport, seen = feed(chunks)
    out = transport.written
    assert not out or out.startswith(b"HTTP/1.1 ")
    statuses = [int(s) for s in STATUS.findall(out)]
    assert all(s in (100, 200, 400, 413, 414, 431) for s in statuses), statuses
    assert statuses.count(200) == len(seen)  # every request handled got its answer
    for request in seen:
        assert len(request.body) <= MAX_BODY
        assert request.method.isalpha() and request.method.isupper()
    if any(s >= 400 for s in statuses):
        assert transport.closed  # every refusal ends the connection
