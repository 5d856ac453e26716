"""A thin wrapper over pynvml: each failed call becomes a counted skip, not a failed scrape.

`Nvml.call("nvmlDeviceGetPowerUsage", handle)` returns the value, or None after adding
one to `errors["nvmlDeviceGetPowerUsage"]` when NVML answers an error (GPU lost, not
supported, ...). Codes a caller expects as a normal answer (MIG slots that are empty,
MIG mode on a GPU without MIG) are passed in `expected` and not counted.
`Nvml.text(...)` is the same for a call that answers a string the driver does not
guarantee to be UTF-8 (a process name): bytes that do not decode are replaced (U+FFFD).
A string that pynvml fails to decode in `call` is counted like an NVML error.

`Nvml.start()` loads and initialises the library; it raises `NvmlUnavailable` with a
sentence a user can act on when there is no library, no driver or no permission.
`Nvml.device_count()` raises it too when NVML, once started, cannot even count the
GPUs (the driver was unloaded, reloaded or upgraded under the exporter).
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Collection
from typing import Any

import pynvml


class NvmlUnavailable(Exception):
    """NVML cannot be used at all on this machine (the message says why)."""


_INIT_HINTS = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: (
        "libnvidia-ml.so.1 not found: install the NVIDIA driver, or run the exporter "
        "where it is visible (e.g. the NVIDIA container toolkit)"
    ),
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded",
    pynvml.NVML_ERROR_NO_PERMISSION: "no permission to open the NVIDIA devices",
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: (
        "NVML library and kernel driver versions differ (reboot or reload the driver)"
    ),
}


class Nvml:
    """NVML calls by name; `errors` counts failures per call since start."""

    def __init__(self) -> None:
        self.errors: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._started = False

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> None:
        if self._started:
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(_reason("nvmlInit", exc)) from exc
        except OSError as exc:  # a library that is there but cannot be loaded
            raise NvmlUnavailable(f"cannot load libnvidia-ml.so.1: {exc}") from exc
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._started = False
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()

    def device_count(self) -> int:
        """The number of GPUs; NvmlUnavailable (counted, saying why) when NVML cannot tell."""
        try:
            return int(pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError as exc:
            self._count("nvmlDeviceGetCount")
            raise NvmlUnavailable(f"{_reason('nvmlDeviceGetCount', exc)} (after start-up)") from exc

    def call(self, name: str, *args: Any, expected: Collection[int] = ()) -> Any:
        """pynvml.<name>(*args), or None when NVML answers an error (counted unless expected)."""
        return self._invoke(name, getattr(pynvml, name), args, expected)

    def text(self, name: str, *args: Any, expected: Collection[int] = ()) -> str | None:
        """pynvml.<name>(*args) as text, decoded with errors="replace", or None as `call`.

        pynvml's string calls decode strictly as UTF-8 and raise on other bytes; a
        process name is whatever the process set (e.g. Latin-1), so this calls the
        undecorated function where pynvml has one and decodes here."""
        fn = getattr(pynvml, name)
        value = self._invoke(name, getattr(fn, "__wrapped__", fn), args, expected)
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return None if value is None else str(value)

    def _invoke(self, name: str, fn: Any, args: tuple[Any, ...], expected: Collection[int]) -> Any:
        try:
            return fn(*args)
        except pynvml.NVMLError as exc:
            if getattr(exc, "value", None) not in expected:
                self._count(name)
            return None
        except pynvml.NVMLLibraryMismatchError:  # driver too old for this versioned call
            self._count(name)
            return None
        except UnicodeDecodeError:  # a string that is not UTF-8 (pynvml decodes strictly)
            self._count(name)
            return None

    def _count(self, name: str) -> None:
        with self._lock:
            self.errors[name] += 1

    def error_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.errors)


def _reason(call: str, exc: pynvml.NVMLError) -> str:
    code = getattr(exc, "value", None)
    hint = _INIT_HINTS.get(code) if isinstance(code, int) else None
    return hint or f"{call} failed: {_describe(exc)}"


def _describe(exc: pynvml.NVMLError) -> str:
    try:
        return str(exc)
    except Exception:  # pynvml's __str__ calls back into the library
        return f"NVML error {getattr(exc, 'value', '?')}"
