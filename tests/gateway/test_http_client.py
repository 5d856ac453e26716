"""The gateway's upstream HTTP/1.1 client (aispend/gateway/http_client.py) over real sockets.

Simulated: the upstream, as a scripted asyncio server on a loopback port that writes raw
HTTP/1.1 bytes, so each test controls exactly what arrives (lengths, chunks, early
closes, garbage, stalls). TLS is real: a trustme CA, trusted through SSL_CERT_FILE as a
deployment would trust a private CA.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trustme
import yaml

from aispend.config import ConfigError, parse_config
from aispend.gateway import http_client
from tests.conftest import free_port

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Upstream:
    """A loopback server running `script` for every connection; counts connections and
    keeps each raw request head it read."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.connections = 0
        self.heads: list[bytes] = []
        self.port = 0

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request: its head (kept) and its body (returned)."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return await reader.readexactly(length)


def client(**kw: float) -> http_client.UpstreamClient:
    return http_client.UpstreamClient(
        connect_timeout=kw.get("connect", 5.0), read_timeout=kw.get("read", 5.0)
    )


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await up.read_request(reader)
            writer.write(_ok(b'{"echo": %d}' % len(body)))
            await writer.drain()

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            for i in range(3):
                body = b'{"n": %d}' % i
                r = await c.post(up.url + "/base/", "/v1/chat?api-version=2024-10-21",
                                 [("X-Test", "ä")], body)  # fmt: skip
                assert r.status == 200
                assert r.header("content-type") == "application/json"
                assert r.content_length == len(b'{"echo": 8}')
                assert await r.read(1000) == b'{"echo": 8}'
                r.release()
            c.close()
        assert up.connections == 1
        head = up.heads[0].decode("utf-8")
        assert head.startswith("POST /base/v1/chat?api-version=2024-10-21 HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{up.port}\r\n" in head
        assert "X-Test: ä\r\n" in head
        assert "Content-Length: 8\r\n" in head

    run(main())


def test_chunked_body_arrives_chunk_by_chunk() -> None:
    go_on = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await go_on.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()  # keep the connection open

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            r = await c.post(up.url, "/v1/x", [], b"{}")
            assert r.content_length is None
            assert await r.readany() == b"first"  # before the rest was even sent
            go_on.set()
            assert await r.readany() == b"second"
            assert await r.readany() == b""
            r.release()
            assert len(c._pools[c.origin(up.url)]) == 1  # complete: back in the pool
            c.close()

    run(main())


def test_body_until_close_and_connection_close_are_not_reused() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        if up.connections == 1:  # no length: the body ends when the connection does
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        else:
            writer.write(_ok(b"{}", b"Connection: close\r\n"))
        await writer.drain()

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            r = await c.post(up.url, "/a", [], b"")
            assert await r.read(100) == b"all of it"
            r.release()
            r = await c.post(up.url, "/b", [], b"")
            assert await r.read(100) == b"{}"
            r.release()
            assert c._pools[c.origin(up.url)] == []
            c.close()
        assert up.connections == 2

    run(main())


def test_interim_100_continue_is_skipped() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + _ok(b"done"))
        await writer.drain()
        await reader.read()

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            r = await c.post(up.url, "/", [], b"")
            assert r.status == 200
            assert await r.read(100) == b"done"
            r.release()
            c.close()

    run(main())


@pytest.mark.parametrize(
    ("answer", "error", "mid_body"),
    [
        (_ok(b"0123456789")[:-4], http_client.ConnectionBroken, True),  # short of Content-Length
        (_CHUNKED + b"5\r\nabc", http_client.ConnectionBroken, True),  # a chunk cut short
        (b"", http_client.ConnectionBroken, False),  # closed before answering
        (b"SMTP ready\r\n\r\n", http_client.BadResponse, None),
    ],
)
def test_broken_responses_raise_their_error(
    answer: bytes, error: type[http_client.UpstreamError], mid_body: bool | None
) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(answer)
        await writer.drain()

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            with pytest.raises(error) as info:
                r = await c.post(up.url, "/", [], b"{}")
                try:
                    await r.read(1000)
                finally:
                    r.release()
            if mid_body is not None:
                assert isinstance(info.value, http_client.ConnectionBroken)
                assert info.value.mid_body is mid_body
            assert c._pools[c.origin(up.url)] == []  # a broken connection is never reused
            c.close()

    run(main())


def test_endless_headers_are_cut_off() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(100_000):  # 4 MB of headers if nobody stops it
            writer.write(b"X-Filler-%06d: %s\r\n" % (i, b"v" * 20))
            if i % 1000 == 0:
                await writer.drain()

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            with pytest.raises(http_client.BadResponse, match="headers pass"):
                await c.post(up.url, "/", [], b"")
            assert c._pools[c.origin(up.url)] == []
            c.close()

    run(main())


def test_read_timeout_while_waiting_for_the_head_and_for_the_body() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        if up.connections == 2:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
        await reader.read()  # then stall

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client(read=0.3)
            with pytest.raises(http_client.UpstreamTimeout):
                await c.post(up.url, "/", [], b"")
            r = await c.post(up.url, "/", [], b"")
            assert await r.readany() == b"abc"
            with pytest.raises(http_client.UpstreamTimeout):
                await r.readany()
            r.release()
            assert c._pools[c.origin(up.url)] == []
            c.close()

    run(main())


def test_body_cap_by_content_length_and_by_counting() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await up.read_request(reader)
            if len(up.heads) == 1:
                writer.write(_ok(b"x" * 101))
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                writer.write(b"32\r\n" + b"y" * 50 + b"\r\n" + b"33\r\n" + b"y" * 51 + b"\r\n")
                writer.write(b"0\r\n\r\n")
            await writer.drain()

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            for _ in range(2):
                r = await c.post(up.url, "/", [], b"")
                with pytest.raises(http_client.BodyTooLarge):
                    await r.read(100)
                r.release()
            c.close()

    run(main())


def test_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            with pytest.raises(ValueError, match="line break"):
                await c.post(up.url, "/", [("X-A", "1\r\nX-Smuggled: 2")], b"")
            c.close()
        assert up.connections == 0

    run(main())


def test_refused_connection_and_bad_base_url() -> None:
    async def main() -> None:
        c = client()
        with pytest.raises(http_client.ConnectFailed) as info:
            await c.post(f"http://127.0.0.1:{free_port()}", "/", [], b"")
        assert not info.value.timed_out
        with pytest.raises(ValueError, match="http"):
            await c.post("ftp://example.invalid", "/", [], b"")

    run(main())


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("https://api.openai.com:abc", "has a port that is not a number from 1 to 65535"),
        ("https://api.openai.com:0", "has a port that is not a number from 1 to 65535"),
        ("https://api.openai.com:70000", "has a port that is not a number from 1 to 65535"),
        ("https://key:s3cret@api.openai.com", "must not hold a user or password"),
        ("https://" + "a" * 64 + ".example.com", "has a host name that DNS cannot carry"),
    ],
)
def test_a_base_url_no_request_can_use_is_a_config_error(base_url: str, message: str) -> None:
    """Such URLs passed `config check`; then every request got a 400 blaming the client
    ("invalid_header"), one with the URL's password in its message."""
    text = yaml.safe_dump(
        {
            "teams": [{"name": "search"}],
            "sources": {"gateway": {"upstreams": {"openai": {"base_url": base_url}}}},
        }
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    (issue,) = info.value.issues
    assert issue.path == "sources.gateway.upstreams.openai.base_url"
    assert issue.message.startswith(message), issue
    assert "s3cret" not in info.value.report()


def test_idle_connection_closed_by_the_upstream_is_not_reused() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(_ok(b"{}"))
        await writer.drain()
        # then close while the client holds the connection idle

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            for _ in range(2):
                r = await c.post(up.url, "/", [], b"")
                assert await r.read(10) == b"{}"
                r.release()
                pool = c._pools[c.origin(up.url)]
                for _ in range(100):  # until the close has reached the client
                    if pool[0].closed:
                        break
                    await asyncio.sleep(0.01)
            c.close()
        assert up.connections == 2

    run(main())


def test_tls_upstream_verified_against_the_trusted_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(_ok(b'{"tls": true}'))
        await writer.drain()
        await reader.read()

    up = Upstream(script, tls=server_ctx)

    async def main(trusted: bool) -> None:
        async with up:
            c = client()
            url = f"https://localhost:{up.port}/v1"
            if not trusted:  # the system CAs do not know this CA
                with pytest.raises(http_client.ConnectFailed, match="certificate"):
                    await c.post(url, "/x", [], b"")
                return
            r = await c.post(url, "/x", [], b"")
            assert await r.read(100) == b'{"tls": true}'
            r.release()
            c.close()
        assert up.heads[-1].startswith(b"POST /v1/x HTTP/1.1\r\n")

    run(main(trusted=False))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    run(main(trusted=True))


def test_slow_reader_pauses_the_upstream_and_gets_every_byte() -> None:
    size = 4 * 1024 * 1024

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await up.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        for i in range(size // 65536):
            writer.write(bytes([i % 251]) * 65536)
            await writer.drain()
        await reader.read()

    up = Upstream(script)

    async def main() -> None:
        async with up:
            c = client()
            r = await c.post(up.url, "/", [], b"")
            got = bytearray(await r.readany())
            await asyncio.sleep(0.5)  # a slow client: the upstream keeps sending meanwhile
            assert r.paused
            assert r.buffered < size // 2  # held back by the socket, not in memory here
            while data := await r.readany():
                got += data
            assert len(got) == size
            assert all(got[i * 65536] == i % 251 for i in range(size // 65536))
            r.release()
            assert len(c._pools[c.origin(up.url)]) == 1
            c.close()

    run(main())


def test_idle_connections_are_closed_after_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a burst of 20 concurrent requests, one request at a time reuses only the
    newest pooled connection: the 19 below it were never checked and stayed open for
    good (an upstream that keeps idle connections, like this one, never closed them)."""
    monkeypatch.setattr(http_client, "KEEPALIVE_S", 0.3)
    overlap = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await up.read_request(reader)
            if up.connections == 20:
                overlap.set()
            await asyncio.wait_for(overlap.wait(), 5)  # all 20 at once
            writer.write(_ok(b"{}"))
            await writer.drain()

    up = Upstream(script)

    async def one(c: http_client.UpstreamClient) -> None:
        r = await c.post(up.url, "/", [], b"")
        assert await r.read(10) == b"{}"
        r.release()

    async def main() -> None:
        async with up:
            c = client()
            await asyncio.gather(*(one(c) for _ in range(20)))
            pool = c._pools[c.origin(up.url)]
            assert sum(not conn.closed for conn in pool) == 20
            for _ in range(6):  # 1.2 s = 4 x KEEPALIVE_S, one request at a time
                await one(c)
                await asyncio.sleep(0.2)
            assert sum(not conn.closed for conn in pool) == 1
            await asyncio.sleep(0.5)  # and with no request at all
            assert sum(not conn.closed for conn in pool) == 0
            await one(c)  # a new connection
            c.close()
        assert up.connections == 21

    run(main())
