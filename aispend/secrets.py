"""Secrets (tokens, provider keys) from a file or an environment variable.

A configured file wins over the variable. Values are stripped, checked to be UTF-8
text on one line (a token goes into an HTTP header, where a line break or control
character is refused on every request), and never appear in an error message.
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
        _one_line(value, what, file)
        return value
    value = os.environ.get(env, "").strip() if env else ""
    if not value:
        return None
    try:
        value.encode("utf-8")  # undecodable bytes arrive as surrogates
    except UnicodeEncodeError:
        raise SecretError(f"{what}: ${env} is not valid UTF-8") from None
    _one_line(value, what, f"${env}")
    return value


def _one_line(value: str, what: str, where: str) -> None:
    """A SecretError when `value` holds a line break or another control character
    (two keys pasted into one file, say); the message says which, not the value."""
    for char in value:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            kind = "more than one line" if char in "\r\n" else "a control character"
            raise SecretError(f"{what}: {where} holds {kind}: one token on one line")


def require_secret(file: str | None, env: str | None, what: str) -> str:
    """`find_secret`, and a SecretError when neither the file nor `$env` is set."""
    value = find_secret(file, env, what)
    if value is None:
        where = f"set the file in the config or ${env}" if env else "set the file in the config"
        raise SecretError(f"{what}: no token configured ({where})")
    return value
