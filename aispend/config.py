"""aispend.yaml: pydantic models, loading, and errors that name the field.

`load_config(path)` returns a validated `Config` or raises `ConfigError`, whose
`issues` list every problem as `path.to.field: message` (e.g.
`budgets[2].amount: must be > 0`). Structural errors come from pydantic; the
cross-references (budget of an unknown team, duplicate names) are checked after. When
some entries have structural errors, the cross-references of the entries that are
valid are still checked, so every error arrives in one report; they are checked only
when `teams:` itself is valid, as every reference is checked against it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, field_validator
from pydantic import BaseModel as _BaseModel

from aispend.actuators.settings import ActionsSettings as Actions
from aispend.configbase import Name, StrictModel
from aispend.exporters.billing.settings import AzureCostSettings, FocusSettings
from aispend.exporters.gpu.settings import GpuSettings
from aispend.exporters.tokens.settings import AzureTokensSettings
from aispend.gateway.settings import GatewaySettings
from aispend.parsing import load_yaml, validation_message, yaml_lines

Criticality = Literal["critical", "standard", "experimental"]
Period = Literal["day", "month"]

ENV_CONFIG = "AISPEND_CONFIG"
DEFAULT_CONFIG_FILE = "aispend.yaml"

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Money = typing.Annotated[float, Field(strict=True, gt=0), AfterValidator(_finite)]
Price = typing.Annotated[float, Field(strict=True, ge=0), AfterValidator(_finite)]


class Team(StrictModel):
    name: Name
    cost_center: str = ""
    owner: str = ""
    criticality: Criticality = "standard"
    projects: list[Name] = []
    agents: list[Name] = []


class Budget(StrictModel):
    """A spend budget for a team, or a team's project, or a team's agent."""

    team: Name
    project: Name | None = None
    agent: Name | None = None
    period: Period
    amount: Money
    soft_ratio: typing.Annotated[float, Field(strict=True, gt=0, le=1)] | None = None


class ApiKey(StrictModel):
    """A client API key, stored only as its SHA-256 hex digest."""

    sha256: str
    team: Name
    project: Name | None = None
    agent: Name | None = None
    description: str = ""

    @field_validator("sha256")
    @classmethod
    def _is_digest(cls, value: str) -> str:
        if not _SHA256_RE.fullmatch(value):
            raise ValueError(
                "must be the SHA-256 hex digest of the key (64 lowercase hex characters), "
                "never the key itself"
            )
        return value


class ModelPrice(StrictModel):
    """Token prices per million tokens; unset cached/reasoning prices fall back."""

    input_per_mtok: Price
    output_per_mtok: Price
    cached_input_per_mtok: Price | None = None
    reasoning_per_mtok: Price | None = None
    cache_write_per_mtok: Price | None = None
    """Anthropic prompt-cache writes (5-minute lifetime); unset: the input price."""
    cache_write_1h_per_mtok: Price | None = None
    """Anthropic 1-hour prompt-cache writes; unset: the cache-write price."""


MAX_MODEL_NAME = 256
"""The longest model name aispend looks up (genai-prices' longest is about 60)."""


class Prices(StrictModel):
    """Prices in the reporting currency (`currency`)."""

    models: dict[str, ModelPrice] = {}
    gpu: dict[str, Price] = {}
    """GPU hourly price by NVML model name (e.g. "NVIDIA H100 80GB HBM3")."""
    usd_rate: Money | None = None
    """How much of `currency` one US dollar buys: converts the bundled prices, which are
    in US dollars (genai-prices' token prices, the example GPU prices). Required when
    `currency` is not USD; `models` and `gpu` above are in `currency` already."""

    def usd_to_currency(self) -> float:
        return 1.0 if self.usd_rate is None else self.usd_rate

    @field_validator("models")
    @classmethod
    def _short_names(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        for name in value:
            if len(name) > MAX_MODEL_NAME:
                raise ValueError(
                    f"model name {name[:40]!r}... is longer than {MAX_MODEL_NAME} characters"
                )
        return value


class Sources(StrictModel):
    """Data sources; each component adds its own section model here."""

    gpu: GpuSettings | None = None
    azure_tokens: AzureTokensSettings | None = None
    gateway: GatewaySettings | None = None
    azure_cost: AzureCostSettings | None = None
    focus: FocusSettings | None = None


class Config(StrictModel):
    currency: str = "USD"
    teams: list[Team] = Field(min_length=1)
    budgets: list[Budget] = []
    api_keys: list[ApiKey] = []
    prices: Prices = Prices()
    sources: Sources = Sources()
    actions: Actions = Actions()

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if not _CURRENCY_RE.fullmatch(value):
            raise ValueError("must be an ISO 4217 code such as USD or EUR")
        return value

    def team(self, name: str) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str
    line: int | None = dataclasses.field(default=None, compare=False)  # in the file, where known
    loc: tuple[int | str, ...] | None = dataclasses.field(default=None, compare=False)
    """The path as keys and indexes, where known (a key may hold a dot: `gpt-3.5-turbo`)."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def report_line(self) -> str:
        """`str(self)` with the line in the file, where known."""
        return str(self) + (f" (line {self.line})" if self.line is not None else "")

    def located(self, lines: Callable[[Sequence[int | str]], int | None]) -> ConfigIssue:
        """This issue with the line of its path (`lines`: parsing.yaml_lines of the file),
        or of the deepest part of the path that the file holds (a missing key's mapping)."""
        parts = self.loc or [int(i) if i else key for i, key in _PATH_PART.findall(self.path)]
        return dataclasses.replace(self, line=lines(parts) if parts else None)


_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]()]+)")


class ConfigError(Exception):
    """The config file cannot be used; `issues` lists every problem found."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]):
        self.source = source
        self.issues = list(issues)
        super().__init__(f"{source}: " + "; ".join(i.report_line() for i in self.issues))

    def report(self) -> str:
        n = len(self.issues)
        lines = [f"{self.source}: {n} error{'s' if n != 1 else ''}"]
        lines += [f"  {issue.report_line()}" for issue in self.issues]
        return "\n".join(lines)


def resolve_config_path(explicit: str | None = None, fallback: str = DEFAULT_CONFIG_FILE) -> Path:
    """--config, then $AISPEND_CONFIG, then ./<fallback> (./aispend.yaml)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return Path(fallback)


def load_config(path: Path | str) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(str(path), [ConfigIssue("(file)", "not found")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [ConfigIssue("(file)", f"cannot read: {exc}")]) from exc
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_issue(exc)]) from exc
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError(source, [ConfigIssue("(top level)", f"must be a mapping, got {kind}")])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues = [_pydantic_issue(e) for e in exc.errors()]
        refs = _valid_parts(data)
        if refs is not None:
            issues += [i for i in _cross_check(refs) if i not in issues]
        issues += [i for i in _currency_check(*_valid_currency(data)) if i not in issues]
        raise ConfigError(source, _located(issues, text)) from exc
    issues = list(_cross_check(_References.of(config)))
    issues += _currency_check(config.currency, config.prices)
    if issues:
        raise ConfigError(source, _located(issues, text))
    return config


# ---------------------------------------------------------------- error messages


def _located(issues: Sequence[ConfigIssue], text: str) -> list[ConfigIssue]:
    """`issues` with their lines in `text` (the file read once for all of them)."""
    lines = yaml_lines(text)
    return [issue.located(lines) for issue in issues]


def _yaml_issue(exc: yaml.YAMLError) -> ConfigIssue:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"(yaml line {mark.line + 1}, column {mark.column + 1})" if mark else "(yaml)"
    return ConfigIssue(where, f"invalid YAML: {problem}")


def format_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _pydantic_issue(error: Any) -> ConfigIssue:
    loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "missing":
        message = "required"
    elif kind == "extra_forbidden":
        message = "unknown key" + _suggest(loc)
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(kind, "<=")
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        message = f"must be {op} {bound}"
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected')}"
    elif kind in ("float_parsing", "float_type", "int_parsing", "int_type"):
        message = "must be a number"
    elif kind in ("string_type",):
        message = "must be a string"
    elif kind in ("list_type",):
        message = "must be a list"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = "must be a mapping"
    elif kind == "too_short":
        message = "must not be empty"
    elif kind == "invalid_key":  # YAML read `1:` or `true:` as a number or a boolean
        return ConfigIssue(
            format_path(loc[:-1]), f"key {loc[-1]!r} must be text: quote it", loc=loc[:-1]
        )
    elif kind == "value_error":
        message = validation_message(error)
    else:
        message = error["msg"][0].lower() + error["msg"][1:]
    return ConfigIssue(format_path(loc), message, loc=loc)


def _suggest(loc: tuple[int | str, ...]) -> str:
    """', did you mean X?' / allowed keys for an unknown key at `loc`."""
    model = _model_at(Config, loc[:-1])
    if model is None:
        return ""
    allowed = list(model.model_fields)
    if not allowed:
        return " (this section takes no keys yet)"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    if close:
        return f", did you mean '{close[0]}'?"
    return f" (allowed: {', '.join(allowed)})"


def _model_at(root: type[_BaseModel], loc: Sequence[int | str]) -> type[_BaseModel] | None:
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, _BaseModel):
            if not isinstance(part, str) or part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        else:
            args = typing.get_args(current)
            if not args:
                return None
            current = args[-1]  # list[X] -> X, dict[K, V] -> V
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, _BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated wrappers."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


# ---------------------------------------------------------------- cross-references


@dataclass(frozen=True)
class _References:
    """What the cross-reference checks read: the teams, and the entries naming them
    with their index in the file (entries with structural errors are left out)."""

    teams: Sequence[Team]
    budgets: Sequence[tuple[int, Budget]]
    api_keys: Sequence[tuple[int, ApiKey]]
    sources: Sources | None

    @staticmethod
    def of(config: Config) -> _References:
        return _References(
            config.teams,
            list(enumerate(config.budgets)),
            list(enumerate(config.api_keys)),
            config.sources,
        )

    def team(self, name: str) -> Team | None:
        return next((t for t in self.teams if t.name == name), None)


def _valid_parts(data: dict[str, Any]) -> _References | None:
    """The valid parts of a config that failed validation; None when `teams:` is not
    valid (a reference to a team whose entry is broken would read as unknown)."""
    try:
        teams = _TEAMS.validate_python(data.get("teams"))
    except ValidationError:
        return None
    if not teams:
        return None
    try:
        sources: Sources | None = Sources.model_validate(data.get("sources", {}))
    except ValidationError:
        sources = None
    return _References(
        teams,
        _valid_entries(data.get("budgets"), Budget),
        _valid_entries(data.get("api_keys"), ApiKey),
        sources,
    )


_TEAMS = TypeAdapter(list[Team])
_Entry = typing.TypeVar("_Entry", Budget, ApiKey)


def _valid_entries(raw: object, model: type[_Entry]) -> list[tuple[int, _Entry]]:
    if not isinstance(raw, list):
        return []
    valid = []
    for i, entry in enumerate(raw):
        try:
            valid.append((i, model.model_validate(entry)))
        except ValidationError:
            continue
    return valid


def _valid_currency(data: dict[str, Any]) -> tuple[str | None, Prices | None]:
    currency = data.get("currency", "USD")
    try:
        prices: Prices | None = Prices.model_validate(data.get("prices", {}))
    except ValidationError:
        prices = None
    valid = isinstance(currency, str) and _CURRENCY_RE.fullmatch(currency) is not None
    return (currency if valid else None), prices


def _currency_check(currency: str | None, prices: Prices | None) -> Iterator[ConfigIssue]:
    """The bundled prices are in US dollars: another currency needs their rate."""
    if currency is None or prices is None:
        return
    if currency != "USD" and prices.usd_rate is None:
        yield ConfigIssue(
            "prices.usd_rate",
            f"required with currency {currency}: genai-prices' token prices and the example"
            f" GPU prices are in US dollars; set how many {currency} one US dollar buys",
        )
    elif currency == "USD" and prices.usd_rate not in (None, 1.0):
        yield ConfigIssue("prices.usd_rate", "only for a currency other than USD (it is USD)")


def _cross_check(refs: _References) -> Iterator[ConfigIssue]:
    teams: dict[str, int] = {}
    for i, team in enumerate(refs.teams):
        if team.name in teams:
            yield ConfigIssue(
                f"teams[{i}].name",
                f"duplicate team '{team.name}' (first at teams[{teams[team.name]}])",
            )
        else:
            teams[team.name] = i
        for field in ("projects", "agents"):
            seen: set[str] = set()
            for j, name in enumerate(getattr(team, field)):
                if name in seen:
                    yield ConfigIssue(f"teams[{i}].{field}[{j}]", f"duplicate '{name}'")
                seen.add(name)

    scopes: dict[tuple[str, str | None, str | None, str], int] = {}
    for i, budget in refs.budgets:
        yield from _check_scope(refs, f"budgets[{i}]", budget.team, budget.project, budget.agent)
        scope = (budget.team, budget.project, budget.agent, budget.period)
        first_budget = scopes.setdefault(scope, i)
        if first_budget != i:
            yield ConfigIssue(
                f"budgets[{i}]",
                f"duplicate budget for this scope and period (first at budgets[{first_budget}])",
            )

    if refs.sources is not None:
        yield from _check_source_owners(refs, refs.sources)

    digests: dict[str, int] = {}
    for i, api_key in refs.api_keys:
        yield from _check_scope(
            refs, f"api_keys[{i}]", api_key.team, api_key.project, api_key.agent
        )
        first = digests.setdefault(api_key.sha256, i)
        if first != i:
            yield ConfigIssue(f"api_keys[{i}].sha256", f"duplicate key (also api_keys[{first}])")


def _check_source_owners(refs: _References, sources: Sources) -> Iterator[ConfigIssue]:
    """Teams, projects and agents named in `sources:` must exist in `teams:`."""
    gpu = sources.gpu
    if gpu is not None:
        for i, entry in enumerate(gpu.attribution):
            yield from _check_scope(
                refs, f"sources.gpu.attribution[{i}]", entry.team, entry.project, None
            )
        for uid, pod in gpu.pods.items():
            yield from _check_scope(refs, f"sources.gpu.pods.{uid}", pod.team, pod.project, None)
    tokens = sources.azure_tokens
    if tokens is not None:
        for kind, owners in (
            ("subscriptions", tokens.subscriptions),
            ("products", tokens.products),
        ):
            for key, owner in owners.items():
                path = f"sources.azure_tokens.{kind}.{key}"
                yield from _check_scope(refs, path, owner.team, owner.project, owner.agent)
        for i, resource in enumerate(tokens.openai_resources):
            if resource.team is not None:
                path = f"sources.azure_tokens.openai_resources[{i}]"
                yield from _check_scope(refs, path, resource.team, resource.project, None)


def _check_scope(
    refs: _References, path: str, team_name: str, project: str | None, agent: str | None
) -> Iterator[ConfigIssue]:
    team = refs.team(team_name)
    if team is None:
        known = ", ".join(t.name for t in refs.teams)
        yield ConfigIssue(f"{path}.team", f"unknown team '{team_name}' (teams: {known})")
        return
    if project is not None and agent is not None:
        yield ConfigIssue(path, "set project or agent, not both")
    if project is not None and project not in team.projects:
        yield ConfigIssue(f"{path}.project", f"team '{team_name}' has no project '{project}'")
    if agent is not None and agent not in team.agents:
        yield ConfigIssue(f"{path}.agent", f"team '{team_name}' has no agent '{agent}'")
