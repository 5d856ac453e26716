"""Every library the `aispend` package imports is one of its runtime dependencies.

The Docker image installs the package without extras (`pip install .`), and so does a
user who runs `pip install aispend`. A module imported by `aispend/` but declared only
in the `dev` extra works in the venv of `make test` and fails in the image: this test
reads the imports from the source (ast, no import of aispend itself) and the
dependencies from pyproject.toml, and maps each import to the distribution that
installed its files in this venv.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {
        _normal(re.split(r"[\s;<>=!~\[]", spec, maxsplit=1)[0]) for spec in project["dependencies"]
    }


def imported_modules() -> dict[str, str]:
    """Third-party module (dotted, as written) -> one file of aispend/ that imports it."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "aispend").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "aispend" and top not in sys.stdlib_module_names:
                    found.setdefault(name, str(path.relative_to(REPO)))
    return found


@functools.cache
def _top_level_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


@functools.cache
def distribution_of(module: str) -> str:
    """The distribution whose installed files hold `module` (namespace packages such as
    `azure` are shared by several distributions, so the top-level name is not enough)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not installed in this venv"
    origin = Path(spec.origin).resolve()
    top = module.split(".")[0]
    for name in _top_level_distributions().get(top, []):
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            if Path(str(dist.locate_file(file))).resolve() == origin:
                return _normal(dist.metadata["Name"])
    raise AssertionError(f"no installed distribution holds {origin} ({module})")


def test_runtime_imports_are_runtime_dependencies() -> None:
    declared = runtime_dependencies()
    missing = {
        f"{module} ({distribution_of(module)}, imported by {where})"
        for module, where in imported_modules().items()
        if distribution_of(module) not in declared
    }
    assert not missing, f"imported by aispend/ but not in [project].dependencies: {sorted(missing)}"


def test_the_import_scan_sees_the_known_dependencies() -> None:
    # The scan must find what it is meant to check, or the test above checks nothing.
    modules = imported_modules()
    distributions = {distribution_of(module) for module in modules}
    assert {"prometheus-client", "pydantic", "azure-mgmt-costmanagement", "nvidia-ml-py"} <= (
        distributions
    )
    assert "openai" in {m.split(".")[0] for m in modules}  # imported inside a function
