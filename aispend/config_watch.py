"""Keep a live Config: reload on SIGHUP or file change, keep the last good one.

A change of the reporting `currency` is refused (restart to apply it). A
`ConfigWatcher` is also a prometheus-client collector that exports
`aispend_config_last_reload_success` and its timestamp, so a bad edit shows up in
Prometheus instead of silently taking effect or crashing the process.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from prometheus_client.core import Metric

from aispend import metrics
from aispend.config import Config, ConfigError, load_config

log = logging.getLogger(__name__)


def notice_sighup_without_reload(process: str) -> None:
    """For a process that reads aispend.yaml at start only, unless SIGHUP already has a
    handler: SIGHUP logs that a restart applies an edit. Its default ends the process,
    and the README says the gateway and the budgets and GPU exporters reload on it, so
    it may be sent to every aispend process after an edit."""
    if signal.getsignal(signal.SIGHUP) != signal.SIG_DFL:
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.warning("%s reads its config at start only: restart it to apply an edit", process)

    signal.signal(signal.SIGHUP, handler)


class ConfigApplyError(Exception):
    """A valid config that the running process cannot apply (its message says why)."""


class ConfigWatcher:
    """Holds the current Config loaded from `path`; `reload()` swaps it when valid."""

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        on_reload: Callable[[Config], None] | None = None,
    ):
        self.path = Path(path)
        self._clock = clock
        self.on_reload = on_reload
        self._lock = threading.Lock()
        # One reload at a time (SIGHUP's thread and the file watcher's): else an older
        # edit loaded first could be applied last and stay, the file seen as unchanged.
        self._reloading = threading.Lock()
        self._config = load_config(self.path)  # the first load must succeed
        self._last_success = True
        self._last_success_time = clock()
        self._stamp = self._file_stamp()
        self._stop = threading.Event()

    @property
    def config(self) -> Config:
        with self._lock:
            return self._config

    @property
    def last_reload_ok(self) -> bool:
        return self._last_success

    def reload(self) -> bool:
        """Load the file again; on error keep the previous config and return False.

        `on_reload(config)` runs before the new config is taken: when it raises
        ConfigApplyError (a secret it names cannot be read, say) the reload fails too."""
        with self._reloading:
            return self._reload()

    def _reload(self) -> bool:
        self._stamp = self._file_stamp()
        try:
            config = load_config(self.path)
            self._check_currency(config)
            if self.on_reload:
                self.on_reload(config)
        except (ConfigError, ConfigApplyError) as exc:
            self._last_success = False
            report = exc.report() if isinstance(exc, ConfigError) else str(exc)
            log.error("config reload failed, keeping the previous config:\n%s", report)
            return False
        except Exception as exc:  # a bug must not end the watcher thread unseen
            self._last_success = False
            log.error(
                "config reload failed, keeping the previous config: unexpected %s: %s",
                type(exc).__name__,
                str(exc)[:300],
            )
            return False
        with self._lock:
            self._config = config
        self._last_success = True
        self._last_success_time = self._clock()
        log.info("config reloaded from %s", self.path)
        return True

    def _check_currency(self, config: Config) -> None:
        """The money counters already served are in the running currency: a new one
        would be added to them (the gateway priced in it while aispend_info said the
        old one). Changing it takes a restart of each aispend process."""
        old = self.config.currency
        if config.currency != old:
            raise ConfigApplyError(
                f"{self.path}: currency changed from {old} to {config.currency}, which a"
                " running process cannot apply (its cost counters are in "
                f"{old}): restart it to use {config.currency}"
            )

    def check_for_change(self) -> bool:
        """Reload if the file's mtime, size or inode changed; True if it did."""
        with self._reloading:
            if self._file_stamp() == self._stamp:
                return False
            self._reload()
            return True

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def install_sighup(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=self.reload, name="config-reload", daemon=True).start()

        signal.signal(signal.SIGHUP, handler)

    def start_polling(self, interval: float = 1.0) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(interval):
                self.check_for_change()

        thread = threading.Thread(target=loop, name="config-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def collect(self) -> Iterator[Metric]:
        ok = metrics.CONFIG_RELOAD_SUCCESS.gauge()
        ok.add_metric([], 1.0 if self._last_success else 0.0)
        yield ok
        ts = metrics.CONFIG_RELOAD_TIMESTAMP.gauge()
        ts.add_metric([], self._last_success_time)
        yield ts

    def describe(self) -> Iterator[Metric]:
        yield metrics.CONFIG_RELOAD_SUCCESS.gauge()
        yield metrics.CONFIG_RELOAD_TIMESTAMP.gauge()
