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
    [(b"", "is empty"), (b"tok\xff\xfeen", "is not UTF-8 text")],
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
