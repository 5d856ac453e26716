"""Render deploy/ configs and aispend.yaml for local processes in the run directory.

The files in deploy/ name docker-compose services (`http://gateway:9120`) and secret
files under /etc/aispend/secrets/. Locally, every `service:port` of a known component
becomes `127.0.0.1:<port>` (shifted by --port-base), secrets live in `<run>/secrets/`
(created 0600 with a random token when missing), and Prometheus keeps only the scrape
jobs of the components that run. A job whose target Compose mounts from deploy/targets/
(`file_sd_configs` on /etc/prometheus/targets-NAME.yml, for the optional exporters)
gets that file's targets inline.

Alertmanager's receivers are checked before anything is written: the pager and chat
receivers point at the demo's chat-sink until a user points them at a real PagerDuty or
chat, so a stack without the sink refuses to start rather than page nobody, and their
keys are invented only when the sink runs. The actuator receiver's bearer token is read
from the file the actuator itself checks (`actions.token_file`, or a 0600 copy of
`$AISPEND_ACTUATOR_TOKEN` in `<run>/secrets/`).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from aispend.files import write_atomically
from aispend.stack.components import (
    COMPONENTS,
    MissingCheckout,
    ReceiversUnconfigured,
    RunContext,
    RunDirUnusable,
)

SECRETS_DIR = "/etc/aispend/secrets/"
RULES_DIR = "/etc/prometheus/rules/"
TARGETS_PREFIX = "/etc/prometheus/targets-"
"""Where Compose mounts deploy/targets/NAME.yml into Prometheus (TARGETS_PREFIX + NAME.yml)."""
_ADDRESS_RE = re.compile(
    r"(?<![\w.-])(" + "|".join(re.escape(n) for n in COMPONENTS) + r"):(\d{2,5})\b"
)
"""A whole host name (not the end of `llm-gateway`, `my.prometheus`) and its port."""
_SECRET_RE = re.compile(re.escape(SECRETS_DIR) + r"([A-Za-z0-9_.-]*[A-Za-z0-9_-])")
DEMO_SINK = "chat-sink"
"""The demo's stand-in for PagerDuty and chat: it records notifications, pages nobody."""
ACTUATOR_TOKEN_FROM_ENV = "actuator_token.from-env"
"""The run dir's secrets file that holds a copy of the actuator token taken from the
environment, for Alertmanager (which reads bearer tokens from files only)."""


def rewrite(text: str, ctx: RunContext) -> str:
    """docker-compose addresses -> loopback ports; secret paths -> the run dir.

    Only a component's own Compose address (`gateway:9120`) is its; `gateway:4000` is
    some other service of that name, left as written."""

    def address(match: re.Match[str]) -> str:
        name, port = match.group(1), int(match.group(2))
        return ctx.address(name) if port == COMPONENTS[name].port else match.group(0)

    text = _ADDRESS_RE.sub(address, text)
    return text.replace(SECRETS_DIR, str(ctx.run_dir / "secrets") + "/")


def secret_names(text: str) -> list[str]:
    """The secret files `text` refers to outside comments (comments name secret files
    in prose: "key in /etc/aispend/secrets/x.")."""
    uncommented = "\n".join(
        line.split(" #", 1)[0] for line in text.splitlines() if not line.lstrip().startswith("#")
    )
    return sorted(set(_SECRET_RE.findall(uncommented)))


def ensure_secrets(text: str, ctx: RunContext) -> list[Path]:
    """Create each secret file `text` refers to that does not exist yet.

    Files ending in `_url` get the chat sink's URL (the demo's stand-in for chat and
    pager endpoints); every other file gets a random token.
    """
    created = []
    secret_dir = ctx.run_dir / "secrets"
    secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in secret_names(text):
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


def render_all(
    config_source: Path,
    ctx: RunContext,
    components: Iterable[str],
    env: Mapping[str, str] | None = None,
) -> None:
    """Write prometheus.yml, aispend.yaml and alertmanager.yml into the run dir.

    `env` is the children's environment (the actuator may take its token from it).
    Raises ReceiversUnconfigured before writing anything when alerts would page nobody,
    and RunDirUnusable when the run dir cannot be written."""
    components = list(components)
    deploy = ctx.repo_root / "deploy"
    source = deploy / "alertmanager.yml"

    prometheus = render_prometheus(deploy / "prometheus.yml", ctx, components)
    alertmanager = source.read_text(encoding="utf-8")
    integrations = list(_integrations(_load_alertmanager(alertmanager, source)))
    receivers = _receiver_secrets(integrations)
    demo = DEMO_SINK in components
    if not demo:
        _check_no_demo_sink(integrations, source)
    try:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        if not demo:
            _check_receiver_secrets(receivers, ctx, source)
        _write(ctx.run_dir / "prometheus.yml", prometheus)
        # aispend.yaml first: the actuator receiver's token follows the actuator's.
        render_config(config_source, ctx)
        token_file = actuator_token_file(ctx, os.environ if env is None else env)
        ensure_secrets(alertmanager, ctx)
        rendered = _with_actuator_token(rewrite(alertmanager, ctx), ctx, token_file)
        _write(ctx.run_dir / "alertmanager.yml", rendered)
    except OSError as exc:
        if ctx.run_dir.exists() and not ctx.run_dir.is_dir():
            problem = "it is a file, not a directory"
        else:
            where = f" {exc.filename}" if exc.filename else ""
            problem = f"cannot write{where}: {exc.strerror or exc}"
        raise RunDirUnusable(
            f"run directory {ctx.run_dir}: {problem}; choose another with --run-dir"
        ) from exc


def _integrations(data: object) -> Iterable[tuple[str, dict[str, Any]]]:
    """(receiver name, integration config) for every `*_configs` entry of every receiver."""
    receivers = data.get("receivers") if isinstance(data, dict) else None
    for receiver in receivers if isinstance(receivers, list) else []:
        if not isinstance(receiver, dict):
            continue
        for key, entries in receiver.items():
            if key.endswith("_configs") and isinstance(entries, list):
                for entry in entries:
                    if isinstance(entry, dict):
                        yield str(receiver.get("name")), entry


def _load_alertmanager(text: str, source: Path) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ReceiversUnconfigured(f"{source} is not valid YAML: {exc}") from None


def _is_actuator(entry: dict[str, Any]) -> bool:
    address = _ADDRESS_RE.search(str(entry.get("url", "")))
    return address is not None and address.group(1) == "actuator"


def _check_no_demo_sink(integrations: Iterable[tuple[str, dict[str, Any]]], source: Path) -> None:
    """ReceiversUnconfigured when a receiver sends to the demo's chat-sink (not running)."""
    sink = f"{DEMO_SINK}:{COMPONENTS[DEMO_SINK].port}"
    to_sink = sorted({name for name, entry in integrations if sink in str(entry)})
    if to_sink:
        raise ReceiversUnconfigured(
            f"{source}: receivers {', '.join(to_sink)} send to the demo's chat-sink"
            f" (http://{sink}), which this stack does not run: alerts would page nobody."
            " Point them at your PagerDuty and chat (the file's header says how) and put"
            " their keys in the run dir's secrets/, or try the stack with the sink:"
            f" --components +{DEMO_SINK}"
        )


def _receiver_secrets(
    integrations: Iterable[tuple[str, dict[str, Any]]],
) -> dict[str, list[str]]:
    """Secret file name -> the receivers that send with it, the actuator's excepted (its
    token is shared with a process of the stack, so the stack may create it)."""
    used: dict[str, list[str]] = {}
    for name, entry in integrations:
        if not _is_actuator(entry):
            for secret in secret_names(yaml.safe_dump(entry)):
                used.setdefault(secret, []).append(name)
    return used


def _check_receiver_secrets(
    receivers: Mapping[str, list[str]], ctx: RunContext, source: Path
) -> None:
    """ReceiversUnconfigured for a real receiver's missing key: a random one pages nobody."""
    secret_dir = ctx.run_dir / "secrets"
    missing = [f"{secret_dir / n} (receivers {', '.join(sorted(set(r)))})"
               for n, r in sorted(receivers.items()) if not (secret_dir / n).exists()]  # fmt: skip
    if missing:
        raise ReceiversUnconfigured(
            f"{source}: receiver keys missing: {'; '.join(missing)}. Put each key (a"
            " PagerDuty routing key, a chat token or webhook URL) in its file, one line,"
            f" mode 0600; the stack invents them only for the demo's {DEMO_SINK}"
        )


def actuator_token_file(ctx: RunContext, env: Mapping[str, str]) -> Path:
    """The file Alertmanager sends the actuator's bearer token from: the actuator's own
    `actions.token_file` (relative to the repo root, the actuator's working directory),
    else a 0600 copy of `$token_env` in the run dir's secrets, else the run dir's
    actuator_token (created at random; an actuator with no token refuses to start)."""
    from aispend.actuators.settings import ActionsSettings

    secret_dir = ctx.run_dir / "secrets"
    try:
        data = yaml.safe_load(ctx.config_path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        data = None  # the actuator says what is wrong, and does not start
    actions = data.get("actions") if isinstance(data, dict) else None
    actions = actions if isinstance(actions, dict) else {}
    token_file = actions.get("token_file")
    if token_file:
        return ctx.repo_root / Path(str(token_file))  # an absolute path stays as it is
    token_env = str(actions.get("token_env") or ActionsSettings.model_fields["token_env"].default)
    token = env.get(token_env, "").strip()
    copy = secret_dir / ACTUATOR_TOKEN_FROM_ENV
    if not token:
        copy.unlink(missing_ok=True)  # a token from an earlier run's environment
        return secret_dir / "actuator_token"
    secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token)
    return copy


def _with_actuator_token(text: str, ctx: RunContext, token_file: Path) -> str:
    """Rendered alertmanager.yml with each webhook to the local actuator sending the
    token from `token_file`."""
    data = yaml.safe_load(text)
    actuator = ctx.url("actuator")
    for _, entry in _integrations(data):
        if str(entry.get("url", "")).startswith(actuator + "/"):
            http = entry.setdefault("http_config", {})
            http["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    return yaml.safe_dump(data, sort_keys=False)


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
