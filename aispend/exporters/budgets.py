"""Budgets exporter: aispend.yaml's budgets and team metadata as gauges.

Exporting budgets as metrics lets one static rule cover every team. Exposition:

    aispend_budget{team="search",project="",agent="",period="month"} 12000
    aispend_budget_soft_ratio{team="search",project="",agent="",period="month"} 0.8
    aispend_team_info{team="support",cost_center="CC-2200",owner="...",criticality="critical"} 1
    aispend_info{version="0.1.0",currency="USD"} 1
    aispend_exporter_up{source="budgets"} 1

Unscoped labels are empty strings, so `aispend_budget{project=""}` selects team
budgets. A soft ratio is exported only where the budget sets one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from aispend import __version__, metrics
from aispend.config import Config, ConfigError, resolve_config_path
from aispend.config_watch import ConfigWatcher

SOURCE = "budgets"
DEFAULT_PORT = 9110


def info_metrics(config: Config) -> Iterator[Metric]:
    """`aispend_info`: every aispend process exports it with the reporting currency."""
    info = metrics.INFO.info()
    info.add_metric([], {metrics.VERSION: __version__, metrics.CURRENCY: config.currency})
    yield info


class BudgetsCollector:
    """Builds the budget gauges fresh from the current config at each scrape."""

    def __init__(self, get_config: Callable[[], Config]):
        self._get_config = get_config

    def collect(self) -> Iterator[Metric]:
        config = self._get_config()
        budget = metrics.BUDGET.gauge()
        soft = metrics.BUDGET_SOFT_RATIO.gauge()
        for b in config.budgets:
            labels = [b.team, b.project or "", b.agent or "", b.period]
            budget.add_metric(labels, b.amount)
            if b.soft_ratio is not None:
                soft.add_metric(labels, b.soft_ratio)
        yield budget
        yield soft

        team_info = metrics.TEAM_INFO.info()
        for t in config.teams:
            team_info.add_metric(
                [],
                {
                    metrics.TEAM: t.name,
                    metrics.COST_CENTER: t.cost_center,
                    metrics.OWNER: t.owner,
                    metrics.CRITICALITY: t.criticality,
                },
            )
        yield team_info
        yield from info_metrics(config)

        up = metrics.EXPORTER_UP.gauge()
        up.add_metric([SOURCE], 1.0)
        yield up

    def describe(self) -> Iterator[Metric]:
        yield metrics.BUDGET.gauge()
        yield metrics.BUDGET_SOFT_RATIO.gauge()
        yield metrics.TEAM_INFO.info()
        yield metrics.INFO.info()
        yield metrics.EXPORTER_UP.gauge()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aispend.exporters.serve import add_exporter_args

    add_exporter_args(parser, DEFAULT_PORT)


def run(args: argparse.Namespace) -> int:
    import sys

    from aispend.exporters.serve import build_registry, serve

    try:
        watcher = ConfigWatcher(resolve_config_path(args.config))
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 1
    registry = build_registry([BudgetsCollector(lambda: watcher.config), watcher])
    if not args.once:
        watcher.install_sighup()
        watcher.start_polling()
    return serve(registry, args.listen, args.once, SOURCE)
