"""Default loopback ports of every aispend process and the stack's servers.

`aispend stack up --port-base N` shifts them all by N - 9090, keeping the layout.
"""

from __future__ import annotations

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


def shifted(port: int, port_base: int) -> int:
    return port + (port_base - BASE)
