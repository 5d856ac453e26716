"""Pure parts of the GPU exporter: cgroup parsing, attribution, prices, accrual, config."""

from __future__ import annotations

import socket

import pytest

from aispend.config import ConfigError, Prices, parse_config
from aispend.exporters.gpu.accrual import MAX_GAP_SECONDS, CostAccrual
from aispend.exporters.gpu.cgroup import Workload, parse_cgroup, workload_of
from aispend.exporters.gpu.settings import GpuAttribution, GpuSettings
from aispend.gpu_prices import DEFAULT_GPU_HOURLY_PRICES, gpu_hourly_price
from tests.conftest import EXAMPLE_CONFIG

POD = "0b8f5a0c-1c2d-4e5f-8a9b-0123456789ab"
CID = "3f1e" * 16
GPU_A, GPU_B, GPU_C = (f"GPU-8c3e5d2a-1111-4b4b-9111-11111111111{n}" for n in "abc")


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


def _owner(settings: GpuSettings, host: str, index: int, uuid: str) -> tuple[str, str] | None:
    """(team, project) of a GPU by its first matching attribution entry."""
    entry = settings.entry_for(host, index, uuid)
    return None if entry is None else (entry.team, entry.project or "")


def test_attribution_first_match_wins() -> None:
    settings = GpuSettings(
        attribution=[
            GpuAttribution(host="n1", uuid=GPU_A, team="research", project="evals"),
            GpuAttribution(host="n1", gpu=1, team="search", project="ranking"),
            GpuAttribution(host="n1", team="growth"),
        ]
    )
    assert _owner(settings, "n1", 0, GPU_A) == ("research", "evals")
    assert _owner(settings, "n1", 1, GPU_B) == ("search", "ranking")
    assert _owner(settings, "n1", 2, GPU_C) == ("growth", "")
    assert _owner(settings, "n2", 1, GPU_A) is None


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


def test_accrual_charges_a_short_absence_in_full() -> None:
    """Missing from reads for up to MAX_GAP_SECONDS (one failed scrape, a short NVML
    outage): the whole time since last seen is charged when the GPU is back."""
    now = [0.0]
    accrual = CostAccrual(lambda: now[0])
    labels = ("0", GPU_A)
    accrual.observe(GPU_A, labels, 3.6, idle=False)
    for t in (60.0, 120.0, 360.0):  # missed by three reads, the first 300 s before its return
        now[0] = t
        accrual.missing(set())
    assert accrual.tracked() == {GPU_A}
    now[0] = 60.0 + MAX_GAP_SECONDS
    accrual.observe(GPU_A, labels, 3.6, idle=True)  # 360 s at 3.6/h, idle now
    totals = accrual.totals()[labels]
    assert (totals.cost, totals.idle_cost) == (pytest.approx(0.36), pytest.approx(0.36))


def test_accrual_restarts_the_clock_after_a_long_absence_and_forgets_the_gpu() -> None:
    """Missing for longer than the gap (a driver outage, a GPU off the bus): no lump
    charge when it is back, and its clock is dropped once a read finds it gone that long."""
    now = [0.0]
    accrual = CostAccrual(lambda: now[0])
    labels = ("0", GPU_A)
    accrual.observe(GPU_A, labels, 3.6, idle=False)
    now[0] = 60.0
    accrual.missing({GPU_B})  # GPU_B is not tracked: nothing to mark
    now[0] = 60.0 + MAX_GAP_SECONDS + 1
    accrual.observe(GPU_A, labels, 3.6, idle=False)  # back, but too late: clock restarts
    assert accrual.totals()[labels].cost == 0.0
    now[0] += 100
    accrual.observe(GPU_A, labels, 3.6, idle=False)  # seen in the previous read: 100 s
    assert accrual.totals()[labels].cost == pytest.approx(0.1)

    accrual.missing(set())
    assert accrual.tracked() == {GPU_A}
    now[0] += MAX_GAP_SECONDS + 1
    accrual.missing(set())
    assert accrual.tracked() == set()  # memory stays bounded


def test_settings_host_is_hostname_then_node_name_then_gethostname() -> None:
    """In a Kubernetes DaemonSet, gethostname() is the pod's name; NODE_NAME (downward
    API, spec.nodeName) names the node."""
    node = {"NODE_NAME": "gpu-node-7"}
    assert GpuSettings(hostname="gpu-node-1").host(node) == "gpu-node-1"
    assert GpuSettings().host(node) == "gpu-node-7"
    assert GpuSettings().host({"NODE_NAME": " "}) == socket.gethostname()
    assert GpuSettings().host({}) == socket.gethostname()


def _gpu_config(body: str) -> GpuSettings:
    config = parse_config("teams: [{name: search}]\nsources:\n  gpu:\n" + body)
    assert config.sources.gpu is not None
    return config.sources.gpu


def test_pod_uids_are_normalised_to_the_cgroup_form() -> None:
    """Upper case (as some tools print it) and a systemd slice's underscores are the same
    uid the exporter reads from /proc/<pid>/cgroup: lower case with dashes."""
    other = "1" + POD[1:]
    gpu = _gpu_config(
        f"    pods:\n      {POD.upper()}: {{team: search}}\n"
        f"      {other.replace('-', '_')}: {{team: search}}\n"
    )
    assert list(gpu.pods) == [POD, other]
    systemd_path = f"0::/kubepods.slice/kubepods-pod{other.replace('-', '_')}.slice/x.scope\n"
    assert parse_cgroup(systemd_path).pod_uid in gpu.pods


@pytest.mark.parametrize(
    ("pods", "message"),
    [
        (
            "{trainer-2: {team: search}}",
            "'trainer-2' is not a pod uid (8-4-4-4-12 hex digits, as in metadata.uid)",
        ),
        (
            f"{{{POD}: {{team: search}}, {POD.upper()}: {{team: search}}}}",
            f"'{POD}' and '{POD.upper()}' are the same pod uid",
        ),
    ],
)
def test_pod_keys_that_can_never_match_are_refused(pods: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"teams: [{{name: search}}]\nsources: {{gpu: {{pods: {pods}}}}}\n")
    assert [str(i) for i in err.value.issues] == [f"sources.gpu.pods: {message}"]


def test_gpu_uuid_case_is_normalised_and_matches_nvml() -> None:
    gpu = _gpu_config(f"    attribution: [{{uuid: '{GPU_A.upper()}', team: search}}]\n")
    assert gpu.attribution[0].uuid == GPU_A
    assert _owner(gpu, "n1", 0, GPU_A) == ("search", "")


@pytest.mark.parametrize(
    ("uuid", "message"),
    [
        (GPU_A[4:], f"'{GPU_A[4:]}' lacks NVML's prefix: write '{GPU_A}'"),
        (
            "MIG-" + GPU_A[4:],
            f"'MIG-{GPU_A[4:]}' is a MIG device: attribution is per GPU, give the UUID of"
            " its GPU (the GPU-... line above it in `nvidia-smi -L`)",
        ),
        (
            "GPU-x",
            "'GPU-x' is not a GPU UUID (GPU- and 8-4-4-4-12 hex digits, as `nvidia-smi -L`"
            " shows it)",
        ),
    ],
)
def test_gpu_uuids_that_can_never_match_are_refused(uuid: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _gpu_config(f"    attribution: [{{uuid: '{uuid}', team: search}}]\n")
    assert [str(i) for i in err.value.issues] == [f"sources.gpu.attribution[0].uuid: {message}"]


def test_the_example_gpu_section_is_valid_once_uncommented() -> None:
    """aispend.example.yaml documents sources.gpu commented out; its keys must load."""
    lines, inside = [], False
    for line in EXAMPLE_CONFIG.read_text(encoding="utf-8").splitlines():
        if line == "  # gpu:":
            inside, line = True, "  gpu:"
        elif inside and line.startswith("  #   "):
            line = "  " + line[len("  # ") :]
        else:
            inside = False
        lines.append(line)
    gpu = parse_config("\n".join(lines) + "\n").sources.gpu
    assert gpu is not None and len(gpu.attribution) == 3 and len(gpu.pods) == 1
