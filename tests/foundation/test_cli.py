"""The `aispend` command line loads no client library before a sub-command runs.

Every CLI call (and every process the stack starts) builds the whole parser first. The
SDKs below take about a second to import; a module that imports one at its top
(instead of inside the code that uses it) makes `aispend --help`, `aispend config
check` and every stack process start that much slower. Checked in a fresh interpreter,
by module name, not by time.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

CLIENT_LIBRARIES = (
    "aiohttp",
    "azure",
    "grafanalib",
    "httpx",
    "openai",
    "pynvml",
    "requests",
)

PROBE = """
import json, sys
from aispend.cli import build_parser
build_parser()
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in %r)))
"""


def test_building_the_parser_imports_no_client_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (CLIENT_LIBRARIES,)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = json.loads(done.stdout)
    assert loaded == [], f"imported while building the parser: {loaded}"
