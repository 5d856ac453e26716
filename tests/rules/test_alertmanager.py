"""deploy/alertmanager.yml: amtool check-config and one routes test per route."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO, require_binary

CONFIG = REPO / "deploy" / "alertmanager.yml"


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("amtool"), *args], capture_output=True, text=True, check=False
    )


def test_check_config() -> None:
    out = _amtool("check-config", str(CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    assert " - 8 receivers" in out.stdout
    assert " - 2 inhibit rules" in out.stdout


ROUTES = [
    # throttle: actuator first, then the pager (critical) and the team's chat
    (
        "actuator,pager,chat-search",
        "alertname=AISpendRunawaySpend severity=critical team=search action=throttle",
    ),
    # pause (warning): actuator, then the team's chat
    (
        "actuator,chat-research",
        "alertname=AISpendGPUIdle severity=warning team=research action=pause",
    ),
    # a critical team's runaway: notify only, so pager and the support chat, no actuator
    (
        "pager,chat-support",
        "alertname=AISpendRunawaySpend severity=critical team=support action=notify",
    ),
    # a team-level runaway (no agent to throttle): notify, pager and chat, no actuator
    (
        "pager,chat-growth",
        "alertname=AISpendTeamRunaway severity=critical team=growth action=notify",
    ),
    ("chat-growth", "alertname=AISpendSpendAnomaly severity=warning team=growth"),
    ("chat-default", "alertname=AISpendUnattributedSpend severity=warning team=unattributed"),
    ("blackhole", "alertname=AISpendEstimateBillMismatch severity=info team=search"),
    ("chat-default", "alertname=Other"),
]


@pytest.mark.parametrize(("receivers", "labels"), ROUTES)
def test_route(receivers: str, labels: str) -> None:
    out = _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        f"--verify.receivers={receivers}",
        *labels.split(),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == receivers
