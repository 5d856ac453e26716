"""`aispend demo SUBCOMMAND`: the demo's processes and scenarios.

SUBCOMMANDS maps a name to (module, help). Each module has `add_arguments(parser)`
and `run(args) -> int` and keeps heavy imports inside `run`, so adding a subcommand
is one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

SUBCOMMANDS = {
    "upstream": ("aispend.demo.upstream_cli", "simulated OpenAI / Azure / Anthropic upstream"),
    "history": ("aispend.demo.history", "write (and load) realistic spend history"),
    "chat-sink": ("aispend.demo.chat_sink", "record chat/pager notifications"),
    "traffic": ("aispend.demo.traffic", "drive the demo agents through a gateway"),
}


def add_parser(sub: Any) -> None:
    from aispend.demo import scenario

    demo = sub.add_parser(
        "demo",
        help="the runaway-agent demo (no subcommand), or one demo process",
        description=(scenario.__doc__ or "").split("\n\n")[0],
    )
    scenario.add_arguments(demo)
    demo.set_defaults(func=scenario.run)
    names = demo.add_subparsers(dest="demo_command", metavar="SUBCOMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        parser = names.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)
