"""deploy/alertmanager.yml: amtool check-config and one routes test per route."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.request

import pytest

from aispend.procs import wait_until
from tests.conftest import REPO, am_post_alert, require_binary, running_alertmanager

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
    assert " - 0 inhibit rules" in out.stdout


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
    # a GPU model without a price: no team, so the default chat
    ("chat-default", "alertname=AISpendGPUUnpriced severity=warning source=dcgm"),
    # a GPU NVML cannot read: no team either
    ("chat-default", "alertname=AISpendGPULost severity=warning instance=gpu:9111"),
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


# ---------------------------------------------------------------- inhibition, for real


def _inhibited(am_url: str) -> dict[str, bool]:
    with urllib.request.urlopen(am_url + "/api/v2/alerts", timeout=10) as response:
        alerts = json.load(response)
    return {
        " ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k != "severity")
        + f" severity={a['labels']['severity']}": bool(a["status"]["inhibitedBy"])
        for a in alerts
    }


BUDGET = {"team": "growth", "project": "", "agent": "copywriter-agent", "period": "day"}
TEAM_MONTH = {"team": "growth", "period": "month"}


def test_a_breached_budget_mutes_no_alert(tmp_path) -> None:
    """A breached budget inhibits nothing in Alertmanager: an alert inhibited when it
    resolves has its resolve dropped, so a muted burn page would stay open in the pager
    for good. The rules end a reached budget's burn alerts instead (annotations.test.yml,
    budgets-slow.test.yml). Real Alertmanager, real deploy/alertmanager.yml; receivers
    point at nothing here, which does not affect inhibition."""
    with running_alertmanager(CONFIG, tmp_path) as url:
        labels = [
            {"alertname": "AISpendBudgetExceeded", "severity": "critical", **BUDGET},
            {"alertname": "AISpendBudgetExceeded", "severity": "warning", **BUDGET},
            {"alertname": "AISpendBudgetBurnFast", "severity": "critical", **BUDGET},
            {"alertname": "AISpendBudgetBurnSlow", "severity": "warning", **BUDGET},
            {"alertname": "AISpendBudgetBurnFast", "severity": "critical", **TEAM_MONTH},
        ]
        for one in labels:
            am_post_alert(url, {k: v for k, v in one.items() if v})
        wait_until(lambda: len(_inhibited(url)) == len(labels) or None, 10, 0.2)
        # The inhibitor sees a posted alert a moment after the post returns: give a
        # rule that would mute one the time to do so before reading.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: any(_inhibited(url).values()) or None, 3, 0.2)
        assert not any(_inhibited(url).values()), _inhibited(url)
