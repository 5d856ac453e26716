"""`aispend exporter gpu`: serve the GPU collector (or print one scrape with --once).

Works with no config file at all: when neither --config nor $AISPEND_CONFIG is given
and ./aispend.yaml does not exist, it runs on defaults (no attribution, the example
GPU prices of aispend.gpu_prices, idle threshold 5 %).
"""

from __future__ import annotations

import argparse
import logging
import os

from aispend import ports

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from aispend.exporters.serve import add_exporter_args

    add_exporter_args(parser, ports.GPU_EXPORTER)


def run(args: argparse.Namespace) -> int:
    import sys
    from collections.abc import Callable

    from aispend.config import ENV_CONFIG, Config, ConfigError, resolve_config_path
    from aispend.config_watch import ConfigWatcher
    from aispend.exporters.gpu.collector import SOURCE, GpuCollector, GpuConfig
    from aispend.exporters.gpu.settings import GpuSettings
    from aispend.exporters.serve import build_registry, serve

    path = resolve_config_path(args.config)
    explicit = bool(args.config or os.environ.get(ENV_CONFIG))
    watcher: ConfigWatcher | None = None
    get_config: Callable[[], GpuConfig]
    if not explicit and not path.exists():
        log.info("no %s: running with defaults (no attribution, example GPU prices)", path)
        defaults = GpuConfig()
        get_config = lambda: defaults  # noqa: E731
    else:
        try:
            watcher = ConfigWatcher(path)
        except ConfigError as exc:
            print(exc.report(), file=sys.stderr)
            return 1
        live = watcher

        def get_config() -> GpuConfig:
            config: Config = live.config
            settings = config.sources.gpu or GpuSettings()
            return GpuConfig(settings, config.prices, config.currency)

    collector = GpuCollector(get_config)
    registry = build_registry([collector, *([watcher] if watcher else [])])
    if watcher is not None and not args.once:
        watcher.install_sighup()
        watcher.start_polling()
    try:
        return serve(registry, args.listen, args.once, SOURCE)
    finally:
        collector.close()
