"""aispend.files: files replaced whole, with the permissions a reader needs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aispend.files import write_all_or_none, write_atomically


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_umasks(tmp_path: Path) -> None:
    """A temporary file is 0600: replacing a rule file with it would hide the rules from
    a Prometheus running as another user (docker-compose mounts ./alert-rules)."""
    kept = tmp_path / "kept.yml"
    kept.write_text("old")
    kept.chmod(0o640)
    old_umask = os.umask(0o027)
    try:
        write_all_or_none({kept: "new", tmp_path / "fresh.yml": "fresh"})
    finally:
        os.umask(old_umask)
    assert kept.read_text() == "new" and _mode(kept) == 0o640
    assert (tmp_path / "fresh.yml").read_text() == "fresh"
    assert _mode(tmp_path / "fresh.yml") == 0o640  # 0666 & ~027
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.yml", "kept.yml"]


def test_an_error_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    """The second file's folder is missing: the first is not replaced either, no
    temporary file is left, and the error names the file."""
    first = tmp_path / "first.yml"
    first.write_text("old")
    missing = tmp_path / "missing" / "second.yml"
    with pytest.raises(OSError) as raised:
        write_all_or_none({first: "new", missing: "new"})
    assert raised.value.filename == str(missing)
    assert first.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["first.yml"]
    write_atomically(first, "newer")
    assert first.read_text() == "newer"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's group needs root")
def test_a_replaced_file_keeps_its_owner_and_group(tmp_path: Path) -> None:
    """A rule file a Prometheus reads through its group (alice:prometheus 0640) became
    alice:alice once replaced, and Prometheus could no longer read it."""
    kept = tmp_path / "kept.yml"
    kept.write_text("old")
    os.chown(kept, 1001, 2000)
    kept.chmod(0o640)
    write_atomically(kept, "new")
    st = kept.stat()
    assert (st.st_uid, st.st_gid, _mode(kept), kept.read_text()) == (1001, 2000, 0o640, "new")
