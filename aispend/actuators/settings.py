"""The `actions:` section of aispend.yaml: global switches, rules and targets.

    actions:
      dry_run: true                 # global; a rule may override it (not --dry-run true)
      token_file: /etc/aispend/secrets/actuator_token   # or $AISPEND_ACTUATOR_TOKEN
      state_db: .run/actuator.sqlite3
      max_active_per_team: 5
      rules:                        # first match wins
        - name: throttle-runaway
          match: {action: throttle}
          target: gateway
          mode: throttle
          cooldown: 10m
      targets:
        gateway: {type: gateway, urls: ["http://gateway:9120"]}

Rules match alert labels exactly (`match`) or by fully anchored regex (`match_re`).
Targets name what acts; values like a Kubernetes name or an APIM subscription id are
templates over the alert's labels (`${team}-${agent}`).
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from aispend.actuators.duration import parse_duration
from aispend.configbase import Name, StrictModel

Mode = Literal["throttle", "pause", "notify"]
"""What a rule asks of its target: rate-limit, stop, or just tell someone."""

_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _duration(value: Any) -> float:
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_duration)]


def _label_names(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _LABEL_RE.fullmatch(key):
            raise ValueError(f"'{key}' is not a Prometheus label name")
    return value


def _regexes(value: dict[str, str]) -> dict[str, str]:
    _label_names(value)
    for key, pattern in value.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{key}: invalid regex: {exc}") from exc
    return value


def _template(value: str) -> str:
    try:
        string.Template(value).substitute({n: "x" for n in _template_names(value)})
    except (ValueError, KeyError) as exc:
        raise ValueError(f"invalid template (use ${{label}}): {exc}") from exc
    return value


def _template_names(value: str) -> list[str]:
    return [
        m.group("named") or m.group("braced")
        for m in string.Template.pattern.finditer(value)
        if m.group("named") or m.group("braced")
    ]


Template = Annotated[str, AfterValidator(_template)]
"""A string with `${label}` placeholders filled from the alert's labels."""


class GatewayTargetSettings(StrictModel):
    """Throttle rules through the aispend gateway admin API, on every replica."""

    type: Literal["gateway"]
    urls: list[str] = Field(default=["http://gateway:9120"], min_length=1)
    admin_token_file: str | None = None
    admin_token_env: str = "AISPEND_GATEWAY_ADMIN_TOKEN"
    requests_per_minute: int | None = Field(default=6, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    timeout: Duration = 5.0


KubernetesKind = Literal["Deployment", "StatefulSet", "CronJob", "Job"]


class KubernetesTargetSettings(StrictModel):
    """Scale a Deployment/StatefulSet to 0, or suspend a CronJob or Job, via the REST API."""

    type: Literal["kubernetes"]
    kind: KubernetesKind | list[KubernetesKind]
    """One kind; with `pod:`, a list of the kinds that may control the pod."""
    namespace: Template
    name: Template | None = None
    selector: Template | None = None
    """A label selector (e.g. `aispend.io/agent=${agent}`) instead of `name`."""
    pod: Template | None = None
    """A pod (e.g. `${pod}`, with `namespace: ${namespace}`) instead of `name`: the object
    paused is the workload of `kind` that controls it (a Deployment through its
    ReplicaSet, a StatefulSet, or a Job). Not for CronJob: suspending one does not stop
    the pod of a Job already running."""
    api_server: str | None = None
    """Default: in-cluster (KUBERNETES_SERVICE_HOST), else the kubeconfig's server."""
    kubeconfig: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _name_selector_or_pod(self) -> KubernetesTargetSettings:
        if sum(v is not None for v in (self.name, self.selector, self.pod)) != 1:
            raise ValueError("set exactly one of name, selector or pod")
        kinds = self.kinds()
        if self.pod is not None and "CronJob" in kinds:
            raise ValueError(
                "pod: works with kind Deployment, StatefulSet or Job, not CronJob:"
                " suspending a CronJob does not stop the pod of a Job already running"
            )
        if isinstance(self.kind, list):
            if self.pod is None:
                raise ValueError("a list of kinds needs pod: (the kind is the pod's controller's)")
            if not kinds or len(set(kinds)) != len(kinds):
                raise ValueError("kind: list each kind once, at least one")
        return self

    def kinds(self) -> tuple[KubernetesKind, ...]:
        return tuple(self.kind) if isinstance(self.kind, list) else (self.kind,)


class AzureApimTargetSettings(StrictModel):
    """Suspend / re-activate an API Management subscription through ARM REST."""

    type: Literal["azure_apim"]
    subscription_id: str
    resource_group: str
    service_name: str
    sid: Template
    """The APIM subscription id, e.g. `${team}-${agent}`."""
    api_version: str = "2022-08-01"
    endpoint: str = "https://management.azure.com"
    credential: Literal["default", "managed_identity", "workload_identity", "azure_cli"] = "default"
    timeout: Duration = 30.0


class CommandTargetSettings(StrictModel):
    """Run a command with the alert's labels as AISPEND_* environment variables."""

    type: Literal["command"]
    apply: list[str] = Field(min_length=1)
    undo: list[str] | None = None
    timeout: Duration = 30.0


class WebhookTargetSettings(StrictModel):
    """POST a JSON summary of the decision to a URL (chat, CI pipeline)."""

    type: Literal["webhook"]
    url: str
    token_file: str | None = None
    send_undo: bool = True
    timeout: Duration = 10.0


TargetSettings = Annotated[
    GatewayTargetSettings
    | KubernetesTargetSettings
    | AzureApimTargetSettings
    | CommandTargetSettings
    | WebhookTargetSettings,
    Field(discriminator="type"),
]


SUPPORTED_MODES: dict[str, frozenset[str]] = {
    "gateway": frozenset({"throttle", "pause"}),
    "kubernetes": frozenset({"pause"}),
    "azure_apim": frozenset({"pause"}),
    "command": frozenset({"throttle", "pause", "notify"}),
    "webhook": frozenset({"throttle", "pause", "notify"}),
}
"""Which rule modes each target type can carry out."""


class Rule(StrictModel):
    name: Name
    match: Annotated[dict[str, str], AfterValidator(_label_names)] = {}
    match_re: Annotated[dict[str, str], AfterValidator(_regexes)] = {}
    target: Name
    mode: Mode
    dry_run: bool | None = None
    """None: the global `dry_run`."""
    cooldown: Duration | None = None
    """No new action for the same rule and workload within this long of the last one."""
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0)
    """A gateway throttle's limits: a rule that sets either sets both (one left out is no
    limit); one that sets neither takes the target's."""

    def matches(self, labels: dict[str, str]) -> bool:
        for key, value in self.match.items():
            if labels.get(key) != value:
                return False
        return all(
            re.fullmatch(pattern, labels.get(key, "")) for key, pattern in self.match_re.items()
        )


class ActionsSettings(StrictModel):
    """The actuator's policy. `actions: {}` is valid: dry-run, no rules, no targets."""

    dry_run: bool = True
    token_file: str | None = None
    token_env: str = "AISPEND_ACTUATOR_TOKEN"
    state_db: str = ".run/actuator.sqlite3"
    cooldown: Duration = 0.0
    max_active_per_team: int | None = Field(default=None, gt=0)
    rules: list[Rule] = []
    targets: dict[Name, TargetSettings] = {}

    @model_validator(mode="after")
    def _rules_name_targets(self) -> ActionsSettings:
        names: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in names:
                raise ValueError(f"rules[{i}].name: duplicate rule '{rule.name}'")
            names.add(rule.name)
            if rule.target not in self.targets:
                known = ", ".join(sorted(self.targets)) or "none defined"
                raise ValueError(
                    f"rules[{i}].target: unknown target '{rule.target}' (targets: {known})"
                )
            kind = self.targets[rule.target].type
            if rule.mode not in SUPPORTED_MODES[kind]:
                allowed = ", ".join(sorted(SUPPORTED_MODES[kind]))
                raise ValueError(
                    f"rules[{i}].mode: a {kind} target cannot '{rule.mode}' (it can: {allowed})"
                )
        return self

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)
