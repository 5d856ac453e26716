"""Billing exporter: the authoritative cloud bill as Prometheus gauges.

Sources: Azure Cost Management (`azure_cost.py`, through azure-mgmt-costmanagement
with `retry.py`'s throttling policy) and FOCUS exports (`focus.py`, DuckDB). Both
produce daily costs (`model.py`), served from a cache by `collector.py`. Config
sections are in `settings.py`; the command is in `command.py`.
"""

from aispend.exporters.billing.command import add_arguments, run

__all__ = ["add_arguments", "run"]
