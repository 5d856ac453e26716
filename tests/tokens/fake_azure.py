"""A local HTTPS server speaking the two Azure Monitor wire formats the exporter reads.

Simulated because Azure cannot be reached from the tests. Shapes follow the REST docs:
- Log Analytics query API, `POST /v1/workspaces/{id}/query` with body
  `{"query": ..., "timespan": ...}`, answering `{"tables": [{"name": "PrimaryResult",
  "columns": [{"name", "type"}], "rows": [[...]]}]}`. The server does not run KQL: it
  reads the exporter's ingestion-time window out of the query text and performs the
  documented join + summarize over the records it holds.
- Metrics data plane batch API, `POST /subscriptions/{sub}/metrics:getBatch?starttime=
  &endtime=&interval=&metricnames=&aggregation=&filter=&top=` with body `{"resourceids": [...]}`,
  answering `{"values": [{"starttime", "endtime", "interval", "namespace",
  "resourceregion", "resourceid", "value": [{"id", "name": {"value", "localizedValue"},
  "unit", "timeseries": [{"metadatavalues": [{"name": {"value": ...}, "value": ...}],
  "data": [{"timeStamp", "total"}]}]}]}]}`.
Requests need `Authorization: Bearer <TOKEN>`; `fail_next` queues error answers
(e.g. 429 with Retry-After) per API.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "test-token-not-a-secret"
_WINDOW = re.compile(
    r"ingestion_time\(\) >= datetime\(([^)]+)\) and ingestion_time\(\) < datetime\(([^)]+)\)"
)


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LlmRecord:
    """One ApiManagementGatewayLlmLog row (and its gateway log's caller, if any)."""

    ingested: datetime
    correlation_id: str
    model: str
    deployment: str
    prompt: int
    completion: int
    subscription: str | None = None
    product: str | None = None


@dataclass
class FakeAzure:
    llm: list[LlmRecord] = field(default_factory=list)
    # resource id -> metric name -> deployment -> [(minute, total)]
    points: dict[str, dict[str, dict[str, list[tuple[datetime, float]]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    )
    fail_next: dict[str, list[tuple[int, dict[str, str]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    held: dict[str, threading.Event] = field(default_factory=dict)
    """API ("logs" or "metrics") -> event: its answers wait until the event is set (a slow
    call, or a client sleeping out a long Retry-After)."""
    omitted: set[str] = field(default_factory=set)
    """Resource ids left out of getBatch answers (a resource the answer skips)."""
    failed_metrics: dict[str, str] = field(default_factory=dict)
    """Metric name -> errorCode: answered in a 200 with no series, as the batch API
    reports a query failure for one metric ("'Success' or the error details")."""

    # ------------------------------------------------------------ Log Analytics
    def logs_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        match = _WINDOW.search(body["query"])
        assert match, body["query"]
        start, end = _t(match.group(1)), _t(match.group(2))
        sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
        for r in self.llm:
            if start <= r.ingested < end:
                acc = sums[(r.subscription, r.product, r.model, r.deployment)]
                acc[0] += r.prompt
                acc[1] += r.completion
        columns = [
            {"name": "ApimSubscriptionId", "type": "string"},
            {"name": "ProductId", "type": "string"},
            {"name": "ModelName", "type": "string"},
            {"name": "DeploymentName", "type": "string"},
            {"name": "PromptTokens", "type": "long"},
            {"name": "CompletionTokens", "type": "long"},
        ]
        rows = [[*k, v[0], v[1]] for k, v in sums.items()]
        return {"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]}

    # ------------------------------------------------------------ metrics
    def metrics_answer(self, query: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        start, end = _t(query["starttime"][0]), _t(query["endtime"][0])
        names = query["metricnames"][0].split(",")
        # With a filter, at most `top` series per resource and metric (documented default 10).
        top = int(query.get("top", ["10"])[0]) if "filter" in query else None
        values = []
        for rid in body["resourceids"]:
            if rid in self.omitted:
                continue
            metrics = []
            for name in names:
                series = []
                for deployment, pts in self.points[rid][name].items():
                    data = [{"timeStamp": _z(t), "total": v} for t, v in pts if start <= t < end]
                    series.append(
                        {
                            # lowercase on purpose: the exporter must match case-insensitively
                            "metadatavalues": [
                                {"name": {"value": "modeldeploymentname"}, "value": deployment}
                            ],
                            "data": data,
                        }
                    )
                if top is not None:
                    series = series[:top]
                error = self.failed_metrics.get(name)
                metrics.append(
                    {
                        "id": f"{rid}/providers/Microsoft.Insights/metrics/{name}",
                        "type": "Microsoft.Insights/metrics",
                        "name": {"value": name, "localizedValue": name},
                        "displayDescription": "",
                        "unit": "Count",
                        "timeseries": [] if error else series,
                        "errorCode": error or "Success",
                        **({"errorMessage": f"query of {name} failed"} if error else {}),
                    }
                )
            values.append(
                {
                    "starttime": _z(start),
                    "endtime": _z(end),
                    "interval": query.get("interval", ["PT1M"])[0],
                    "namespace": query["metricnamespace"][0],
                    "resourceregion": "eastus",
                    "resourceid": rid,
                    "value": metrics,
                }
            )
        return {"values": values}


def make_handler(fake: FakeAzure) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            api = "logs" if url.path.startswith("/v1/workspaces/") else "metrics"
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, {"error": {"code": "AuthorizationFailed", "message": "no"}})
                return
            with fake.lock:
                fake.requests.append((api, self.path))
                failure = fake.fail_next[api].pop(0) if fake.fail_next[api] else None
                held = fake.held.get(api)
            if held is not None:
                held.wait(timeout=30)
            if failure is not None:
                status, headers = failure
                self._send(
                    status, {"error": {"code": "Throttled", "message": "slow down"}}, headers
                )
                return
            with fake.lock:
                if api == "logs":
                    self._send(200, fake.logs_answer(body))
                else:
                    self._send(200, fake.metrics_answer(parse_qs(url.query), body))

    return Handler


class FakeAzureServer:
    """Serves a FakeAzure over HTTPS on a free loopback port (trustme certificate)."""

    def __init__(self, fake: FakeAzure, ssl_context: ssl.SSLContext):
        self.fake = fake
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
        self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeAzureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
