"""The local stack: Prometheus, Alertmanager and aispend processes without Docker."""
