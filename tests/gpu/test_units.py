"""Pure parts of the GPU exporter: cgroup parsing, attribution, prices, accrual, config."""

from __future__ import annotations

import pytest

from aispend.config import ConfigError, Prices, parse_config
from aispend.exporters.gpu.accrual import CostAccrual
from aispend.exporters.gpu.cgroup import Workload, parse_cgroup, workload_of
from aispend.exporters.gpu.settings import GpuAttribution, GpuSettings
from aispend.gpu_prices import DEFAULT_GPU_HOURLY_PRICES, gpu_hourly_price

POD = "0b8f5a0c-1c2d-4e5f-8a9b-0123456789ab"
CID = "3f1e" * 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # cgroup v1, cgroupfs driver
        (f"11:memory:/kubepods/burstable/pod{POD}/{CID}\n1:cpu:/\n", Workload(POD, CID)),
        # cgroup v2, systemd driver, containerd
        (
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
            f"{POD.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n",
            Workload(POD, CID),
        ),
        # plain docker
        (f"0::/system.slice/docker-{CID}.scope\n", Workload("", CID)),
        # not containerised
        ("0::/user.slice/user-1000.slice/session-2.scope\n", Workload()),
    ],
)
def test_parse_cgroup(text: str, expected: Workload) -> None:
    assert parse_cgroup(text) == expected


def test_workload_of_missing_process_is_empty(tmp_path: object) -> None:
    assert workload_of(999999, "/nonexistent-proc") == Workload()


def test_attribution_first_match_wins() -> None:
    settings = GpuSettings(
        attribution=[
            GpuAttribution(host="n1", uuid="GPU-a", team="research", project="evals"),
            GpuAttribution(host="n1", gpu=1, team="search", project="ranking"),
            GpuAttribution(host="n1", team="growth"),
        ]
    )
    assert settings.owner("n1", 0, "GPU-a") == ("research", "evals")
    assert settings.owner("n1", 1, "GPU-b") == ("search", "ranking")
    assert settings.owner("n1", 2, "GPU-c") == ("growth", "")
    assert settings.owner("n2", 1, "GPU-a") is None


def test_gpu_price_config_first_then_table_then_none() -> None:
    prices = Prices(gpu={"NVIDIA H100 80GB HBM3": 6.98})
    assert gpu_hourly_price("NVIDIA H100 80GB HBM3", prices) == 6.98
    assert gpu_hourly_price("nvidia h200", prices) == DEFAULT_GPU_HOURLY_PRICES["NVIDIA H200"]
    assert gpu_hourly_price("NVIDIA GeForce RTX 4090", prices) is None


def test_accrual_charges_elapsed_time_at_current_price() -> None:
    now = [0.0]
    accrual = CostAccrual(lambda: now[0])
    labels = ("0", "GPU-a")
    accrual.observe("GPU-a", labels, 3.6, idle=True)  # starts the clock
    now[0] = 100.0
    accrual.observe("GPU-a", labels, 3.6, idle=True)  # 100 s at 3.6/h = 0.1
    now[0] = 300.0
    accrual.observe("GPU-a", labels, 7.2, idle=False)  # 200 s at 7.2/h = 0.4
    totals = accrual.totals()[labels]
    assert totals.cost == pytest.approx(0.5)
    assert totals.idle_cost == pytest.approx(0.1)
    accrual.forget("GPU-a")  # unpriced for a while: the next observation restarts
    now[0] = 10_000.0
    accrual.observe("GPU-a", labels, 7.2, idle=False)
    assert accrual.totals()[labels].cost == pytest.approx(0.5)


def test_config_rejects_unknown_key_with_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("teams: [{name: a}]\nsources: {gpu: {idle_treshold: 0.1}}\n")
    assert [str(i) for i in err.value.issues] == [
        "sources.gpu.idle_treshold: unknown key, did you mean 'idle_threshold'?"
    ]
