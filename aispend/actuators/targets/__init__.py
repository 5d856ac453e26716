"""Targets: the things that act. Each module has one target class with `apply`/`undo`.

`build_targets(settings, session)` turns the `actions.targets` config into instances.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping

import aiohttp

from aispend.actuators.settings import (
    AzureApimTargetSettings,
    CommandTargetSettings,
    GatewayTargetSettings,
    KubernetesTargetSettings,
    TargetSettings,
    WebhookTargetSettings,
)
from aispend.actuators.targets.base import Target


def build_target(
    name: str,
    settings: TargetSettings,
    session: aiohttp.ClientSession,
    ssl_context: ssl.SSLContext | None = None,
    hidden_env: frozenset[str] = frozenset(),
) -> Target:
    """`hidden_env`: environment variables holding secrets, kept from commands."""
    # Imports here keep each target's dependencies (azure-identity) off the others' path.
    if isinstance(settings, GatewayTargetSettings):
        from aispend.actuators.targets.gateway import GatewayTarget

        return GatewayTarget(name, settings, session)
    if isinstance(settings, KubernetesTargetSettings):
        from aispend.actuators.targets.kubernetes import KubernetesTarget

        return KubernetesTarget(name, settings, session)
    if isinstance(settings, AzureApimTargetSettings):
        from aispend.actuators.targets.azure_apim import AzureApimTarget

        return AzureApimTarget(name, settings, session, ssl_context=ssl_context)
    if isinstance(settings, CommandTargetSettings):
        from aispend.actuators.targets.command import CommandTarget

        return CommandTarget(name, settings, hidden_env)
    if isinstance(settings, WebhookTargetSettings):
        from aispend.actuators.targets.webhook import WebhookTarget

        return WebhookTarget(name, settings, session)
    raise TypeError(f"unknown target settings {type(settings).__name__}")


def build_targets(
    targets: Mapping[str, TargetSettings],
    session: aiohttp.ClientSession,
    secret_envs: Iterable[str] = (),
) -> dict[str, Target]:
    """`secret_envs`: more variables that hold secrets (the webhook token's)."""
    hidden = frozenset(
        [*secret_envs]
        + [s.admin_token_env for s in targets.values() if isinstance(s, GatewayTargetSettings)]
    )
    return {name: build_target(name, s, session, hidden_env=hidden) for name, s in targets.items()}


def preflight(targets: Mapping[str, TargetSettings]) -> list[str]:
    """Problems that would stop a target from starting (unreadable secrets, no cluster)."""
    from aispend.actuators.targets.kubeauth import KubeConfigError, load_auth
    from aispend.secrets import SecretError, require_secret

    problems = []
    for name, s in targets.items():
        try:
            if isinstance(s, GatewayTargetSettings):
                require_secret(s.admin_token_file, s.admin_token_env, f"target {name}: admin token")
            elif isinstance(s, WebhookTargetSettings) and s.token_file:
                require_secret(s.token_file, None, f"target {name}: token")
            elif isinstance(s, KubernetesTargetSettings):
                load_auth(s)
        except (SecretError, KubeConfigError) as exc:
            problems.append(f"actions.targets.{name}: {exc}")
    return problems
