"""Exporters: one module per source, each a prometheus-client custom Collector."""
