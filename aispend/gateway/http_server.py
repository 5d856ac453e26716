"""The gateway's HTTP/1.1 listener: asyncio + httptools, every request to one handler.

Why not aiohttp's server: at the gateway's benchmark rate (100 req/s on a 2-vCPU
machine, docs/benchmarks.md) aiohttp's server and client spent about 1 ms of CPU per
proxied request, the whole 1 ms p50 budget of the gateway; this listener with
aispend.gateway.http_client spends about 0.4 ms for the same pass-through.

What it does (and the status it answers when a client breaks a rule):
- HTTP/1.1 and 1.0; keep-alive; pipelined requests answered in order, reading paused
  while a request is handled; a connection closed after IDLE_S with no request in
  flight and no byte received (idle keep-alive, or a request that stopped arriving);
- bodies with Content-Length or chunked, up to `max_body` bytes (413, before the rest
  is read); `Expect: 100-continue` answered;
- request target up to MAX_TARGET bytes (414); up to MAX_HEADERS headers of up to
  MAX_HEADER_BYTES each (431); bytes that are not HTTP/1.x: 400; every error closes;
- `Upgrade` requests (h2c) are answered in HTTP/1.1, as RFC 9110 allows;
- responses whole (`Reply.send`, Content-Length) or streamed (`Reply.start` / `write`
  / `end`: chunked, or close-delimited for HTTP/1.0), writes paused while the client
  does not read; `Reply.on_client_gone` tells a handler the moment the client closes;
- a client that reads none of what is sent to it for STALLED_S is cut: a paused write
  raises ClientGone, and a closing connection whose unsent bytes do not shrink is
  aborted (else a frozen client holds its buffered answer, or a stream and its
  upstream, for good);
- `drain()`: keep listening but end keep-alive (every answer says `Connection: close`),
  let requests in flight finish until a deadline, then cut the rest; `close()`: stop
  listening and close; `stop()`: stop accepting, drain, close.

A handler is `async def handler(request: Request, reply: Reply) -> None` and answers
through `reply`. If it raises before answering, the client gets a 500 and the error is
logged; if it raises mid-stream, the connection is closed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import fcntl
import http
import json
import logging
import sys
import termios
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import cast
from urllib.parse import unquote

import httptools

log = logging.getLogger(__name__)

IDLE_S = 75.0
"""How long an idle keep-alive connection stays open."""
STALLED_S = 75.0
"""How long a client may read none of what is sent to it before its connection is cut."""
MAX_TARGET = 8 * 1024
MAX_HEADERS = 128
MAX_HEADER_BYTES = 16 * 1024
CUT_HANDLERS_S = 1.0
"""In `drain`, how long handlers of the connections it cut get to finish (to record)."""


class ClientGone(Exception):
    """The client closed its connection: nothing more can be written."""


class Headers(Mapping[str, str]):
    """Request headers in arrival order; lookups ignore case and return the first value."""

    __slots__ = ("_first", "_items")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._first: dict[str, str] | None = None

    def _index(self) -> dict[str, str]:
        first = self._first
        if first is None:
            first = {}
            for name, value in self._items:
                first.setdefault(name.lower(), value)
            self._first = first
        return first

    def __getitem__(self, name: str) -> str:
        return self._index()[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._index().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index()

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return self._items


class Request:
    """One parsed request. `target` is the request target as sent; `raw_path` and
    `query` are its path and query still percent-encoded; `path` is the decoded path."""

    __slots__ = ("body", "headers", "method", "path", "query", "raw_path", "target", "version")

    def __init__(
        self, method: str, target: str, headers: Headers, body: bytes, version: str
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.version = version
        if target.startswith("/"):
            raw_path, _, self.query = target.partition("?")
        else:  # absolute form (http://host/path) or *: keep only the path part
            try:
                url = httptools.parse_url(target.encode("latin-1"))
                raw_path = (url.path or b"").decode("latin-1")
                self.query = (url.query or b"").decode("latin-1")
            except (httptools.HttpParserInvalidURLError, UnicodeEncodeError):
                raw_path, self.query = target, ""
        self.raw_path = raw_path.partition("#")[0]
        self.path = unquote(self.raw_path, errors="surrogateescape")


Handler = Callable[[Request, "Reply"], Awaitable[None]]
Answer = tuple[int, list[tuple[str, str]], bytes]
"""A whole response: status, headers, body (for `Reply.send`)."""


def json_answer(status: int, data: object, headers: Iterable[tuple[str, str]] = ()) -> Answer:
    return status, [("Content-Type", "application/json"), *headers], json.dumps(data).encode()


def _date() -> bytes:
    now = int(time.time())
    if _DATE_CACHE[0] != now:
        _DATE_CACHE[:] = [now, email.utils.formatdate(now, usegmt=True).encode()]
    return cast(bytes, _DATE_CACHE[1])


_DATE_CACHE: list[object] = [0, b""]
_PHRASES = {int(s): s.phrase.encode() for s in http.HTTPStatus}


def _head(status: int, headers: list[tuple[str, str]], extra: bytes) -> bytes:
    phrase = _PHRASES.get(status, b"Unknown")
    lines = [b"HTTP/1.1 %d %s\r\nDate: %s\r\n" % (status, phrase, _date())]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
    lines.append(extra)
    return b"".join(lines)


def _whole(
    status: int, headers: list[tuple[str, str]], body: bytes, keep_alive: bool, with_body: bool
) -> bytes:
    """A response with a Content-Length body (`with_body` False for HEAD: length only)."""
    close = b"" if keep_alive else b"Connection: close\r\n"
    head = _head(status, headers, b"Content-Length: %d\r\n%s\r\n" % (len(body), close))
    return head + body if with_body else head


class Reply:
    """The answer to one request: `send` a whole response, or `start` one and `write`
    its body as it comes, then `end` it (or `abort` the connection)."""

    __slots__ = ("_conn", "_head_only", "_keep_alive", "_streaming", "_version", "done", "started")

    def __init__(self, conn: _Connection, request: Request, keep_alive: bool) -> None:
        self._conn = conn
        self._head_only = request.method == "HEAD"
        self._version = request.version
        self._keep_alive = keep_alive
        self._streaming = False
        self.started = False
        self.done = False

    def send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if self.started:
            raise RuntimeError("response already started")
        self.started = self.done = True
        self._keep_alive = self._keep_alive and not self._conn.stopping
        self._conn.write(_whole(status, headers, body, self._keep_alive, not self._head_only))

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self._keep_alive = self._keep_alive and not self._conn.stopping
        if self._version == "1.0":  # no chunked encoding: the body ends at close
            self._keep_alive = False
            self._streaming = False
            extra = b"Connection: close\r\n\r\n"
        else:
            self._streaming = True
            close = b"" if self._keep_alive else b"Connection: close\r\n"
            extra = b"Transfer-Encoding: chunked\r\n%s\r\n" % close
        self._conn.write(_head(status, headers, extra))
        await self._conn.drain()

    async def write(self, data: bytes) -> None:
        """Send part of a started body; raises ClientGone once the client has left."""
        if not data:
            return
        if self._streaming:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self._conn.write(data)
        await self._conn.drain()

    def on_client_gone(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` once the client closes its connection (at once if it has
        already): a handler that waits on something else (a silent upstream) learns
        that nobody reads the answer any more. None removes it."""
        self._conn.on_gone = callback
        if callback is not None and self._conn.gone:
            self._conn.on_gone = None
            callback()

    async def end(self) -> None:
        if self._streaming:
            self._conn.write(b"0\r\n\r\n")
        self.done = True

    def abort(self) -> None:
        """Close the connection: the client sees a broken response, not a clean end."""
        self.done = True
        self._keep_alive = False
        self._conn.close()

    @property
    def keep_alive(self) -> bool:
        return self._keep_alive


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = server.loop
        self._handler = server.handler
        self._max_body = server.max_body
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: collections.deque[tuple[Request, bool]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._gone = False
        self.on_gone: Callable[[], None] | None = None  # see Reply.on_client_gone
        self._closing = False
        self._stall_check: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._refused = False  # sticky: nothing after a refused request is answered
        self._upgrade_request: tuple[Request, bool] | None = None
        self._upgrade_left = 0
        self._upgrade_body: list[bytes] = []
        self._reset()

    def _reset(self) -> None:
        self._target = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._header_count = 0
        self._body: list[bytes] = []
        self._body_size = 0

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._server.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        if self._stall_check is not None:
            self._stall_check.cancel()
            self._stall_check = None
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ClientGone())
        on_gone, self.on_gone = self.on_gone, None
        if on_gone is not None:
            on_gone()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._upgrade_left:
            data = self._take_upgrade_body(data)
            if not data:
                return
        try:
            self._parser.feed_data(data)
            if self._task is None:  # a request still arriving must keep arriving
                self._arm_idle()
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops at the end of an upgrade request's head: its body and what
            # follows are read here, and the connection goes on in HTTP/1.1.
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self._parser = httptools.HttpRequestParser(self)
            rest = self._take_upgrade_body(data[offset:]) if self._upgrade_left else data[offset:]
            if rest:
                self.data_received(rest)
        except httptools.HttpParserError:
            if not self._refused:
                self._refuse(400, "malformed HTTP request")

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # ------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._target += url
        if len(self._target) > MAX_TARGET:
            self._refuse(414, f"request target longer than {MAX_TARGET} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_count += 1
        if self._header_count > MAX_HEADERS or len(name) + len(value) > MAX_HEADER_BYTES:
            self._refuse(
                431, f"more than {MAX_HEADERS} headers or one over {MAX_HEADER_BYTES} bytes"
            )
            return
        self._headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        length = self._content_length()
        if length is not None and length > self._max_body:
            self._refuse(413, f"request body larger than {self._max_body} bytes")
            return
        expect = next((v for n, v in self._headers if n.lower() == "expect"), None)
        # Not while an earlier response is being written: the client's wait times out.
        if expect and expect.lower() == "100-continue" and self.transport and not self._task:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._refuse(413, f"request body larger than {self._max_body} bytes")
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        parser = self._parser
        request = Request(
            parser.get_method().decode("latin-1"),
            self._target.decode("latin-1"),
            Headers(self._headers),
            b"".join(self._body),
            parser.get_http_version(),
        )
        keep_alive = parser.should_keep_alive()
        if parser.should_upgrade():  # Connection: upgrade; llhttp left the body unread
            if any(n.lower() == "transfer-encoding" for n, _ in self._headers):
                self._refuse(400, "an Upgrade request with a chunked body is not supported")
                return
            length = self._content_length() or 0
            if length:
                self._upgrade_request = (request, keep_alive)
                self._upgrade_left = length
                self._upgrade_body = []
                return
        self._enqueue(request, keep_alive)

    def _take_upgrade_body(self, data: bytes) -> bytes:
        """Consume the pending upgrade request's body from `data`; return what follows."""
        part = data[: self._upgrade_left]
        self._upgrade_body.append(part)
        self._upgrade_left -= len(part)
        if not self._upgrade_left and self._upgrade_request is not None:
            request, keep_alive = self._upgrade_request
            request.body = b"".join(self._upgrade_body)
            self._upgrade_request = None
            self._upgrade_body = []
            self._enqueue(request, keep_alive)
        return data[len(part) :]

    def _enqueue(self, request: Request, keep_alive: bool) -> None:
        self._queue.append((request, keep_alive))
        if self._task is None:
            self._task = self._loop.create_task(self._serve())
        else:
            self._pause_reading()  # pipelined: hold the rest in the socket

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    # ------------------------------------------------------------ serving

    async def _serve(self) -> None:
        try:
            while self._queue and not self._gone:
                request, keep_alive = self._queue.popleft()
                reply = Reply(self, request, keep_alive and not self._server.stopping)
                self._server.in_flight += 1
                try:
                    await self._answer(request, reply)
                finally:
                    self._server.in_flight -= 1
                    self.on_gone = None
                if not reply.keep_alive or self._gone:
                    self.close()
                    return
            if self._refused:  # a broken request came after the ones answered
                self.close()
                return
        finally:
            self._task = None
        if self._server.stopping:  # answered with keep-alive before the drain began
            self.close()
            return
        if self._reading_paused and self.transport is not None and not self._gone:
            self._reading_paused = False
            self.transport.resume_reading()
        self._arm_idle()

    async def _answer(self, request: Request, reply: Reply) -> None:
        try:
            await self._handler(request, reply)
            if not reply.started:
                raise RuntimeError("the handler did not answer")
        except ClientGone:
            reply.abort()
        except Exception:
            log.exception("error answering %s %s", request.method, request.raw_path)
            if not reply.started:
                with contextlib.suppress(ClientGone):
                    reply.send(500, [("Content-Type", "text/plain")], b"internal error\n")
            reply.abort()
        if not reply.done:  # started, never ended
            reply.abort()

    def _content_length(self) -> int | None:
        for name, value in self._headers:
            if name.lower() == "content-length":
                return int(value) if value.strip().isdigit() else None
        return None

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that breaks a limit and close; while earlier requests are
        still being answered, close after them instead."""
        self._refused = True
        if self._task is not None:
            self._pause_reading()
            return
        if self.transport is not None and not self._closing:
            text = [("Content-Type", "text/plain; charset=utf-8")]
            self.transport.write(_whole(status, text, (message + "\n").encode(), False, True))
        self.close()

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._gone or self._closing:
            return
        self._idle = self._loop.call_later(IDLE_S, self.close)

    def write(self, data: bytes) -> None:
        if self._gone or self.transport is None or self.transport.is_closing():
            raise ClientGone
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the client reads enough of what was written; raises ClientGone
        when it has left, or has read none of it for STALLED_S (the connection is cut)."""
        if self._gone:
            raise ClientGone
        while self._write_paused:
            unsent = self._unsent()
            drain = self._drain = self._loop.create_future()
            try:
                await asyncio.wait((drain,), timeout=STALLED_S)
            finally:
                self._drain = None
            if drain.done():
                drain.result()  # ClientGone when the client left
                return
            drain.cancel()
            if self._unsent() >= unsent:
                self.abort()
                raise ClientGone

    def close(self) -> None:
        """Close once what was written is sent (cut if the client stops reading it)."""
        self._closing = True
        if self.transport is not None:
            unsent = self._unsent()
            self.transport.close()
            if unsent and self._stall_check is None:
                self._watch_stall(unsent)

    def abort(self) -> None:
        """Close at once, dropping what is not sent yet."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _unsent(self) -> int:
        """Bytes written but not yet taken by the client: the transport's buffer, and
        the kernel's send queue (a slow reader empties that one first; the transport's
        moves only once the kernel has room for a third of its buffer)."""
        transport = self.transport
        if transport is None or self._gone:
            return 0
        return transport.get_write_buffer_size() + _kernel_unsent(transport)

    def _watch_stall(self, unsent: int) -> None:
        def check() -> None:
            self._stall_check = None
            now = self._unsent()
            if not now:
                return
            if now >= unsent:
                self.abort()
            else:
                self._watch_stall(now)

        self._stall_check = self._loop.call_later(STALLED_S, check)

    @property
    def stopping(self) -> bool:
        return self._server.stopping

    @property
    def gone(self) -> bool:
        return self._gone

    @property
    def busy(self) -> bool:
        return self._task is not None


def _kernel_unsent(transport: asyncio.Transport) -> int:
    """The socket's send queue (Linux SIOCOUTQ: bytes not yet acknowledged by the
    client); 0 where it cannot be read."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    except (OSError, ValueError):
        return 0
    return max(0, int.from_bytes(queued, sys.byteorder, signed=True))


class HttpServer:
    """Listens on host:port and runs `handler` for every request."""

    def __init__(self, handler: Handler, *, max_body: int) -> None:
        self.handler = handler
        self.max_body = max_body
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self.in_flight = 0
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None

    async def listen(self, host: str, port: int) -> None:
        """Start listening (raises OSError when the address cannot be bound)."""
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True
        )

    @property
    def port(self) -> int:
        sockets = getattr(self._server, "sockets", None)
        assert sockets
        return int(sockets[0].getsockname()[1])

    async def drain(self, timeout: float) -> None:
        """Wind down while still listening: close idle connections, answer every later
        request with `Connection: close`, give requests in flight `timeout` seconds to
        finish, then close the connections still busy and let their handlers finish
        (they learn at once through `Reply.on_client_gone`). `close()` stops listening."""
        self.stopping = True
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        await self._wait_idle(timeout)
        if self.in_flight:
            for conn in list(self.connections):
                if conn.busy:
                    conn.close()
            await self._wait_idle(CUT_HANDLERS_S)

    def close(self) -> None:
        """Stop listening and close every connection."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()

    async def stop(self, timeout: float) -> None:
        """Stop accepting, then `drain(timeout)` and `close()`."""
        if self._server is not None:
            self._server.close()
        await self.drain(timeout)
        self.close()

    async def _wait_idle(self, timeout: float) -> None:
        deadline = self.loop.time() + timeout
        while self.in_flight and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
