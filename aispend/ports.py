"""Default loopback ports of every aispend process and the stack's servers.

`aispend stack up --port-base N` shifts them all by N - 9090, keeping the layout.
"""

from __future__ import annotations

import argparse

BASE = 9090

PROMETHEUS = 9090
ALERTMANAGER = 9093
BUDGETS_EXPORTER = 9110
GPU_EXPORTER = 9111
TOKENS_EXPORTER = 9112
BILLING_EXPORTER = 9113
GATEWAY = 9120
ACTUATOR = 9180
DEMO_UPSTREAM = 9190
DEMO_CHAT_SINK = 9195


SPAN = max(
    PROMETHEUS, ALERTMANAGER, BUDGETS_EXPORTER, GPU_EXPORTER, TOKENS_EXPORTER,
    BILLING_EXPORTER, GATEWAY, ACTUATOR, DEMO_UPSTREAM, DEMO_CHAT_SINK,
) - BASE  # fmt: skip
"""How far above --port-base the highest port lies."""


def shifted(port: int, port_base: int) -> int:
    return port + (port_base - BASE)


def port_base(text: str) -> int:
    """argparse type of --port-base: every port it shifts must stay within 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535 - SPAN:
        raise argparse.ArgumentTypeError(
            f"must be 1-{65535 - SPAN}: the stack also uses the {SPAN} ports above it"
        )
    return value
