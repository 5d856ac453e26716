"""`aispend exporter NAME`: runs one exporter.

EXPORTERS maps a name to the module that implements it. Each such module has
`add_arguments(parser)` (at least `add_exporter_args` for --listen/--once) and
`run(args) -> int`.
"""

from __future__ import annotations

import importlib
from typing import Any

from aispend.config_cli import add_config_argument

EXPORTERS = {
    "budgets": ("aispend.exporters.budgets", "budgets and team metadata from aispend.yaml"),
    "gpu": ("aispend.exporters.gpu", "NVIDIA GPU metrics and GPU cost through NVML"),
    "tokens": ("aispend.exporters.tokens", "Azure token usage: APIM logs, Azure OpenAI metrics"),
    "billing": ("aispend.exporters.billing", "cloud bill: Azure Cost Management and FOCUS files"),
}


def add_parser(sub: Any) -> None:
    exporter = sub.add_parser("exporter", help="run a Prometheus exporter")
    names = exporter.add_subparsers(dest="exporter", metavar="NAME", required=True)
    for name, (module_name, help_text) in EXPORTERS.items():
        parser = names.add_parser(name, help=help_text)
        add_config_argument(parser)
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)
