"""`promtool test rules` on every file under alert-rules/tests/ (real promtool)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO, require_binary

TEST_FILES = sorted((REPO / "alert-rules" / "tests").glob("*.test.yml"))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(path) -> None:  # type: ignore[no-untyped-def]
    promtool = require_binary("promtool")
    out = subprocess.run(
        [promtool, "test", "rules", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
