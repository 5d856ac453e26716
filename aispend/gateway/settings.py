"""The `sources.gateway` section of aispend.yaml, and the secrets it points at.

Example::

    sources:
      gateway:
        listen: "127.0.0.1:9120"
        upstreams:
          openai: {base_url: "http://demo-upstream:9190", api_key_env: OPENAI_API_KEY}
          azure: {base_url: "http://demo-upstream:9190", api_key_env: AZURE_OPENAI_API_KEY}
          anthropic: {base_url: "http://demo-upstream:9190", api_key_env: ANTHROPIC_API_KEY}
        azure_deployments: {chat-prod: gpt-4o}
        admin_token_file: /etc/aispend/secrets/gateway_admin_token

Secrets (provider keys, the admin token) are never in the file itself: each comes
from an environment variable or a file, read once at start by `aispend.secrets.find_secret`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from aispend.configbase import StrictModel
from aispend.gateway.http_client import Origin
from aispend.secrets import find_secret

Provider = Literal["openai", "azure", "anthropic"]
PROVIDERS: tuple[Provider, ...] = ("openai", "azure", "anthropic")

ADMIN_TOKEN_ENV = "AISPEND_GATEWAY_ADMIN_TOKEN"

PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class Upstream(StrictModel):
    """Where one provider's traffic goes, and the provider key the gateway injects."""

    base_url: str
    """Scheme and host (and an optional path prefix); the client's path is appended."""
    api_key_env: str | None = None
    """Environment variable that holds the provider key."""
    api_key_file: str | None = None
    """File that holds the provider key (wins over api_key_env when set)."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or value[-3:] == "://":
            raise ValueError("must be an http:// or https:// URL such as https://api.openai.com")
        if "?" in value or "#" in value:
            raise ValueError("must not contain a query or fragment")
        Origin.parse(value)  # a port, host or user part no request could be sent with
        return value.rstrip("/")


class GatewaySettings(StrictModel):
    listen: str = "127.0.0.1:9120"
    """Default listen address (the --listen flag overrides it)."""
    upstreams: dict[Provider, Upstream] = {}
    azure_deployments: dict[str, str] = {}
    """Azure deployment name -> model name, used when a response does not say."""
    allow_unattributed: bool = False
    """Forward requests with an unknown key as team "unattributed" instead of 401."""
    header_refinement: bool = False
    """Let X-Aispend-Agent / X-Aispend-Project fill the agent / project a key leaves unset
    (never with one another key of the team is pinned to)."""
    max_agents_per_team: Annotated[int, Field(ge=1, le=10_000)] = 50
    """Distinct agent label values per team; more fold into agent="other"."""
    admin_token_file: str | None = None
    """File holding the admin API bearer token (else $AISPEND_GATEWAY_ADMIN_TOKEN)."""
    throttle_db: str = "aispend-gateway-throttles.sqlite"
    """SQLite file of the throttle table (relative paths: to the working directory)."""
    connect_timeout_s: PositiveSeconds = 5.0
    read_timeout_s: PositiveSeconds = 300.0
    """Longest wait for the upstream's response headers or its next stream chunk."""
    shutdown_scrape_wait_s: Annotated[float, Field(ge=0, le=3600)] = 15.0
    """On SIGTERM, once requests in flight are done (up to 5 s), how long the gateway
    keeps answering /metrics (new proxied requests get 503) waiting for one scrape that
    exports the usage recorded since the last one; it waits only when such usage exists
    and something has scraped it before. The default is Prometheus' default scrape
    interval; keep the pod's terminationGracePeriodSeconds above 5 s plus this. 0: exit
    without waiting (that usage is lost)."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9120")
        return value


def admin_token(settings: GatewaySettings) -> str | None:
    """The admin token: `admin_token_file`, else $AISPEND_GATEWAY_ADMIN_TOKEN."""
    return find_secret(
        settings.admin_token_file, ADMIN_TOKEN_ENV, "sources.gateway.admin_token_file"
    )
