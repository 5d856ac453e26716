"""aispend.yaml validation and `aispend config check`: every error names its field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from aispend.config import ConfigError, load_config, parse_config, resolve_config_path
from tests.conftest import EXAMPLE_CONFIG

GOOD_HEAD = """
teams:
  - {name: search, criticality: standard, projects: [ranking], agents: [bot]}
  - {name: support, criticality: critical}
"""
DIGEST = "a" * 64


def run_check(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "aispend", "config", "check", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )


def test_example_config_is_valid():
    config = load_config(EXAMPLE_CONFIG)
    assert [t.name for t in config.teams] == ["search", "support", "research", "growth"]
    assert sum(t.criticality == "critical" for t in config.teams) == 1
    assert {b.period for b in config.budgets} == {"day", "month"}
    assert config.currency == "USD"


def test_config_check_cli_summarises_example():
    result = run_check(str(EXAMPLE_CONFIG))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "4 teams, 9 budgets (day, month), 7 api keys, currency USD" in result.stdout


# (yaml body, expected error lines): each case breaks the config in one way.
BAD_CONFIGS = [
    pytest.param("teams: [\n", ["(yaml line 2, column 1): invalid YAML"], id="bad-yaml"),
    pytest.param(
        "teams:\n  - " + "[" * 100_000,
        ["(yaml): invalid YAML: YAML nested too deeply to parse"],
        id="yaml-nested-deeper-than-the-parser-recurses",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: day, amount: 5}\n"
        "budgets:\n  - {team: search, period: month, amount: 50}\n",
        ["(yaml line 7, column 1): invalid YAML: found key 'budgets' again (first on line 5)"],
        id="key-written-twice",
    ),
    pytest.param("- a\n- b\n", ["(top level): must be a mapping, got list"], id="not-a-mapping"),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: day, amount: !!int five}\n",
        ["(yaml line 6, column 41): invalid YAML: cannot read int"],
        id="value-its-tag-cannot-hold",  # was a traceback (PyYAML's ValueError)
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: day, amount: 1:30}\n",
        ["budgets[0].amount: must be a number"],
        id="base-60-is-not-a-number",  # YAML 1.1 read it as 90
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: day, amount: 5, soft_ratio: true}\n",
        ["budgets[0].soft_ratio: "],
        id="soft-ratio-true-is-not-a-ratio",  # was read as 1.0
    ),
    pytest.param(
        GOOD_HEAD + "budgetz: []\n",
        ["budgetz: unknown key, did you mean 'budgets'?"],
        id="unknown-top-key",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: month, amount: -5}\n",
        ["budgets[0].amount: must be > 0"],
        id="negative-amount",
    ),
    pytest.param(
        GOOD_HEAD
        + "budgets:\n  - {team: search, period: day, amount: 1}\n"
        + "  - {team: search, period: month, amount: 1}\n"
        + "  - {team: search, period: month, amount: 0}\n",
        ["budgets[2].amount: must be > 0"],
        id="zero-amount-third",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: billing, period: month, amount: 10}\n",
        ["budgets[0].team: unknown team 'billing' (teams: search, support)"],
        id="budget-unknown-team",
    ),
    pytest.param(
        GOOD_HEAD + "  - {name: search}\n",
        ["teams[2].name: duplicate team 'search' (first at teams[0])"],
        id="duplicate-team",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: week, amount: 10}\n",
        ["budgets[0].period: must be one of 'day' or 'month'"],
        id="bad-period",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: day, amount: true}\n",
        ["budgets[0].amount: must be a number"],
        id="amount-true-is-not-1",
    ),
    pytest.param(
        GOOD_HEAD + "api_keys:\n  - {sha256: sk-live-123, team: search}\n",
        [
            "api_keys[0].sha256: must be the SHA-256 hex digest of the key "
            "(64 lowercase hex characters), never the key itself"
        ],
        id="bad-key-hash",
    ),
    pytest.param(
        GOOD_HEAD + f'api_keys:\n  - {{sha256: "{DIGEST}\\n", team: search}}\n',
        [
            "api_keys[0].sha256: must be the SHA-256 hex digest of the key "
            "(64 lowercase hex characters), never the key itself"
        ],
        id="key-hash-with-a-newline",
    ),
    pytest.param(
        GOOD_HEAD
        + f"api_keys:\n  - {{sha256: {DIGEST}, team: search}}\n"
        + f"  - {{sha256: {DIGEST}, team: support}}\n",
        ["api_keys[1].sha256: duplicate key (also api_keys[0])"],
        id="duplicate-key-hash",
    ),
    pytest.param(
        "teams:\n  - {name: x, criticality: vital}\n",
        ["teams[0].criticality: must be one of 'critical', 'standard' or 'experimental'"],
        id="bad-criticality",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, project: ranking, agent: bot, "
        "period: day, amount: 3}\n",
        ["budgets[0]: set project or agent, not both"],
        id="project-and-agent",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, agent: ghost, period: day, amount: 3}\n",
        ["budgets[0].agent: team 'search' has no agent 'ghost'"],
        id="unknown-agent",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: day, amount: 3}\n"
        "  - {team: search, period: day, amount: 4}\n",
        ["budgets[1]: duplicate budget for this scope and period (first at budgets[0])"],
        id="duplicate-budget",
    ),
    pytest.param(
        GOOD_HEAD + "prices:\n  models:\n    m1: {input_per_mtok: cheap, output_per_mtok: 1}\n",
        ["prices.models.m1.input_per_mtok: must be a number"],
        id="price-not-number",
    ),
    pytest.param(
        "teams:\n  - {name: Search Team}\n",
        [
            "teams[0].name: must be 1-63 characters of a-z, 0-9, '_', '-', '.', "
            "starting with a letter or digit"
        ],
        id="bad-team-name",
    ),
    pytest.param("teams: []\n", ["teams: must not be empty"], id="no-teams"),
    pytest.param(
        "currency: dollars\n" + GOOD_HEAD, ["currency: must be an ISO 4217 code"], id="bad-currency"
    ),
    pytest.param(
        "currency: EUR\n" + GOOD_HEAD,
        [
            "prices.usd_rate: required with currency EUR: genai-prices' token prices and the"
            " example GPU prices are in US dollars; set how many EUR one US dollar buys"
        ],
        id="currency-without-usd-rate",
    ),
    pytest.param(
        "currency: EUR\nteams: []\n",
        [
            "teams: must not be empty",
            "prices.usd_rate: required with currency EUR: genai-prices' token prices and the"
            " example GPU prices are in US dollars; set how many EUR one US dollar buys",
        ],
        id="currency-without-usd-rate-beside-another-error",
    ),
    pytest.param(
        GOOD_HEAD + "prices:\n  usd_rate: 0.9\n",
        ["prices.usd_rate: only for a currency other than USD (it is USD)"],
        id="usd-rate-with-usd",
    ),
    pytest.param(
        "currency: EUR\n" + GOOD_HEAD + "prices:\n  usd_rate: 0\n",
        ["prices.usd_rate: must be > 0"],
        id="usd-rate-zero",
    ),
    pytest.param(
        GOOD_HEAD + "budgets:\n  - {team: search, period: day}\n"
        "  - {team: search, period: month, amount: 5, soft_ratio: 1.5}\n",
        ["budgets[0].amount: required", "budgets[1].soft_ratio: must be <= 1"],
        id="several-errors-reported-together",
    ),
    pytest.param(
        GOOD_HEAD + "sources:\n  gpu:\n    attribution:\n      - {host: h1, team: serach}\n"
        "  azure_tokens:\n    workspace_id: ws\n"
        "    subscriptions: {s1: {team: search, agent: ghost}}\n",
        [
            "sources.gpu.attribution[0].team: unknown team 'serach' (teams: search, support)",
            "sources.azure_tokens.subscriptions.s1.agent: team 'search' has no agent 'ghost'",
        ],
        id="source-owner-unknown",
    ),
    pytest.param(
        GOOD_HEAD + "sources: {prometheus_url: x}\n",
        ["sources.prometheus_url: unknown key"],
        id="unknown-source",
    ),
    # Structural and cross-reference errors arrive in one report (they came in two
    # rounds: the references were checked only once everything else was valid).
    pytest.param(
        GOOD_HEAD + "  - {name: search}\n"
        "budgets:\n"
        "  - {team: search, period: day, amount: -5}\n"
        "  - {team: serch, period: day, amount: 5}\n"
        "api_keys:\n"
        f"  - {{sha256: {DIGEST}, team: support, agent: bot}}\n"
        "sources:\n  gpu: {attribution: [{host: h, gpu: 0, team: nobody}]}\n",
        [
            "budgets[0].amount: must be > 0",
            "teams[2].name: duplicate team 'search' (first at teams[0])",
            "budgets[1].team: unknown team 'serch'",
            "sources.gpu.attribution[0].team: unknown team 'nobody'",
            "api_keys[0].agent: team 'support' has no agent 'bot'",
        ],
        id="structural-and-reference-errors-together",
    ),
    # A broken team entry: its name may be the one a budget refers to, so references
    # are not checked against a partial team list (no false "unknown team").
    pytest.param(
        GOOD_HEAD + "  - {name: research, criticality: urgent}\n"
        "budgets:\n  - {team: research, period: day, amount: 5}\n",
        ["teams[2].criticality: must be one of"],
        id="broken-team-entry-skips-reference-checks",
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD_CONFIGS)
def test_bad_config_names_the_field(tmp_path: Path, body: str, expected: list[str]):
    path = tmp_path / "aispend.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    messages = [str(issue) for issue in info.value.issues]
    assert len(messages) == len(expected), messages
    for message, want in zip(messages, expected, strict=True):
        assert message.startswith(want), (message, want)

    result = run_check(str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first, *lines = result.stderr.splitlines()
    assert first == f"{path}: {len(expected)} error{'s' if len(expected) > 1 else ''}"
    for line, want in zip(lines, expected, strict=True):
        assert line.strip().startswith(want)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    result = run_check(str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stderr.strip().endswith("(file): not found")
    assert "Traceback" not in result.stderr


def test_config_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AISPEND_CONFIG", raising=False)
    assert resolve_config_path(None) == Path("aispend.yaml")
    monkeypatch.setenv("AISPEND_CONFIG", "/etc/aispend/env.yaml")
    assert resolve_config_path(None) == Path("/etc/aispend/env.yaml")
    assert resolve_config_path("given.yaml") == Path("given.yaml")


def test_config_check_uses_env_then_cwd(tmp_path: Path):
    (tmp_path / "aispend.yaml").write_text(EXAMPLE_CONFIG.read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("teams: []\n")
    import os

    env = {k: v for k, v in os.environ.items() if k != "AISPEND_CONFIG"}
    result = run_check(env=env, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("aispend.yaml: ok")
    result = run_check(env={**env, "AISPEND_CONFIG": str(bad)}, cwd=tmp_path)
    assert result.returncode == 1 and "teams: must not be empty" in result.stderr


def test_demo_help_names_the_file_the_demo_falls_back_to(tmp_path: Path):
    """`aispend demo` falls back to ./aispend.example.yaml (not ./aispend.yaml), and its
    --help says so."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "AISPEND_CONFIG"}

    def aispend(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aispend", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )

    help_text = " ".join(aispend("demo", "--help").stdout.split())
    assert "(default: $AISPEND_CONFIG, then ./aispend.example.yaml)" in help_text
    (tmp_path / "aispend.yaml").write_text(EXAMPLE_CONFIG.read_text())
    done = aispend("demo", "--once")  # no aispend.example.yaml here: fails before starting
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["aispend.example.yaml: 1 error", "  (file): not found"]
    help_text = " ".join(aispend("stack", "up", "--help").stdout.split())
    assert "(default: $AISPEND_CONFIG, then ./aispend.yaml)" in help_text


def test_unknown_key_in_nested_section_lists_allowed_keys():
    text = textwrap.dedent(
        """
        teams: [{name: a}]
        prices: {gpus: {}}
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert [str(i) for i in info.value.issues] == ["prices.gpus: unknown key, did you mean 'gpu'?"]


def test_a_key_with_a_dot_and_many_errors_are_located_right(monkeypatch):
    """The path was split at dots to find the line: `gpt-3.5-turbo` named the line of a
    `gpt-3` key. And the file was read again for each error: 1,500 errors took 233 s."""
    text = textwrap.dedent(
        """\
        teams: [{name: search}]
        prices:
          models:
            gpt-3: {input_per_mtok: 1, output_per_mtok: 2}
            gpt-3.5-turbo: {input_per_mtok: x, output_per_mtok: 2}
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert [i.report_line() for i in info.value.issues] == [
        "prices.models.gpt-3.5-turbo.input_per_mtok: must be a number (line 5)"
    ]
    composed = []
    real_compose = yaml.compose
    monkeypatch.setattr(
        yaml, "compose", lambda *a, **k: composed.append(1) or real_compose(*a, **k)
    )
    many = "teams:\n" + "".join(f"  - {{name: t{i}, projekts: [x]}}\n" for i in range(200))
    with pytest.raises(ConfigError) as info:
        parse_config(many)
    assert len(info.value.issues) == 200 and info.value.issues[-1].line == 201
    assert composed == [1]


def test_every_error_names_its_line():
    """A FinOps editor of a long budgets list got `budgets[17].amount: must be a number`
    and had to count list items. Each error now names its line: the value's or key's,
    or for a missing key the line of the entry that lacks it. A key YAML read as a
    number said `[1]: keys should be strings`."""
    text = textwrap.dedent(
        """\
        teams:
          - name: search
            projects: [ranking]
            1: x
        budgets:
          - team: search
            period: day
            amount: lots
          - team: nobody
            period: day
            amount: 5
          - period: day
            amount: 5
        """
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "aispend.yaml")
    assert sorted(i.report_line() for i in info.value.issues) == [
        "budgets[0].amount: must be a number (line 8)",
        "budgets[2].team: required (line 12)",
        "teams[0]: key 1 must be text: quote it (line 2)",
    ]
    with pytest.raises(ConfigError) as info:
        parse_config(text.replace("    1: x\n", "").replace("lots", "5"), "aispend.yaml")
    assert sorted(i.report_line() for i in info.value.issues) == [
        "budgets[1].team: unknown team 'nobody' (teams: search) (line 8)",
        "budgets[2].team: required (line 11)",
    ]
