"""Config section `sources.azure_tokens`: what cannot work is refused, naming the field."""

from __future__ import annotations

import pytest

from aispend.config import ConfigError, parse_config

HEAD = "teams: [{name: search}]\nsources:\n  azure_tokens:\n"
SUBSCRIPTIONS = "    subscriptions: {search-ranker: {team: search}}\n"


def issues(section: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as err:
        parse_config(HEAD + section)
    return [(issue.path, issue.message) for issue in err.value.issues]


def test_a_section_with_nothing_to_read_is_refused() -> None:
    """Neither a workspace nor an Azure OpenAI resource: `aispend config check` passed
    and the exporter ran, read nothing and exported no series, not even exporter_up."""
    assert issues(SUBSCRIPTIONS) == [
        (
            "sources.azure_tokens",
            "nothing to read: configure workspace_id (APIM gateway logs in Log Analytics)"
            " and/or openai_resources (Azure OpenAI token metrics)",
        )
    ]


@pytest.mark.parametrize("blank", ['""', '"  "'])
def test_a_blank_workspace_id_is_refused(blank: str) -> None:
    """A template whose variable was unset: it read no logs, silently."""
    assert issues(f"    workspace_id: {blank}\n" + SUBSCRIPTIONS) == [
        (
            "sources.azure_tokens.workspace_id",
            "must not be empty: give the Log Analytics workspace id, or leave workspace_id"
            " out to read no APIM logs",
        )
    ]


def test_a_first_window_that_would_be_empty_is_refused() -> None:
    """The first poll reads [now - initial lookback, now - settle delay): empty, nothing
    was ever read (no watermark is set until a window is read)."""
    found = issues(
        "    workspace_id: ws\n    settle_delay_seconds: 3600\n    initial_lookback_seconds: 3600\n"
    )
    assert found == [
        (
            "sources.azure_tokens",
            "initial_lookback_seconds must be at least settle_delay_seconds + 60: the first"
            " poll reads from now - initial_lookback_seconds to now - settle_delay_seconds",
        )
    ]


def test_a_workspace_alone_is_enough() -> None:
    settings = parse_config(HEAD + "    workspace_id: ' ws-1 '\n").sources.azure_tokens
    assert settings is not None and settings.workspace_id == "ws-1"


def test_a_resource_id_is_kept_as_azure_answers_it() -> None:
    """A trailing slash: the metrics answer names the resource without it, so every poll
    seemed to lack the resource and failed (the watermark of every resource stood)."""
    rid = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a"
    section = (
        "    metrics_endpoint: https://eastus.metrics.monitor.azure.com\n"
        f"    openai_resources: [{{id: '{rid}/', team: search}}]\n"
    )
    config = parse_config(HEAD + section)
    assert config.sources.azure_tokens is not None
    assert [r.id for r in config.sources.azure_tokens.openai_resources] == [rid]
