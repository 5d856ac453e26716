"""Secrets from a file or an environment variable (aispend/secrets.py), as the gateway
and the actuator read them, and the CLIs' one-line errors for unreadable ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aispend.secrets import SecretError, find_secret, require_secret
from tests.conftest import EXAMPLE_CONFIG

WHAT = "sources.gateway.admin_token_file"


def test_file_wins_and_values_are_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text(" from-file \n", encoding="utf-8")
    monkeypatch.setenv("X_TOKEN", " from-env ")
    assert find_secret(str(tmp_path / "token"), "X_TOKEN", WHAT) == "from-file"
    assert find_secret(None, "X_TOKEN", WHAT) == "from-env"
    monkeypatch.setenv("X_TOKEN", "   ")
    assert find_secret(None, "X_TOKEN", WHAT) is None
    with pytest.raises(
        SecretError, match=r"no token configured \(set the file in the config or \$X_TOKEN\)"
    ):
        require_secret(None, "X_TOKEN", WHAT)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"tok\xff\xfeen", "is not UTF-8 text"),
        # Two keys pasted in one file: every proxied request was answered 400 "header
        # 'Authorization' holds a line break", and actuator targets 500 or 503.
        (b"sk-old\nsk-new\n", "holds more than one line: one token on one line"),
        (b"sk-\x07bell", "holds a control character: one token on one line"),
    ],
)
def test_bad_file_is_a_secret_error_without_the_value(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(SecretError) as err:
        find_secret(str(path), None, WHAT)
    assert str(err.value) == f"{WHAT}: {path} {message}"
    with pytest.raises(SecretError, match="cannot read"):
        find_secret(str(tmp_path / "missing"), None, WHAT)


def test_gateway_and_actuator_refuse_a_token_that_is_not_utf8(tmp_path: Path) -> None:
    # Undecodable bytes in the environment arrive in Python as surrogates; encoding them
    # used to raise UnicodeEncodeError at start (a traceback).
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    del data["sources"]["gateway"]["admin_token_file"], data["actions"]["token_file"]
    config = tmp_path / "aispend.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {k: v for k, v in os.environb.items() if not k.startswith(b"AISPEND_")}
    env[b"AISPEND_GATEWAY_ADMIN_TOKEN"] = b"tok\xffen"
    env[b"AISPEND_ACTUATOR_TOKEN"] = b"tok\xffen"
    for argv, what in (
        (["gateway"], "$AISPEND_GATEWAY_ADMIN_TOKEN is not valid UTF-8"),
        (["actuator"], "$AISPEND_ACTUATOR_TOKEN is not valid UTF-8"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "aispend", *argv, "--config", str(config)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert what in done.stderr and "Traceback" not in done.stderr
        assert "tok" not in done.stderr.replace("token", "")


def test_a_variable_with_two_lines_is_a_secret_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_TOKEN", "sk-old\nsk-new")
    with pytest.raises(SecretError) as err:
        find_secret(None, "X_TOKEN", WHAT)
    assert str(err.value) == f"{WHAT}: $X_TOKEN holds more than one line: one token on one line"


def test_the_gateway_refuses_to_start_with_a_two_line_provider_key(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    openai = data["sources"]["gateway"]["upstreams"]["openai"]
    openai.pop("api_key_env", None)
    openai["api_key_file"] = str(tmp_path / "openai-key")
    (tmp_path / "openai-key").write_text("sk-old-secret\nsk-new-secret\n", encoding="utf-8")
    (tmp_path / "admin").write_text("admin-token", encoding="utf-8")
    data["sources"]["gateway"]["admin_token_file"] = str(tmp_path / "admin")
    config = tmp_path / "aispend.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = _start(["gateway"], config)
    assert done.returncode != 0
    assert "holds more than one line" in done.stderr and "Traceback" not in done.stderr
    assert "secret" not in done.stderr.replace("openai-key", "")


def test_the_actuator_refuses_to_start_with_a_two_line_webhook_token(tmp_path: Path) -> None:
    """Every alert was answered 500 "cannot record the decision" (aiohttp's ValueError
    for a line break in a header), and its row stayed `applying`."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    (tmp_path / "actuator").write_text("actuator-token", encoding="utf-8")
    (tmp_path / "hook").write_text("hook-old-secret\nhook-new-secret\n", encoding="utf-8")
    data["actions"]["token_file"] = str(tmp_path / "actuator")
    data["actions"]["state_db"] = str(tmp_path / "state.sqlite3")
    data["actions"]["targets"]["hook"] = {
        "type": "webhook",
        "url": "http://127.0.0.1:9/hook",
        "token_file": str(tmp_path / "hook"),
    }
    config = tmp_path / "aispend.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = _start(["actuator"], config)
    assert done.returncode != 0
    assert "target hook: token" in done.stderr and "holds more than one line" in done.stderr
    assert "Traceback" not in done.stderr and "hook-old-secret" not in done.stderr


def _start(argv: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    """`aispend ARGV --config CONFIG`, run from the config's directory; it must exit."""
    return subprocess.run(
        [sys.executable, "-m", "aispend", *argv, "--config", str(config)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
