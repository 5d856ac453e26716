"""Files written whole or not at all: a full disk or a crash mid-write leaves the old
file (or none), never a cut one that a later reader trusts (Prometheus loads a rule file
cut after its 15th alert as valid, Grafana skips a cut dashboard)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (its folder must exist)."""
    write_all_or_none({path: text})


def write_all_or_none(files: Mapping[Path, str]) -> None:
    """Write every file to a temporary file beside it (fsynced) before replacing any:
    an error while writing (OSError naming the file) leaves all of them as they were."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            staged.append((_staged_copy(path, text), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    for directory in {path.parent for path in files}:
        _fsync_directory(directory)


def _staged_copy(path: Path, text: str) -> str:
    """A temporary file beside `path` holding `text`, with `path`'s mode and group (a new
    file gets the umask's, as open() gives: mkstemp's 0600 would hide a rule file from a
    Prometheus that runs as another user)."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        old: os.stat_result | None = path.stat()
    except FileNotFoundError:
        old = None
    while True:
        tmp = str(directory / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if old is not None:
                _take_owner(f.fileno(), old, path)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        os.unlink(tmp)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _take_owner(fd: int, old: os.stat_result, path: Path) -> None:
    """Give the new file the old one's mode and group (and owner, as root): a reader
    that reads it through its group must go on reading it."""
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    uid = old.st_uid if os.geteuid() == 0 else -1
    if (uid, old.st_gid) != (-1, os.getegid()):
        try:
            os.fchown(fd, uid, old.st_gid)
        except PermissionError as exc:
            raise PermissionError(
                exc.errno, f"cannot give the new file the old one's group {old.st_gid}", str(path)
            ) from exc


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory if str(directory) else ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
