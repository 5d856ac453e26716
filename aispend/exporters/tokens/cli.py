"""`aispend exporter tokens`: poll Azure token usage in the background and serve it.

Credentials come from azure-identity's DefaultAzureCredential (environment, workload
identity, managed identity, Azure CLI). `--once` polls every source once, then prints.
The config is read at start; restart (or SIGTERM and start) to apply changes.
"""

from __future__ import annotations

import argparse
import logging

from aispend import ports

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aispend.exporters.serve import add_exporter_args

    add_exporter_args(parser, ports.TOKENS_EXPORTER)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from aispend.config import ConfigError, load_config, resolve_config_path
    from aispend.exporters.serve import build_registry, serve
    from aispend.exporters.tokens.collector import TokensPoller, build_sources
    from aispend.exporters.tokens.watermark import StateError, load_state
    from aispend.pricing import Pricer

    try:
        config = load_config(resolve_config_path(args.config))
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    settings = config.sources.azure_tokens
    if settings is None:
        print("no sources.azure_tokens section in the config: nothing to poll", file=sys.stderr)
        return 1
    state_path = Path(settings.state_file)
    try:
        state = load_state(state_path)
    except StateError as exc:
        print(exc, file=sys.stderr)
        return 1

    from azure.identity import DefaultAzureCredential

    poller = TokensPoller(settings, Pricer(config.prices), state, state_path, config.currency)
    poller.set_sources(build_sources(settings, DefaultAzureCredential(), poller.on_throttled))
    registry = build_registry([poller])
    if args.once:
        poller.poll_once()
    else:
        poller.start()
    try:
        return serve(registry, args.listen, args.once, "tokens")
    finally:
        poller.stop()
