"""GPU cost accrued over simulated time, idle cost, and NVML error counting.

Simulated: the GPUs (the fake libnvidia-ml.so.1 bound to pynvml's real bindings in this
process) and time (an injected clock). The collector is the real one, read through a
private prometheus_client registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from aispend import metrics
from aispend.config import Prices, load_config
from aispend.exporters.gpu.collector import GpuCollector, GpuConfig
from aispend.exporters.gpu.settings import GpuAttribution, GpuSettings
from aispend.gpu_prices import DEFAULT_GPU_HOURLY_PRICES
from tests.gpu.conftest import POD_UID, state, write_state
from tests.gpu.helpers import Key, key, samples
from tests.gpu.test_exporter_once import G0, G1

A100_PRICE = DEFAULT_GPU_HOURLY_PRICES["NVIDIA A100-SXM4-40GB"]
H100_PRICE = 6.5  # prices.gpu in the test config


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_collector(config_path: Path, clock: Clock) -> tuple[GpuCollector, CollectorRegistry]:
    config = load_config(config_path)
    gpu_config = GpuConfig(config.sources.gpu or GpuSettings(), config.prices, config.currency)
    collector = GpuCollector(lambda: gpu_config, clock=clock, wall_clock=lambda: 1.7e9)
    registry = CollectorRegistry()
    registry.register(collector)
    return collector, registry


class Scrapes:
    """One scrape of the registry at a time, read into exact samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.text = ""
        self.samples: dict[Key, float] = {}

    def scrape(self) -> None:
        self.text = generate_latest(self.registry).decode()
        self.samples = samples(self.text)

    def __call__(self, name: str, labels: dict[str, str]) -> float | None:
        return self.samples.get(key(name, **labels))


def scrape_once(config: Path) -> Scrapes:
    """One scrape of a fresh collector (its clocks start at it: no cost yet)."""
    collector, registry = make_collector(config, Clock(0.0))
    value = Scrapes(registry)
    try:
        value.scrape()
    finally:
        collector.close()
    return value


def test_cost_and_idle_cost_accrue_over_simulated_time(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path]
) -> None:
    clock = Clock(1000.0)
    collector, registry = make_collector(gpu_env["config"], clock)
    cost, idle = metrics.GPU_COST.name, metrics.GPU_IDLE_COST.name
    value = Scrapes(registry)
    try:
        value.scrape()  # the first scrape starts the clocks
        assert value(cost, G0) == 0.0

        clock.now += 1800  # half an hour: GPU 0 idle (0 %), GPU 1 busy (87 %)
        value.scrape()
        assert value(cost, G0) == pytest.approx(A100_PRICE * 0.5)
        assert value(idle, G0) == pytest.approx(A100_PRICE * 0.5)
        assert value(cost, G1) == pytest.approx(H100_PRICE * 0.5)
        assert value(idle, G1) == 0.0

        data = state()
        data["devices"][0]["utilization_gpu"] = 50  # busy now
        data["devices"][1]["utilization_gpu"] = 4  # below the 5 % idle threshold
        write_state(fake_nvml_loaded, data)
        clock.now += 900  # a quarter of an hour
        value.scrape()
        assert value(cost, G0) == pytest.approx(A100_PRICE * 0.75)
        assert value(idle, G0) == pytest.approx(A100_PRICE * 0.5)
        assert value(cost, G1) == pytest.approx(H100_PRICE * 0.75)
        assert value(idle, G1) == pytest.approx(H100_PRICE * 0.25)
        assert value(metrics.GPU_UTILIZATION.name, G1) == 0.04

        # Utilisation unreadable: the GPU still costs, but is never counted idle.
        data["devices"][1]["errors"]["nvmlDeviceGetUtilizationRates"] = 3
        write_state(fake_nvml_loaded, data)
        clock.now += 3600
        value.scrape()
        assert value(cost, G1) == pytest.approx(H100_PRICE * 1.75)
        assert value(idle, G1) == pytest.approx(H100_PRICE * 0.25)
        assert (
            'aispend_gpu_utilization_ratio{Hostname="gpu-node-1",UUID="GPU-5e1f' not in value.text
        )
    finally:
        collector.close()


def test_errors_are_counted_per_call_and_lost_or_unpriced_gpus_do_not_break_the_scrape(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path]
) -> None:
    data = state()
    data["devices"].append({"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-lost", "lost": True})
    data["devices"].append(
        {"name": "NVIDIA GeForce RTX 4090", "uuid": "GPU-4090", "utilization_gpu": 10}
    )
    write_state(fake_nvml_loaded, data)
    collector, registry = make_collector(gpu_env["config"], Clock(0.0))
    errors = metrics.GPU_NVML_ERRORS.name
    value = Scrapes(registry)
    try:
        for _ in range(4):
            value.scrape()
        assert value(errors, {"call": "nvmlDeviceGetPowerUsage"}) == 4
        assert value(errors, {"call": "nvmlDeviceGetTemperature"}) == 4
        # The lost GPU: no name, no UUID, so no labels: skipped whole, counted.
        assert value(errors, {"call": "nvmlDeviceGetName"}) == 4
        assert value(errors, {"call": "nvmlDeviceGetUUID"}) == 4
        assert value(metrics.EXPORTER_UP.name, {"source": "gpu"}) == 1.0
        rtx = {
            **G0,
            "gpu": "3",
            "UUID": "GPU-4090",
            "model_name": "NVIDIA GeForce RTX 4090",
        }
        assert value(metrics.GPU_UTILIZATION.name, rtx) == 0.1
        # No price for this model anywhere: no hourly cost and no cost series.
        assert value(metrics.GPU_HOURLY_COST.name, rtx) is None
        assert value(metrics.GPU_COST.name, rtx) is None
        assert "GPU-lost" not in value.text
    finally:
        collector.close()


def _seen_away_nine_hours_seen(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path], away: dict[str, Any]
) -> tuple[Scrapes, set[float | None]]:
    """An hour seen, 9 hours with `away` merged into the fake's state, then an hour seen
    again: the last scrape, and the exporter's `up` values while away."""
    clock = Clock(0.0)
    collector, registry = make_collector(gpu_env["config"], clock)
    value = Scrapes(registry)
    try:
        value.scrape()
        clock.now += 3600
        value.scrape()
        write_state(fake_nvml_loaded, {**state(), **away})
        ups = set()
        for _ in range(9):
            clock.now += 3600
            value.scrape()
            ups.add(value(metrics.EXPORTER_UP.name, {"source": "gpu"}))
        write_state(fake_nvml_loaded, state())
        value.scrape()  # seen again: the clocks start here
        clock.now += 3600
        value.scrape()
    finally:
        collector.close()
    return value, ups


def test_a_gpu_that_goes_away_is_not_charged_for_its_absence(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path]
) -> None:
    """GPU 1 is lost (no UUID: skipped whole) for 9 hours between two present hours: it
    is charged for the 2 hours it was seen, not 11 (gone longer than MAX_GAP_SECONDS)."""
    devices = state()["devices"]
    devices[1]["lost"] = True
    value, ups = _seen_away_nine_hours_seen(fake_nvml_loaded, gpu_env, {"devices": devices})
    assert ups == {1.0}  # the other GPU is read
    assert value(metrics.GPU_COST.name, G1) == pytest.approx(H100_PRICE * 2)
    assert value(metrics.GPU_COST.name, G0) == pytest.approx(A100_PRICE * 11)


def test_a_driver_outage_is_not_charged_in_one_lump_when_nvml_returns(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path]
) -> None:
    """The driver is unloaded for 9 hours (NVML answers DRIVER_NOT_LOADED) between two
    seen hours: the first read after it charged all 9 at once, as idle cost for an idle
    GPU. Gone longer than accrual.MAX_GAP_SECONDS: its clock starts again when seen."""
    errors = {"nvmlDeviceGetCount_v2": pynvml.NVML_ERROR_DRIVER_NOT_LOADED}
    value, ups = _seen_away_nine_hours_seen(fake_nvml_loaded, gpu_env, {"errors": errors})
    assert ups == {0.0}
    assert value(metrics.GPU_COST.name, G1) == pytest.approx(H100_PRICE * 2)
    assert value(metrics.GPU_COST.name, G0) == pytest.approx(A100_PRICE * 2)
    assert value(metrics.GPU_IDLE_COST.name, G0) == pytest.approx(A100_PRICE * 2)


def _latin1_process_name(state_file: Path) -> None:
    data = state()
    data["devices"][1]["processes"][1]["name"] = "train-NAME"
    state_file.write_bytes(json.dumps(data).encode().replace(b"train-NAME", b"train-\xe9"))


def test_a_process_name_that_is_not_utf8_does_not_fail_the_scrape(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path]
) -> None:
    """A process may name itself in any bytes (here Latin-1 "train-\xe9"); pynvml decodes
    names strictly as UTF-8. The fake library hands the raw bytes over, as the driver
    does: the process keeps its memory series, with the bad byte replaced."""
    _latin1_process_name(fake_nvml_loaded)
    value = scrape_once(gpu_env["config"])
    process = {**G1, "pid": "4343", "process_name": "train-\ufffd", "pod": "", "namespace": ""}
    assert value(metrics.GPU_PROCESS_MEMORY.name, process) == 16 * 1024**3
    assert value(metrics.EXPORTER_UP.name, {"source": "gpu"}) == 1.0
    assert value(metrics.GPU_NVML_ERRORS.name, {"call": "nvmlSystemGetProcessName"}) is None


def test_an_undecodable_string_from_a_pynvml_without_the_raw_call_is_a_counted_error(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pynvml whose string call has no undecorated `__wrapped__` (simulated by a plain
    wrapper around the real one): the decode error is counted, the process kept unnamed."""
    _latin1_process_name(fake_nvml_loaded)
    decoding = pynvml.nvmlSystemGetProcessName
    monkeypatch.setattr(pynvml, "nvmlSystemGetProcessName", lambda pid: decoding(pid))
    value = scrape_once(gpu_env["config"])
    process = {**G1, "pid": "4343", "process_name": "", "pod": "", "namespace": ""}
    assert value(metrics.GPU_PROCESS_MEMORY.name, process) == 16 * 1024**3
    assert value(metrics.GPU_NVML_ERRORS.name, {"call": "nvmlSystemGetProcessName"}) == 1


def test_nvml_failing_after_start_up_is_logged_once_and_initialised_again(
    fake_nvml_loaded: Path,
    gpu_env: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a good scrape the driver goes away under the exporter: the fake library's
    nvmlDeviceGetCount_v2 answers NVML_ERROR_DRIVER_NOT_LOADED (9). nvmlInit is wrapped
    only to count how often the collector initialises NVML."""
    inits = []
    real_init = pynvml.nvmlInit
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: inits.append(1) or real_init())
    collector, registry = make_collector(gpu_env["config"], Clock(0.0))
    value = Scrapes(registry)
    up = (metrics.EXPORTER_UP.name, {"source": "gpu"})
    try:
        value.scrape()
        assert (value(*up), len(inits)) == (1.0, 1)

        data = state()
        data["errors"] = {"nvmlDeviceGetCount_v2": pynvml.NVML_ERROR_DRIVER_NOT_LOADED}
        write_state(fake_nvml_loaded, data)
        with caplog.at_level("INFO", logger="aispend.exporters.gpu.collector"):
            value.scrape()
            assert value(*up) == 0.0
            value.scrape()  # the same reason: not logged again
            assert value(*up) == 0.0
            assert len(inits) == 2  # the failed scrape shut NVML down; the next re-inits
            del data["errors"]
            write_state(fake_nvml_loaded, data)
            value.scrape()
        assert value(*up) == 1.0
        assert len(inits) == 3
        assert value(metrics.GPU_NVML_ERRORS.name, {"call": "nvmlDeviceGetCount"}) == 2
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            (
                "ERROR",
                'NVML unavailable, exporting aispend_exporter_up{source="gpu"} 0: '
                "the NVIDIA kernel driver is not loaded (after start-up)",
            ),
            ("INFO", "NVML available again"),
        ]
    finally:
        collector.close()


def test_utilisation_not_supported_on_a_mig_gpu_is_not_an_error(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path]
) -> None:
    """NVML answers NOT_SUPPORTED for the utilisation of a MIG-enabled GPU (GPU 0 here):
    its normal answer, not counted. The same answer on GPU 1 (no MIG) is an error."""
    data = state()
    for device in data["devices"]:
        device["errors"]["nvmlDeviceGetUtilizationRates"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    write_state(fake_nvml_loaded, data)
    collector, registry = make_collector(gpu_env["config"], Clock(0.0))
    value = Scrapes(registry)
    try:
        for _ in range(2):
            value.scrape()
        assert value(metrics.GPU_NVML_ERRORS.name, {"call": "nvmlDeviceGetUtilizationRates"}) == 2
        assert value(metrics.GPU_UTILIZATION.name, G0) is None
        assert value(metrics.GPU_MEMORY_TOTAL.name, G0) == 40 * 1024**3
        assert value(metrics.GPU_MIG_MEMORY_USED.name, {**G0, "gpu_instance": "3"}) == 2 * 1024**3
    finally:
        collector.close()


def _break_one_read(data: dict[str, Any], where: str) -> None:
    if where == "uuid":
        data["devices"][1]["errors"]["nvmlDeviceGetUUID"] = 999  # NVML_ERROR_UNKNOWN
    else:
        data["errors"] = {"nvmlDeviceGetCount_v2": 999}


@pytest.mark.parametrize("where", ["uuid", "count"])
def test_one_failed_read_loses_no_cost(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path], where: str
) -> None:
    """Ten scrapes 60 s apart (540 s); the fifth meets one NVML_ERROR_UNKNOWN from the
    fake library: on GPU 1's UUID read (GPU 1 is skipped in that read), or on
    nvmlDeviceGetCount (no GPU is read, up 0). Every GPU is charged the whole 540 s:
    the failed read cost two intervals before (420 s)."""
    clock = Clock(0.0)
    collector, registry = make_collector(gpu_env["config"], clock)
    value = Scrapes(registry)
    try:
        for i in range(10):
            data = state()
            if i == 4:
                _break_one_read(data, where)
            write_state(fake_nvml_loaded, data)
            value.scrape()
            clock.now += 60
    finally:
        collector.close()
    assert value(metrics.GPU_COST.name, G1) == pytest.approx(H100_PRICE * 540 / 3600)
    assert value(metrics.GPU_COST.name, G0) == pytest.approx(A100_PRICE * 540 / 3600)


def test_node_name_is_the_hostname_when_config_sets_none(
    fake_nvml_loaded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a Kubernetes DaemonSet the exporter's hostname is its pod's name; NODE_NAME
    (set from the downward API, spec.nodeName) is the node's, which `host:` names."""
    monkeypatch.setenv("NODE_NAME", "gpu-node-7")
    settings = GpuSettings(attribution=[GpuAttribution(host="gpu-node-7", team="search")])
    config = GpuConfig(settings, Prices())
    collector = GpuCollector(lambda: config, clock=Clock(0.0), wall_clock=lambda: 1.7e9)
    registry = CollectorRegistry()
    registry.register(collector)
    value = Scrapes(registry)
    try:
        value.scrape()
    finally:
        collector.close()
    labels = {**G0, metrics.HOSTNAME: "gpu-node-7", metrics.TEAM: "search"}
    assert value(metrics.GPU_COST.name, labels) == 0.0


def test_pod_uid_and_gpu_uuid_keys_in_other_spellings_still_attribute(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path]
) -> None:
    """The pod key as a systemd slice writes it (underscores) in upper case, and GPU 0's
    UUID in upper case: both attribute (they matched nothing before). Simulated /proc:
    process 4242's cgroup names POD_UID."""
    text = gpu_env["config"].read_text()
    text = text.replace(POD_UID, POD_UID.upper().replace("-", "_"))
    uuid = G0[metrics.GPU_UUID]
    text = text.replace(
        "      - {host: other-node, team: research}\n",
        f"      - {{uuid: '{uuid.upper()}', team: research}}\n",
    )
    gpu_env["config"].write_text(text)
    value = scrape_once(gpu_env["config"])
    assert value(metrics.GPU_COST.name, {**G0, metrics.TEAM: "research"}) == 0.0
    process = {**G1, "pid": "4242", "process_name": "python3", "pod": "trainer-0"}
    research = {metrics.TEAM: "research", metrics.PROJECT: "finetune", "namespace": "ml"}
    assert value(metrics.GPU_PROCESS_MEMORY.name, {**process, **research}) == 32 * 1024**3


def test_a_process_without_a_memory_figure_is_exported_with_zero(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path]
) -> None:
    """The fake library answers NVML_VALUE_NOT_AVAILABLE for process 4242's usedGpuMemory
    (pynvml turns it into None): the process and its pod are still exported, at 0 bytes,
    so the idle-GPU rule still knows the pod is on the GPU."""
    data = state()
    data["devices"][1]["processes"][0]["used_memory"] = None
    write_state(fake_nvml_loaded, data)
    value = scrape_once(gpu_env["config"])
    process = {**G1, "pid": "4242", "process_name": "python3", "pod": "trainer-0"}
    research = {metrics.TEAM: "research", metrics.PROJECT: "finetune", "namespace": "ml"}
    assert value(metrics.GPU_PROCESS_MEMORY.name, {**process, **research}) == 0.0


def test_another_gpu_at_an_attributed_index_is_logged(
    fake_nvml_loaded: Path, gpu_env: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """attribution `{host: gpu-node-1, gpu: 1, team: search}`: the fake library's GPU at
    index 1 changes its UUID between reads (GPU 1 was lost, the next one took its index).
    Its cost goes to search as configured, with one warning saying so."""
    collector, registry = make_collector(gpu_env["config"], Clock(0.0))
    value = Scrapes(registry)
    new_uuid = "GPU-9a9a9a9a-2222-4c4c-a222-222222222222"
    try:
        with caplog.at_level("WARNING", logger="aispend.exporters.gpu.collector"):
            value.scrape()
            value.scrape()  # the same GPU: nothing to say
            data = state()
            data["devices"][1]["uuid"] = new_uuid
            write_state(fake_nvml_loaded, data)
            value.scrape()
            value.scrape()  # said once
    finally:
        collector.close()
    assert value(metrics.GPU_COST.name, {**G1, metrics.GPU_UUID: new_uuid}) == 0.0
    assert [r.getMessage() for r in caplog.records] == [
        f"sources.gpu.attribution: GPU index 1 on gpu-node-1 is now {new_uuid} (was"
        f" {G1[metrics.GPU_UUID]}), and its cost goes to team 'search': an index names a"
        " slot, not a GPU; attribute by uuid: to follow a GPU"
    ]
