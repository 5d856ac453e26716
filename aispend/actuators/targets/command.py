"""Command target: run a configured command with the alert's labels in its environment.

Each label becomes `AISPEND_<LABEL>` (upper-cased), plus AISPEND_MODE, AISPEND_RULE,
AISPEND_FINGERPRINT, AISPEND_STARTS_AT and AISPEND_ACTION (apply|undo); a label with one
of those names (`action`, the alerts' throttle/pause/notify) comes as
`AISPEND_LABEL_<LABEL>` instead of being overwritten. The rest of the
environment is the actuator's, less every inherited `AISPEND_*` variable and the
variables that hold aispend's tokens (the command's output lands in the audit log, with
the values of other variables named like secrets blanked: `redact_secrets`). Two
labels that upper-case to one name are refused. No shell: argv is run as given. A
non-zero exit is an error that retrying would not fix; a timeout kills the command and
is retryable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from typing import Any

from aispend.actuators.settings import CommandTargetSettings
from aispend.actuators.targets.base import Action, TargetError

RESERVED = frozenset({"MODE", "RULE", "FINGERPRINT", "STARTS_AT", "ACTION"})
"""What the actuator itself sets as AISPEND_<NAME>: a label of that name moves aside."""


def command_env(action: Action, which: str, hidden: frozenset[str] = frozenset()) -> dict[str, str]:
    """The command's environment; TargetError when two labels would share one variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AISPEND_") and k not in hidden}
    from_label: dict[str, str] = {}
    for key, value in action.labels.items():
        upper = key.upper()
        name = f"AISPEND_LABEL_{upper}" if upper in RESERVED else f"AISPEND_{upper}"
        if name in from_label:
            raise TargetError(
                f"labels {from_label[name]!r} and {key!r} would both set {name}", False
            )
        from_label[name] = key
        env[name] = value
    env.update(
        {
            "AISPEND_MODE": action.mode,
            "AISPEND_RULE": action.rule,
            "AISPEND_FINGERPRINT": action.fingerprint,
            "AISPEND_STARTS_AT": action.starts_at,
            "AISPEND_ACTION": which,
        }
    )
    return env


_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|ACCESS_KEY")
_MIN_SECRET_LEN = 8  # shorter values ("true", a port) would blank out ordinary words


def redact_secrets(text: str, environ: Mapping[str, str]) -> str:
    """`text` with the value of every variable whose name says it holds a secret
    (AZURE_CLIENT_SECRET, AWS_SESSION_TOKEN...) replaced by `[NAME]`: the command runs
    with them (its cloud CLI may need them), and its output lands in the audit log."""
    for name, value in environ.items():
        if len(value) >= _MIN_SECRET_LEN and _SECRET_NAME.search(name.upper()):
            text = text.replace(value, f"[{name}]")
    return text


class CommandTarget:
    type = "command"

    def __init__(
        self, name: str, settings: CommandTargetSettings, hidden_env: frozenset[str] = frozenset()
    ):
        self.name = name
        self.settings = settings
        self._hidden_env = hidden_env

    async def prepare(self, action: Action) -> dict[str, Any]:
        return {}

    async def apply(self, action: Action, undo_data: dict[str, Any]) -> str:
        return await self._run(self.settings.apply, action, "apply")

    async def undo(self, action: Action, undo_data: dict[str, Any]) -> str:
        if not self.settings.undo:
            return "no undo command configured"
        return await self._run(self.settings.undo, action, "undo")

    async def _run(self, argv: list[str], action: Action, which: str) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=command_env(action, which, self._hidden_env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise TargetError(f"cannot run {argv[0]}: {exc.strerror or exc}", False) from exc
        except ValueError as exc:  # a NUL byte in a label value: no environment can hold it
            raise TargetError(f"cannot run {argv[0]}: alert labels: {exc}", False) from exc
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.settings.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            raise TargetError(
                f"{argv[0]} timed out after {self.settings.timeout:g}s and was killed", True
            ) from None
        text = redact_secrets(out.decode("utf-8", "replace"), os.environ).strip()[-300:]
        if proc.returncode != 0:
            raise TargetError(f"{argv[0]} exited with status {proc.returncode}: {text}", False)
        return f"{argv[0]} exited 0" + (f": {text}" if text else "")
