"""Load each dashboards/*.dashboard.py and write it as stable, sorted JSON.

A dashboard file defines `build(ctx: Context) -> grafanalib Dashboard`. The output is
`dashboards/<stem>.json` (stem = file name without `.dashboard.py`), keys sorted,
2-space indent, trailing newline, so regenerating an unchanged dashboard is a no-op
and `git diff` shows exactly what a change did.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from aispend.dashboards.defaults import UIDS, Context
from aispend.files import write_all_or_none

SUFFIX = ".dashboard.py"


class DashboardError(RuntimeError):
    """A dashboard source is missing `build`, fails, or does not match UIDS."""


@dataclass(frozen=True)
class Generated:
    stem: str
    source: Path
    data: dict[str, Any]

    @property
    def text(self) -> str:
        return to_json(self.data)


def sources(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


def stem_of(path: Path) -> str:
    return path.name[: -len(SUFFIX)]


def load(path: Path, ctx: Context) -> Generated:
    stem = stem_of(path)
    spec = importlib.util.spec_from_file_location(
        f"aispend_dashboard_{stem.replace('-', '_')}", path
    )
    if spec is None or spec.loader is None:
        raise DashboardError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    build = getattr(module, "build", None)
    if not callable(build):
        raise DashboardError(f"{path}: defines no build(ctx) function")
    dashboard = build(ctx)
    if not isinstance(dashboard, g.Dashboard):
        raise DashboardError(f"{path}: build() returned {type(dashboard).__name__}, not Dashboard")
    if UIDS.get(stem) != dashboard.uid:
        raise DashboardError(f"{path}: uid {dashboard.uid!r} is not UIDS[{stem!r}]")
    data = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    return Generated(stem, path, data)


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def build_all(directory: Path, ctx: Context | None = None) -> list[Generated]:
    ctx = ctx or Context()
    return [load(path, ctx) for path in sources(directory)]


def write_all(
    directory: Path, built: list[Generated], also: Mapping[Path, str] | None = None
) -> list[Path]:
    """Write every dashboard's JSON next to its source, and the files `also` holds, all or
    none; then remove JSON without a source."""
    written = []
    changed = dict(also or {})
    for item in built:
        out = directory / f"{item.stem}.json"
        if not out.exists() or out.read_text(encoding="utf-8") != item.text:
            changed[out] = item.text
        written.append(out)
    write_all_or_none(changed)  # Grafana re-reads them: never a cut one
    keep = {p.name for p in written}
    for stale in directory.glob("*.json"):
        if stale.name not in keep:
            stale.unlink()
    return written
