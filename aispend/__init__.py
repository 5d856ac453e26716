"""aispend: AI spend observability with guardrails that act."""

__version__ = "0.1.0"
