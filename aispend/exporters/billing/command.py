"""`aispend exporter billing`: the cloud bill (Azure Cost Management, FOCUS files)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aispend import ports

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from aispend.config import Config

log = logging.getLogger(__name__)

SOURCE = "billing"
DEFAULT_PORT = ports.BILLING_EXPORTER


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aispend.exporters.serve import add_exporter_args

    add_exporter_args(parser, DEFAULT_PORT)


def run(args: argparse.Namespace) -> int:
    from aispend.config import ConfigError, load_config, resolve_config_path
    from aispend.exporters.billing.azure_cost import AzureCostSource
    from aispend.exporters.billing.collector import (
        BillingCollector,
        BillingSource,
        CachedSource,
        Refresher,
    )
    from aispend.exporters.billing.focus import FocusSource
    from aispend.exporters.budgets import info_metrics
    from aispend.exporters.serve import build_registry, serve

    try:
        config = load_config(resolve_config_path(args.config))
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    sources: list[BillingSource] = []
    if config.sources.azure_cost is not None:
        sources.append(AzureCostSource(config.sources.azure_cost, config.currency))
    if config.sources.focus is not None:
        sources.append(FocusSource(config.sources.focus, config.currency))
    if not sources:
        print(
            "billing exporter: nothing to read: configure sources.azure_cost and/or"
            " sources.focus in the config",
            file=sys.stderr,
        )
        return 1
    cached = [CachedSource(s) for s in sources]

    registry = build_registry([BillingCollector(cached), _InfoCollector(config, info_metrics)])
    refresher = Refresher(cached)
    if args.once:
        refresher.run_once()
    else:
        refresher.start()
    try:
        status = serve(registry, args.listen, args.once, SOURCE)
    finally:
        refresher.stop()
    if args.once and not all(c.ok for c in cached):
        return 1
    return status


class _InfoCollector:
    """`aispend_info` with the reporting currency, as every aispend process exports."""

    def __init__(self, config: Config, make: Callable[[Config], Iterator[Metric]]):
        self._config = config
        self._make = make

    def collect(self) -> Iterator[Metric]:
        return self._make(self._config)

    def describe(self) -> Iterator[Metric]:
        return self._make(self._config)
