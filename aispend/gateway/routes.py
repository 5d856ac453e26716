"""Which client paths the gateway meters, and what each one is.

OpenAI: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses.
Azure OpenAI: /openai/deployments/{deployment}/{chat/completions|completions|embeddings}.
Anthropic: /v1/messages. Anything else is answered 404 by the proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

from aispend.gateway.settings import Provider


@dataclass(frozen=True)
class Route:
    provider: Provider
    kind: str
    """Response format: chat, completions, embeddings, responses or anthropic."""
    operation: str
    """OpenTelemetry GenAI operation name."""
    deployment: str | None = None


_OPENAI = {
    "/v1/chat/completions": Route("openai", "chat", "chat"),
    "/v1/completions": Route("openai", "completions", "text_completion"),
    "/v1/embeddings": Route("openai", "embeddings", "embeddings"),
    "/v1/responses": Route("openai", "responses", "chat"),
    "/v1/messages": Route("anthropic", "anthropic", "chat"),
}
_AZURE_OPS = {
    "chat/completions": ("chat", "chat"),
    "completions": ("completions", "text_completion"),
    "embeddings": ("embeddings", "embeddings"),
}
_AZURE_PREFIX = "/openai/deployments/"

SUPPORTED = (*_OPENAI, _AZURE_PREFIX + "{deployment}/{chat/completions|completions|embeddings}")

# OpenTelemetry GenAI provider names.
OTEL_PROVIDER = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic"}


def match(path: str) -> Route | None:
    route = _OPENAI.get(path)
    if route is not None:
        return route
    if path.startswith(_AZURE_PREFIX):
        deployment, _, rest = path[len(_AZURE_PREFIX) :].partition("/")
        op = _AZURE_OPS.get(rest)
        if deployment and op is not None:
            return Route("azure", op[0], op[1], deployment)
    return None
