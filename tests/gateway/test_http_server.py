"""The gateway's HTTP/1.1 listener (aispend/gateway/http_server.py) over real sockets.

Nothing is simulated: the listener runs on a loopback port in a thread of its own, and
each test speaks raw HTTP/1.1 bytes to it from a blocking socket, so it sees exactly
what a client gets: status lines, framing, connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvloop

from aispend.gateway import http_server
from aispend.gateway.http_server import (
    ClientGone,
    Headers,
    HttpServer,
    Reply,
    Request,
    _Connection,
)

MAX_BODY = 1000
BIG_CHUNKS = 256
BIG = b"x" * (BIG_CHUNKS * 65536)  # 16 MiB: more than the kernel's socket buffers hold
NONE = Headers([])
CHUNKED_HEAD = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
# What curl --http2 sends on a cleartext connection.
H2C_UPGRADE = (
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
)


class Listener:
    """HttpServer with a scripted handler, on its own event loop thread."""

    def __init__(
        self, new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    ) -> None:
        self.seen: list[Request] = []
        self.events: list[str] = []
        self.loop = new_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = HttpServer(self.handle, max_body=MAX_BODY)
            await self.server.listen("127.0.0.1", 0)
            self.port = self.server.port

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()

    def stop(self, timeout: float = 5.0) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(timeout), self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def handle(self, request: Request, reply: Reply) -> None:
        self.seen.append(request)
        path = request.raw_path
        if path == "/slow":
            await asyncio.sleep(0.3)
        if path in ("/echo", "/slow"):
            body = f"{request.method} {request.target} ".encode() + request.body
            reply.send(200, [("Content-Type", "text/plain")], body)
        elif path == "/stream":
            await reply.start(200, [("Content-Type", "text/event-stream")])
            for part in (b"one", b"two", b"three"):
                await reply.write(part)
                await asyncio.sleep(0.01)
            await reply.end()
        elif path == "/until-gone":
            await reply.start(200, [])
            try:
                for _ in range(500):
                    await reply.write(b"x" * 1000)
                    await asyncio.sleep(0.01)
            except ClientGone:
                self.events.append("gone")
                raise
            self.events.append("finished")
            await reply.end()
        elif path == "/big":
            reply.send(200, [], BIG)
        elif path == "/firehose":
            await reply.start(200, [])
            try:
                for _ in range(BIG_CHUNKS):
                    await reply.write(b"x" * 65536)
            except ClientGone:
                self.events.append("gone")
                raise
            self.events.append("finished")
            await reply.end()
        elif path == "/boom":
            raise RuntimeError("handler bug")
        elif path == "/boom-mid":
            await reply.start(200, [])
            await reply.write(b"partial")
            raise RuntimeError("handler bug mid-stream")
        else:
            reply.send(404, [], b"")


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.stop(0.1)
        server.close()


def connect(listener: Listener) -> socket.socket:
    return socket.create_connection(("127.0.0.1", listener.port), timeout=10)


def post(path: str, body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        extra,
        len(body),
        body,
    )


class Reader:
    """Reads responses off a socket (Content-Length, chunked, or until close)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise EOFError(f"closed before {marker!r}: {self.buf!r}")
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("closed mid-body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        head = self._until(b"\r\n\r\n").decode()
        status_line, *lines = head.split("\r\n")
        status = int(status_line.split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        if "content-length" in headers:
            return status, headers, self._exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._until(b"\r\n"), 16):
                body += self._exactly(size)
                assert self._exactly(2) == b"\r\n"
            assert self._exactly(2) == b"\r\n"
            return status, headers, body
        while self._fill():
            pass
        body, self.buf = self.buf, b""
        return status, headers, body

    def closed(self) -> bool:
        """True when the server closed the connection (and sent nothing more)."""
        return not self.buf and not self._fill()


def test_keep_alive_answers_each_request_on_one_connection(listener: Listener) -> None:
    with connect(listener) as sock:
        r = Reader(sock)
        for i in range(3):
            sock.sendall(post(f"/echo?n={i}", b'{"i": %d}' % i))
            status, headers, body = r.response()
            assert status == 200
            assert body == f'POST /echo?n={i} {{"i": {i}}}'.encode()
            assert headers["content-type"] == "text/plain"
            assert "date" in headers
            assert "connection" not in headers
    assert [q.query for q in listener.seen] == ["n=0", "n=1", "n=2"]


def test_pipelined_requests_are_answered_in_order(listener: Listener) -> None:
    with connect(listener) as sock:
        sock.sendall(post("/slow", b"first") + post("/echo", b"second"))
        r = Reader(sock)
        assert r.response()[2] == b"POST /slow first"  # the slow one is not overtaken
        assert r.response()[2] == b"POST /echo second"


def test_chunked_request_body_and_expect_continue(listener: Listener) -> None:
    with connect(listener) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        r = Reader(sock)
        assert r.response()[2] == b"POST /echo abcde"
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
        )
        assert r._until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue"  # before the body is sent
        sock.sendall(b"body")
        assert r.response()[:3:2] == (200, b"POST /echo body")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (post("/echo", b"x" * (MAX_BODY + 1)), 413),
        (CHUNKED_HEAD + (b"100\r\n" + b"y" * 256 + b"\r\n") * 4 + b"0\r\n\r\n", 413),
        (post("/echo?" + "q" * 9000), 414),
        (b"POST /echo HTTP/1.1\r\n" + b"X-H: v\r\n" * 200 + b"Content-Length: 0\r\n\r\n", 431),
        (b"POST /echo HTTP/1.1\r\nX-Big: " + b"v" * 20000 + b"\r\nContent-Length: 0\r\n\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    ],
)
def test_bad_requests_get_their_status_and_the_connection_closes(
    listener: Listener, request_bytes: bytes, status: int
) -> None:
    with connect(listener) as sock:
        # The server may close while we still send: read its answer all the same.
        with contextlib.suppress(ConnectionError):
            sock.sendall(request_bytes)
        r = Reader(sock)
        got, headers, body = r.response()
        assert got == status
        assert headers["connection"] == "close"
        assert body  # says what was wrong
        assert r.closed()
    assert listener.seen == []  # the handler never saw it


def test_nothing_after_a_refused_request_reaches_the_handler(listener: Listener) -> None:
    with connect(listener) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(post("/echo", b"x" * (MAX_BODY + 1)) + post("/echo", b"smuggled"))
        r = Reader(sock)
        assert r.response()[0] == 413
        assert r.closed()
    assert listener.seen == []


def test_a_refusal_stops_parsing_in_the_same_read() -> None:
    """The protocol itself, fed one read holding a refused request and another: the
    second is never queued (on a socket the close usually wins the race anyway)."""

    class Transport:
        def __init__(self) -> None:
            self.written = b""
            self.closed = False

        def write(self, data: bytes) -> None:
            self.written += data

        def close(self) -> None:
            self.closed = True

        def get_write_buffer_size(self) -> int:
            return 0

        def get_extra_info(self, name: str, default: object = None) -> object:
            return default  # no socket

    async def main() -> None:
        async def handler(request: Request, reply: Reply) -> None:
            raise AssertionError("the handler must not run")

        conn = _Connection(HttpServer(handler, max_body=MAX_BODY))
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(post("/echo", b"x" * (MAX_BODY + 1)) + post("/echo", b"smuggled"))
        assert transport.written.startswith(b"HTTP/1.1 413 ")
        assert transport.closed
        assert not conn._queue
        assert not conn.busy

    asyncio.run(main())


def test_upgrade_request_is_answered_in_http_1_1(listener: Listener) -> None:
    with connect(listener) as sock:
        sock.sendall(post("/echo", b"h2c?", H2C_UPGRADE) + post("/echo", b"next"))
        r = Reader(sock)
        assert r.response()[:3:2] == (200, b"POST /echo h2c?")
        assert r.response()[:3:2] == (200, b"POST /echo next")
        # The upgrade request's body arriving in pieces, after its head.
        head = post("/echo", b"0123456789", H2C_UPGRADE)
        sock.sendall(head[:-10])
        time.sleep(0.05)
        sock.sendall(b"01234")
        time.sleep(0.05)
        sock.sendall(b"56789" + post("/echo", b"then"))
        assert r.response()[:3:2] == (200, b"POST /echo 0123456789")
        assert r.response()[:3:2] == (200, b"POST /echo then")


def test_http_1_0_closes_and_streams_until_close(listener: Listener) -> None:
    with connect(listener) as sock:
        sock.sendall(b"POST /stream HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        r = Reader(sock)
        status, headers, body = r.response()
        assert (status, body) == (200, b"onetwothree")
        assert headers["connection"] == "close"
        assert "transfer-encoding" not in headers


def test_stream_is_chunked_and_head_gets_no_body(listener: Listener) -> None:
    with connect(listener) as sock:
        sock.sendall(post("/stream"))
        r = Reader(sock)
        status, headers, body = r.response()
        assert (status, headers["transfer-encoding"], body) == (200, "chunked", b"onetwothree")
        sock.sendall(b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        r._until(b"\r\n\r\n")
        sock.sendall(post("/echo", b"after"))  # framing intact: no body came after the HEAD
        assert r.response()[2] == b"POST /echo after"


def test_handler_error_gives_500_or_a_broken_stream(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    with connect(listener) as sock:
        sock.sendall(post("/boom"))
        r = Reader(sock)
        assert r.response()[0] == 500
        assert r.closed()
    assert "handler bug" in caplog.text
    with connect(listener) as sock:
        sock.sendall(post("/boom-mid"))
        r = Reader(sock)
        while r._fill():
            pass
        assert r.buf.startswith(b"HTTP/1.1 200 OK\r\n")
        assert r.buf.endswith(b"\r\n7\r\npartial\r\n")  # no last chunk: the client sees a break


def test_client_gone_mid_stream_is_seen_by_the_handler(listener: Listener) -> None:
    sock = connect(listener)
    sock.sendall(post("/until-gone"))
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    sock.close()
    deadline = time.monotonic() + 10
    while not listener.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listener.events == ["gone"]


def test_idle_and_stalled_connections_are_closed(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_server, "IDLE_S", 0.3)
    with connect(listener) as idle, connect(listener) as stalled:
        idle.sendall(post("/echo", b"one"))
        r = Reader(idle)
        assert r.response()[2] == b"POST /echo one"
        stalled.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        # recv returns b"" once the server closes; if it never closes, the sockets'
        # own 10 s timeout raises TimeoutError and fails the test (IDLE_S is 75 s).
        assert r.closed()
        assert Reader(stalled).closed()
    assert [q.body for q in listener.seen] == [b"one"]


def test_target_forms_and_decoding() -> None:
    r = Request("POST", "/openai/deployments/gpt%2D4o/chat?api-version=1&a=%20", NONE, b"", "1.1")
    assert r.raw_path == "/openai/deployments/gpt%2D4o/chat"
    assert r.path == "/openai/deployments/gpt-4o/chat"
    assert r.query == "api-version=1&a=%20"
    r = Request("POST", "http://evil.example/v1/chat/completions?x=1", NONE, b"", "1.1")
    assert (r.raw_path, r.query) == ("/v1/chat/completions", "x=1")


def test_stop_finishes_requests_in_flight_and_refuses_new_ones(listener: Listener) -> None:
    idle = connect(listener)
    busy = connect(listener)
    busy.sendall(post("/slow", b"in flight"))
    time.sleep(0.1)  # the request is in the handler now
    stopper = threading.Thread(target=listener.stop)
    stopper.start()
    r = Reader(busy)
    status, headers, body = r.response()
    assert (status, body) == (200, b"POST /slow in flight")
    assert headers["connection"] == "close"
    stopper.join(10)
    assert Reader(idle).closed()
    with pytest.raises(ConnectionRefusedError):
        connect(listener)
    idle.close()
    busy.close()


def _frozen_client(listener: Listener, path: str) -> socket.socket:
    """A client that reads the status line and then nothing (a frozen process: its
    kernel keeps the connection open with a zero window)."""
    sock = connect(listener)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(post(path))
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    return sock


def _open_connections(listener: Listener) -> int:
    async def count() -> int:
        return len(listener.server.connections)

    return asyncio.run_coroutine_threadsafe(count(), listener.loop).result(5)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_client_that_stops_reading_is_cut(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole answer was closed gracefully after IDLE_S, which waits for the unsent
    bytes to go: they never went, so the connection and up to 256 MiB of answer stayed
    for good. A stream's write waited for the client with no end, holding the upstream
    too. Both are cut once the client has read nothing for STALLED_S."""
    monkeypatch.setattr(http_server, "IDLE_S", 0.3)
    monkeypatch.setattr(http_server, "STALLED_S", 0.3)
    server = Listener(uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop)
    try:
        frozen = [_frozen_client(server, "/big"), _frozen_client(server, "/firehose")]
        deadline = time.monotonic() + 10
        while _open_connections(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _open_connections(server) == 0
        assert server.events == ["gone"]  # the stream's handler learnt it
        for sock in frozen:
            sock.close()
    finally:
        server.stop(0.1)
        server.close()


def test_a_slow_reader_that_keeps_reading_is_not_cut(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading on, however slowly, is not a stall. At 300 kB/s the kernel's send queue
    shrinks all along, but the event loop's own buffer moves only once the kernel has
    room for a third of its send buffer (up to 4 MiB): measured on that buffer alone,
    such a client was cut as stalled. Each answer is read for 4 s, past IDLE_S +
    STALLED_S, then the client leaves."""
    monkeypatch.setattr(http_server, "IDLE_S", 0.2)
    monkeypatch.setattr(http_server, "STALLED_S", 1.0)
    for path in ["/big", "/firehose"]:
        with connect(listener) as sock:
            sock.sendall(post(path, extra=b"Connection: close\r\n"))
            received, began = 0, time.monotonic()
            while time.monotonic() - began < 4.0:
                chunk = sock.recv(4096)
                assert chunk, f"{path}: cut after {received} bytes"
                received += len(chunk)
                time.sleep(len(chunk) / 300_000)
            assert _open_connections(listener) == 1 and listener.events == [], path
    deadline = time.monotonic() + 10
    while not listener.events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listener.events == ["gone"]  # the stream's client left: seen as gone
