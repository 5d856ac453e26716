"""A local HTTPS server that speaks the Cost Management Query API's wire format.

Azure cannot be reached from the tests, so the real azure-mgmt-costmanagement client
talks to this server instead (certificate from trustme, the client pointed at it with
`base_url=` and `connection_verify=`). Each POST is recorded and answered with the
next scripted response: the documented Query shape (`properties.columns`,
`properties.rows`, `properties.nextLink`, UsageDate as a YYYYMMDD number), a 429 with
Cost Management's QPU retry-after header, a 500, or a 204.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

COLUMNS = [
    {"name": "Cost", "type": "Number"},
    {"name": "UsageDate", "type": "Number"},
    {"name": "ServiceName", "type": "String"},
    {"name": "TagKey", "type": "String"},
    {"name": "TagValue", "type": "String"},
    {"name": "Currency", "type": "String"},
]


def query_result(rows: list[list[Any]], next_link: str | None = None) -> dict[str, Any]:
    return {
        "id": "subscriptions/00000000-0000-0000-0000-000000000000/providers/"
        "Microsoft.CostManagement/query/6f1a3c1e-0000-0000-0000-000000000000",
        "name": "6f1a3c1e-0000-0000-0000-000000000000",
        "type": "Microsoft.CostManagement/query",
        "properties": {"nextLink": next_link, "columns": COLUMNS, "rows": rows},
    }


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


class QueryServer:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self.base_url = ""

    def script(self, *replies: Reply) -> None:
        with self.lock:
            self.replies.extend(replies)

    def _next(self) -> Reply:
        with self.lock:
            if not self.replies:
                return Reply(500, {"error": {"code": "TestUnscripted", "message": "no reply"}})
            return self.replies.pop(0)


def _handler(server: QueryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            split = urllib.parse.urlsplit(self.path)
            with server.lock:
                server.requests.append(
                    Recorded(
                        "POST",
                        split.path,
                        dict(urllib.parse.parse_qsl(split.query)),
                        {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw) if raw else {},
                    )
                )
            reply = server._next()
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.status != 204:
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if reply.status != 204:
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_query_server(tmp: Path) -> Iterator[tuple[QueryServer, Path]]:
    """Start the HTTPS server on a free loopback port; yield it and its CA file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    state = QueryServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    state.base_url = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, ca_file
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
