"""The gateway's upstream HTTP/1.1 client: keep-alive pools per origin, httptools parsing.

Why not aiohttp's client: on the 2-vCPU machines of docs/benchmarks.md it cost about
0.3 ms of CPU per request at 100 req/s, a third of the gateway's 1 ms p50 budget. This
client does only what the upstream hop needs, on the llhttp parser (httptools, the
parser under uvicorn):
- one request at a time per connection, idle connections kept per origin (LIFO) for
  KEEPALIVE_S (then closed, each by its own timer, so a burst's extra connections do
  not stay open), dropped once closed or once the upstream said `Connection: close`;
- a request body of known length, written with its headers in one write;
- responses with Content-Length, chunked, or ending at close; the body is handed over as
  it arrives, with reading paused while more than HIGH_WATER bytes wait unread;
- TLS through `ssl.create_default_context()` (system CAs, SSL_CERT_FILE honoured);
- a connect timeout, and a read timeout for every wait on the upstream;
  `UpstreamResponse.interrupt` ends a wait early (the gateway's client left).
No redirects, cookies, proxies or decompression (the gateway asks for identity).

Errors, all UpstreamError:
  ConnectFailed     no connection (refused, DNS, TLS, connect timeout): nothing was sent
  UpstreamTimeout   connected, but the upstream sent nothing for read_timeout_s
  ConnectionBroken  the connection closed or broke before the response was complete
  BadResponse       the upstream's bytes are not an HTTP/1.1 response, or its headers
                    pass MAX_HEAD_BYTES
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

KEEPALIVE_S = 30.0
"""How long an idle upstream connection is kept for reuse."""
HIGH_WATER = 256 * 1024
"""Unread response bytes above which reading from the upstream pauses."""
MAX_HEAD_BYTES = 256 * 1024
"""The most header bytes (names and values) one response may carry."""


class UpstreamError(Exception):
    """The upstream hop failed; the subclass says how."""


class ConnectFailed(UpstreamError):
    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class UpstreamTimeout(UpstreamError):
    pass


class ConnectionBroken(UpstreamError):
    def __init__(self, message: str, *, mid_body: bool) -> None:
        super().__init__(message)
        self.mid_body = mid_body


class BadResponse(UpstreamError):
    pass


class BodyTooLarge(Exception):
    """A response body is larger than the reader's cap."""


@dataclass(frozen=True)
class Origin:
    """Where a base URL points: the connection key, the Host header and the path prefix."""

    scheme: str
    host: str
    port: int
    host_header: str
    prefix: str

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """ValueError for a URL no request could be sent to; the message never repeats
        the URL (it may hold credentials)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://host[:port][/path]")
        if "@" in parts.netloc:
            raise ValueError("must not hold a user or password: the key goes in api_key_file")
        try:
            port = parts.port
        except ValueError:  # not a number, or past 65535
            port = -1
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("has a port that is not a number from 1 to 65535")
        host = parts.hostname
        try:
            host.encode("idna")
        except UnicodeError:
            raise ValueError(f"has a host name that DNS cannot carry: {host[:100]!r}") from None
        default = 443 if parts.scheme == "https" else 80
        port = port or default
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if port == default else f"{shown}:{port}"
        return cls(parts.scheme, host, port, host_header, parts.path.rstrip("/"))


class HeaderError(ValueError):
    """A header the request cannot carry (the client's fault: a 400)."""


def encode_request(
    method: str, origin: Origin, target: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """The request's bytes. A CR, LF or NUL in a header is refused (HeaderError): it would
    let a client's header value smuggle a second header or request upstream."""
    lines = [f"{method} {origin.prefix}{target} HTTP/1.1", f"Host: {origin.host_header}"]
    for name, value in headers:
        if _UNSAFE.intersection(name) or _UNSAFE.intersection(value):
            raise HeaderError(f"header {name!r} holds a line break or NUL")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n"
    return head + body


_UNSAFE = frozenset("\r\n\0")


class _Connection(asyncio.Protocol):
    """One upstream connection and the response being read on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._response: UpstreamResponse | None = None
        self._expiry: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._response is None:  # bytes while idle: the connection is unusable
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BadResponse("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, BadResponse):  # raised by a callback of ours
                self._fail(exc.__context__)
            else:
                self._fail(BadResponse(f"the upstream's response is not HTTP/1.1: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        if response is None or response.complete:
            return
        if response.headers_done and response.until_close and exc is None:
            response.complete = True  # a body without length ends at close
            response.wake()
            return
        if response.headers_done:
            broken = ConnectionBroken("the upstream closed the connection mid-body", mid_body=True)
        else:
            broken = ConnectionBroken(
                "the upstream closed the connection before answering", mid_body=False
            )
        self._fail(broken)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        assert response is not None
        response.head_bytes += len(name) + len(value)
        if response.head_bytes > MAX_HEAD_BYTES:  # stops the parser: see data_received
            raise BadResponse(f"the upstream's headers pass {MAX_HEAD_BYTES} bytes")
        response.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self._response
        assert response is not None
        status = self._parser.get_status_code()
        if status < 200:  # 1xx: an interim response; the real one follows
            response.raw_headers.clear()
            response.interim = True
            return
        response.status = status
        response.keep_alive = self._parser.should_keep_alive()
        response.set_headers()
        response.headers_done = True
        response.wake()

    def on_body(self, body: bytes) -> None:
        response = self._response
        assert response is not None
        response.buffer.append(body)
        response.buffered += len(body)
        if response.buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            response.paused = True
        response.wake()

    def on_message_complete(self) -> None:
        response = self._response
        assert response is not None
        if response.interim:
            response.interim = False
            return
        response.keep_alive = response.keep_alive and self._parser.should_keep_alive()
        response.complete = True
        response.wake()

    # ours
    def _fail(self, error: UpstreamError) -> None:
        response = self._response
        if response is not None and not response.complete:
            response.error = error
            response.wake()
        self.close()

    def start(self, response: UpstreamResponse, data: bytes) -> None:
        assert self.transport is not None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._response = response
        self.transport.write(data)

    def finish(self) -> bool:
        """Detach the response; True when the connection can serve another request."""
        response, self._response = self._response, None
        reusable = (
            response is not None and response.complete and response.keep_alive and not self.closed
        )
        if reusable:
            if response is not None and response.paused:
                self.resume()
            self._parser = httptools.HttpResponseParser(self)
            self.idle_since = time.monotonic()
            self._expiry = self._loop.call_later(KEEPALIVE_S, self.close)
        else:
            self.close()
        return reusable

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.transport is not None:
            self.transport.close()


class UpstreamResponse:
    """A response whose head has arrived; its body is read with `read` or `readany`.
    Call `release` when done: a fully read keep-alive connection goes back to the pool,
    any other is closed (which also tells the upstream a streaming client went away)."""

    __slots__ = (
        "_conn",
        "_pool",
        "_read_timeout",
        "_waiter",
        "buffer",
        "buffered",
        "complete",
        "content_length",
        "error",
        "head_bytes",
        "headers",
        "headers_done",
        "interim",
        "interrupted",
        "keep_alive",
        "paused",
        "raw_headers",
        "released",
        "status",
        "until_close",
    )

    def __init__(self, conn: _Connection, pool: list[_Connection], read_timeout: float) -> None:
        self._conn = conn
        self._pool = pool
        self._read_timeout = read_timeout
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.headers: list[tuple[str, str]] = []
        self.content_length: int | None = None
        self.until_close = False
        self.headers_done = False
        self.interim = False
        self.complete = False
        self.keep_alive = False
        self.paused = False
        self.released = False
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.error: UpstreamError | None = None
        self.interrupted: BaseException | None = None

    def set_headers(self) -> None:
        chunked = False
        for raw_name, raw_value in self.raw_headers:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("utf-8", "replace")
            self.headers.append((name, value))
            lower = name.lower()
            if lower == "content-length" and value.strip().isdigit():
                self.content_length = int(value)
            elif lower == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        self.until_close = self.content_length is None and not chunked
        if chunked:
            self.content_length = None

    def header(self, name: str, default: str = "") -> str:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return default

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def interrupt(self, exc: BaseException) -> None:
        """Make the read waiting now (or the next one that would wait) raise `exc`: the
        caller no longer wants the body (its client left)."""
        self.interrupted = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def clear_interrupt(self) -> None:
        """Let reads wait again after `interrupt` (the caller wants the rest after all)."""
        self.interrupted = None

    async def wait(self) -> None:
        """Until the parser has something new, the response ends, the read times out, or
        `interrupt` is called."""
        if self.error is not None:
            raise self.error
        if self.interrupted is not None:
            raise self.interrupted
        loop = self._conn._loop
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self._read_timeout, _time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None:
            raise self.error

    async def readany(self) -> bytes:
        """The body bytes that have arrived (waiting for some); b"" at the end."""
        while not self.buffer:
            if self.complete:
                return b""
            await self.wait()
        data = b"".join(self.buffer) if len(self.buffer) > 1 else self.buffer[0]
        self.buffer.clear()
        self.buffered = 0
        if self.paused:
            self.paused = False
            self._conn.resume()
        return data

    async def read(self, limit: int) -> bytes:
        """The whole body, or BodyTooLarge once it passes `limit` bytes."""
        if self.content_length is not None and self.content_length > limit:
            raise BodyTooLarge
        parts: list[bytes] = []
        size = 0
        while True:
            data = await self.readany()
            if not data:
                return b"".join(parts)
            size += len(data)
            if size > limit:
                raise BodyTooLarge
            parts.append(data)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._conn.finish():
            self._pool.append(self._conn)


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("the upstream sent nothing in time"))


class UpstreamClient:
    """Sends one request at a time per connection; see the module docstring."""

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pools: dict[Origin, list[_Connection]] = {}
        self._origins: dict[str, Origin] = {}
        self._ssl: ssl.SSLContext | None = None

    def origin(self, base_url: str) -> Origin:
        origin = self._origins.get(base_url)
        if origin is None:
            origin = self._origins[base_url] = Origin.parse(base_url)
        return origin

    async def post(
        self,
        base_url: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        on_sent: Callable[[UpstreamResponse], None] | None = None,
    ) -> UpstreamResponse:
        """Send POST `target` (path and query, appended to the base URL's path) and return
        once the response's status and headers are in. Raises UpstreamError, or HeaderError
        for a header that cannot be sent. `on_sent` gets the response once the request is
        sent, before the wait for its head (to `interrupt` that wait)."""
        origin = self.origin(base_url)
        data = encode_request("POST", origin, target, headers, body)
        pool = self._pools.setdefault(origin, [])
        conn = self._idle(pool) or await self._connect(origin)
        response = UpstreamResponse(conn, pool, self._read_timeout)
        conn.start(response, data)
        try:
            if on_sent is not None:
                on_sent(response)
            while not response.headers_done:
                await response.wait()
        except BaseException:
            response.release()
            raise
        return response

    def _idle(self, pool: list[_Connection]) -> _Connection | None:
        while pool and pool[0].closed:  # the oldest, closed by their timers
            del pool[0]
        expired = time.monotonic() - KEEPALIVE_S
        while pool:
            conn = pool.pop()
            if not conn.closed and conn.idle_since > expired:
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except TimeoutError as exc:
            raise ConnectFailed(
                f"no connection to {origin.host_header} in {self._connect_timeout:g} s",
                timed_out=True,
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect to {origin.host_header}: {exc}") from exc
        return conn

    def close(self) -> None:
        for pool in self._pools.values():
            for conn in pool:
                conn.close()
            pool.clear()
