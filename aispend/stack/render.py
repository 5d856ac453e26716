"""Render deploy/ configs and aispend.yaml for local processes in the run directory.

The files in deploy/ name docker-compose services (`http://gateway:9120`) and secret
files under /etc/aispend/secrets/. Locally, every `service:port` of a known component
becomes `127.0.0.1:<port>` (shifted by --port-base), secrets live in `<run>/secrets/`
(created 0600 with a random token when missing), and Prometheus keeps only the scrape
jobs of the components that run. A job whose target Compose mounts from deploy/targets/
(`file_sd_configs` on /etc/prometheus/targets-NAME.yml, for the optional exporters)
gets that file's targets inline.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from aispend.files import write_atomically
from aispend.stack.components import COMPONENTS, MissingCheckout, RunContext

SECRETS_DIR = "/etc/aispend/secrets/"
RULES_DIR = "/etc/prometheus/rules/"
TARGETS_PREFIX = "/etc/prometheus/targets-"
"""Where Compose mounts deploy/targets/NAME.yml into Prometheus (TARGETS_PREFIX + NAME.yml)."""
_ADDRESS_RE = re.compile(
    r"(?<![\w.-])(" + "|".join(re.escape(n) for n in COMPONENTS) + r"):(\d{2,5})\b"
)
"""A whole host name (not the end of `llm-gateway`, `my.prometheus`) and its port."""
_SECRET_RE = re.compile(re.escape(SECRETS_DIR) + r"([A-Za-z0-9_.-]*[A-Za-z0-9_-])")


def rewrite(text: str, ctx: RunContext) -> str:
    """docker-compose addresses -> loopback ports; secret paths -> the run dir.

    Only a component's own Compose address (`gateway:9120`) is its; `gateway:4000` is
    some other service of that name, left as written."""

    def address(match: re.Match[str]) -> str:
        name, port = match.group(1), int(match.group(2))
        return ctx.address(name) if port == COMPONENTS[name].port else match.group(0)

    text = _ADDRESS_RE.sub(address, text)
    return text.replace(SECRETS_DIR, str(ctx.run_dir / "secrets") + "/")


def ensure_secrets(text: str, ctx: RunContext) -> list[Path]:
    """Create each secret file `text` refers to that does not exist yet.

    Files ending in `_url` get the chat sink's URL (the demo's stand-in for chat and
    pager endpoints); every other file gets a random token.
    """
    created = []
    secret_dir = ctx.run_dir / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Comments name secret files in prose ("key in /etc/aispend/secrets/x."): not those.
    uncommented = "\n".join(
        line.split(" #", 1)[0] for line in text.splitlines() if not line.lstrip().startswith("#")
    )
    for name in sorted(set(_SECRET_RE.findall(uncommented))):
        path = secret_dir / name
        if path.exists():
            continue
        if name.endswith("_url"):
            value = f"{ctx.url('chat-sink')}/{name.removesuffix('_url')}"
        else:
            value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        created.append(path)
    return created


def _local_rule_files(prometheus: dict[str, Any], repo_root: Path) -> list[Path]:
    """The checkout's alert-rules/ files that deploy/prometheus.yml names."""
    return [
        repo_root / "alert-rules" / entry.removeprefix(RULES_DIR)
        for entry in prometheus.get("rule_files", [])
    ]


def check_checkout(repo_root: Path) -> None:
    """Raise MissingCheckout unless the files the stack renders from are all there: a
    guardrail stack without its rules or alert routes would look healthy and never act."""
    deploy = repo_root / "deploy"
    source = deploy / "prometheus.yml"
    if not source.is_file():
        raise MissingCheckout(
            f"{source} not found: the stack and the demo run from a checkout of"
            " the aispend repository (deploy/ and alert-rules/ are not part of the"
            " installed package); run them there, after `make setup` or"
            " `pip install -e .`"
        )
    if not (deploy / "alertmanager.yml").is_file():
        raise MissingCheckout(
            f"{deploy / 'alertmanager.yml'} not found: the stack does not start without its"
            " alert routes; restore deploy/ from git"
        )
    for local in _local_rule_files(yaml.safe_load(source.read_text(encoding="utf-8")), repo_root):
        if not local.is_file():
            raise MissingCheckout(
                f"{local} not found: the stack does not start without its rules; run"
                " `make generate` (or `aispend rules generate`), or restore alert-rules/"
                " from git"
            )


def render_prometheus(source: Path, ctx: RunContext, components: Iterable[str]) -> str:
    data: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    jobs = {COMPONENTS[c].job for c in components if COMPONENTS[c].job}
    data["scrape_configs"] = [
        _inline_targets(s, ctx.repo_root / "deploy" / "targets")
        for s in data.get("scrape_configs", [])
        if s["job_name"] in jobs
    ]
    data["rule_files"] = [str(local) for local in _local_rule_files(data, ctx.repo_root)]
    text = yaml.safe_dump(data, sort_keys=False)
    return rewrite(text, ctx)


def _inline_targets(job: dict[str, Any], targets_dir: Path) -> dict[str, Any]:
    """`file_sd_configs` on Compose-mounted target files -> `static_configs` from them."""
    files = [f for sd in job.get("file_sd_configs", []) for f in sd.get("files", [])]
    if not files or not all(f.startswith(TARGETS_PREFIX) for f in files):
        return job
    static: list[Any] = []
    for f in files:
        path = targets_dir / f.removeprefix(TARGETS_PREFIX)
        static += yaml.safe_load(path.read_text(encoding="utf-8")) or []
    out = {k: v for k, v in job.items() if k != "file_sd_configs"}
    out["static_configs"] = static
    return out


def render_all(config_source: Path, ctx: RunContext, components: Iterable[str]) -> None:
    """Write prometheus.yml, alertmanager.yml and aispend.yaml into the run dir."""
    components = list(components)
    deploy = ctx.repo_root / "deploy"

    prometheus = render_prometheus(deploy / "prometheus.yml", ctx, components)
    alertmanager = (deploy / "alertmanager.yml").read_text(encoding="utf-8")

    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    _write(ctx.run_dir / "prometheus.yml", prometheus)
    ensure_secrets(alertmanager, ctx)
    _write(ctx.run_dir / "alertmanager.yml", rewrite(alertmanager, ctx))

    render_config(config_source, ctx)


def render_config(config_source: Path, ctx: RunContext) -> None:
    """aispend.yaml with local addresses and secret paths, atomically replaced."""
    raw = _compose_defaults(config_source.read_text(encoding="utf-8"))
    ensure_secrets(raw, ctx)
    _write(ctx.config_path, rewrite(raw, ctx))


def _compose_defaults(raw: str) -> str:
    """`raw` with the defaults that name a Compose address written out, so that
    `rewrite` makes them local: a gateway target without `urls` calls
    http://gateway:9120, which no local process answers."""
    from aispend.actuators.settings import GatewayTargetSettings

    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # the processes that read it say what is wrong
    actions = data.get("actions") if isinstance(data, dict) else None
    targets = actions.get("targets") if isinstance(actions, dict) else None
    if not isinstance(targets, dict):
        return raw
    missing = [
        t
        for t in targets.values()
        if isinstance(t, dict) and t.get("type") == "gateway" and "urls" not in t
    ]
    if not missing:
        return raw
    for target in missing:
        target["urls"] = list(GatewayTargetSettings.model_fields["urls"].default)
    return yaml.safe_dump(data, sort_keys=False)


def _write(path: Path, text: str) -> None:
    write_atomically(path, text)
