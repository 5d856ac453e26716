"""Secrets (tokens, provider keys) from a file or an environment variable.

A configured file wins over the variable. Values are stripped, checked to be UTF-8
text, and never appear in an error message.
"""

from __future__ import annotations

import os
from pathlib import Path


class SecretError(Exception):
    """A configured secret cannot be read; the message never contains the secret."""


def find_secret(file: str | None, env: str | None, what: str) -> str | None:
    """The secret from `file` when one is configured, else from `$env`; None when
    neither holds one. An unreadable, empty or non-UTF-8 file, or a variable that is
    not UTF-8, is a SecretError."""
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{what}: cannot read {file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise SecretError(f"{what}: {file} is not UTF-8 text") from None
        if not value:
            raise SecretError(f"{what}: {file} is empty")
        return value
    value = os.environ.get(env, "").strip() if env else ""
    if not value:
        return None
    try:
        value.encode("utf-8")  # undecodable bytes arrive as surrogates
    except UnicodeEncodeError:
        raise SecretError(f"{what}: ${env} is not valid UTF-8") from None
    return value


def require_secret(file: str | None, env: str | None, what: str) -> str:
    """`find_secret`, and a SecretError when neither the file nor `$env` is set."""
    value = find_secret(file, env, what)
    if value is None:
        where = f"set the file in the config or ${env}" if env else "set the file in the config"
        raise SecretError(f"{what}: no token configured ({where})")
    return value
