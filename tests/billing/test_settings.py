"""Config sections `sources.azure_cost` and `sources.focus`: errors name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from aispend.config import ConfigError, parse_config
from aispend.exporters.billing.focus import FocusError, FocusReader
from aispend.exporters.billing.settings import FocusSettings

TEAMS = "teams: [{name: search}]\n"


def issues(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(TEAMS + text)
    return [str(i) for i in err.value.issues]


def test_valid_sections_and_defaults() -> None:
    config = parse_config(
        TEAMS + "sources:\n"
        "  azure_cost:\n"
        "    scopes: [{scope: /subscriptions/abc/, name: prod}]\n"
        "  focus:\n"
        "    paths: [exports/*.parquet]\n"
    )
    azure = config.sources.azure_cost
    focus = config.sources.focus
    assert azure is not None and focus is not None
    assert azure.scopes[0].scope == "subscriptions/abc"
    assert azure.scopes[0].account == "prod"
    assert (azure.cost_type, azure.team_tag, azure.refresh_interval_seconds) == (
        "ActualCost",
        "team",
        14400.0,
    )
    assert azure.credential.kind == "default"
    assert (focus.cost_column, focus.tags.team, focus.resource_series) == (
        "EffectiveCost",
        "team",
        False,
    )


def test_bad_scope_and_incomplete_client_secret() -> None:
    found = issues(
        "sources:\n"
        "  azure_cost:\n"
        "    scopes: [{scope: tenants/x}]\n"
        "    credential: {kind: client_secret, tenant_id: t}\n"
        "    refresh_interval_seconds: 5\n"
    )
    assert found[0].startswith(
        "sources.azure_cost.scopes[0].scope: must be a Cost Management scope"
    )
    assert "sources.azure_cost.refresh_interval_seconds: must be >= 60" in found
    assert (
        "sources.azure_cost.credential: kind client_secret needs client_id,"
        " client_secret_file" in found
    )


@pytest.mark.parametrize(
    ("line", "error"),
    [
        # .inf loaded, and the refresher thread died on its first wait (OverflowError).
        ("refresh_interval_seconds: .inf", "refresh_interval_seconds: must be <= 604800"),
        ("refresh_interval_seconds: 1e12", "refresh_interval_seconds: must be <= 604800"),
        ("max_retry_wait_seconds: .inf", "max_retry_wait_seconds: must be <= 86400"),
    ],
)
def test_waits_past_a_week_or_a_day_are_refused(line: str, error: str) -> None:
    found = issues(
        f"sources:\n  azure_cost:\n    scopes: [{{scope: subscriptions/x}}]\n    {line}\n"
    )
    assert f"sources.azure_cost.{error}" in found


def test_focus_cost_column_and_empty_paths() -> None:
    found = issues("sources:\n  focus:\n    paths: []\n    cost_column: ListCost\n")
    assert "sources.focus.paths: must not be empty" in found
    assert "sources.focus.cost_column: must be one of 'EffectiveCost' or 'BilledCost'" in found


SAS_URL = (
    "https://acct.blob.core.windows.net/exports/focus/part_0.parquet"
    "?sv=2022-11-02&sp=rl&sig=SUPERSECRETSIG%3D"
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SAS_URL, "https://acct.blob.core.windows.net/exports/focus/part_0.parquet"),
        ("s3://user:pw@bucket/focus/*.parquet", "s3://bucket/focus/*.parquet"),
    ],
    ids=["blob-sas", "s3-userinfo"],
)
def test_a_remote_url_path_is_refused_without_its_secrets(
    url: str, shown: str, tmp_path: Path
) -> None:
    """A blob URL with a SAS token was taken for a glob that matched nothing, and the
    whole URL (sig= included) was logged on every refresh."""
    with pytest.raises(ConfigError) as err:
        parse_config(TEAMS + f"sources:\n  focus:\n    paths: ['{tmp_path}/a.csv', '{url}']\n")
    [issue] = err.value.issues
    assert (issue.path, issue.message) == (
        "sources.focus.paths[1]",
        f"{shown} is a URL: remote exports are not read; download the export first"
        " (azcopy copy, aws s3 cp, gcloud storage cp) and give its local path or glob",
    )
    secrets = ("SUPERSECRETSIG", "sig=", "pw@")
    assert not any(s in err.value.report() for s in secrets)
    with pytest.raises(ValidationError) as invalid:
        FocusSettings(paths=[url])
    assert not any(s in str(invalid.value) for s in secrets)
    # The CLIs (focus summarize, backfill) take paths without the config: refused too.
    with pytest.raises(FocusError) as unread:
        FocusReader([url]).daily()
    assert str(unread.value) == issue.message


def test_client_secret_file_that_is_not_utf8_is_a_clear_error(tmp_path) -> None:
    # Read through aispend.secrets like every other secret: the message names the file
    # and never shows the secret's bytes (Python's UnicodeDecodeError would).
    from aispend.exporters.billing.azure_cost import make_credential
    from aispend.exporters.billing.settings import AzureCredential
    from aispend.secrets import SecretError

    path = tmp_path / "secret"
    path.write_bytes(b"s3cr\xffet")
    settings = AzureCredential(
        kind="client_secret", tenant_id="t", client_id="c", client_secret_file=path
    )
    with pytest.raises(SecretError) as err:
        make_credential(settings)
    assert str(err.value) == (
        f"sources.azure_cost.credential.client_secret_file: {path} is not UTF-8 text"
    )


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ("/Subscriptions/ABC/", "scopes[1] is scopes[0] again (scopes ignore case)"),
        ("subscriptions/abc/resourceGroups/rg", "scopes[0] and scopes[1] overlap"),
    ],
)
def test_a_scope_counted_twice_is_refused(second: str, message: str) -> None:
    """Each scope's cost is added up: the same scope twice, or a resource group of a
    listed subscription, would double its cost."""
    found = issues(
        "sources:\n  azure_cost:\n"
        f"    scopes: [{{scope: subscriptions/abc}}, {{scope: {second}}}]\n"
    )
    assert len(found) == 1
    assert found[0].startswith(f"sources.azure_cost.scopes: {message}")


def test_an_openai_resource_listed_twice_is_refused() -> None:
    rid = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/a"
    found = issues(
        "sources:\n  azure_tokens:\n    metrics_endpoint: https://eastus.metrics.monitor.azure.com\n"
        f"    openai_resources: [{{id: {rid}, team: search}},"
        f" {{id: {rid.replace('rg', 'RG')}, team: search}}]\n"
    )
    assert found == [
        "sources.azure_tokens.openai_resources: openai_resources[1] is openai_resources[0]"
        " again (Azure resource ids ignore case)"
    ]
