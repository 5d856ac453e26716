"""GPU fleet: utilisation per GPU, idle GPUs and what they cost, GPU cost by team,
memory and power."""

from grafanalib import core as g

from aispend import metrics as m
from aispend.dashboards import defaults as d
from aispend.dashboards import queries as q
from aispend.dashboards import refs as r
from aispend.dashboards.panels import ZERO, Query, Row, heatmap, layout, stat, table, timeseries

TEAM = q.TEAM


def build(ctx: d.Context) -> g.Dashboard:
    money = ctx.money
    t = ctx.tunables
    idle = t.gpu_idle_threshold
    summary = Row(
        "Fleet",
        [
            stat(
                "GPUs",
                "GPUs reporting (aispend gpu exporter or dcgm-exporter), utilisation read or not"
                " (a MIG-enabled GPU has none).",
                d.COUNT,
                Query(q.gpu_count(TEAM), instant=True),
                no_value=ZERO,
            ),
            stat(
                "Mean utilisation",
                "Mean utilisation over all GPUs now.",
                d.RATIO,
                Query(q.gpu_mean_utilization(TEAM), instant=True),
            ),
            stat(
                "GPU cost per hour",
                "What the GPUs cost per hour at their hourly price.",
                money,
                Query(q.gpu_cost_rate((), TEAM), instant=True),
                decimals=2,
                no_value=ZERO,
            ),
            stat(
                "Idle GPU cost per hour",
                f"Cost per hour of the GPUs below {idle:.0%} utilisation now (aispend gpu"
                " exporter and dcgm-exporter).",
                money,
                Query(q.gpu_idle_cost_rate(idle, TEAM), instant=True),
                decimals=2,
                no_value=ZERO,
            ),
        ],
        height=5,
    )
    util = Row(
        "Utilisation",
        [
            heatmap(
                r.UTILISATION_PER_GPU.title,
                "One row per GPU (host and index), coloured by utilisation 0..100 %.",
                d.RATIO,
                Query(q.gpu_utilization(TEAM), legend="{{Hostname}} gpu{{gpu}}"),
            ),
        ],
        height=9,
    )
    cost = Row(
        "Cost",
        [
            table(
                r.idle_gpus(idle, t.gpu_idle_for).title,
                "GPUs whose mean utilisation over the idle window is below the idle"
                " threshold, with their hourly price: candidates to release.",
                money,
                Query(q.gpu_idle(idle, t.gpu_idle_for, TEAM), instant=True, table=True),
                columns={"Value": "hourly cost"},
                hide=("Time", "__name__"),
            ),
            timeseries(
                "GPU cost per hour, by team",
                "GPU cost rate by the GPU's team, averaged over each step of the graph"
                " (sources.gpu.attribution; dcgm-exporter"
                " GPUs without a team label: unattributed). Pods in sources.gpu.pods label"
                " only their processes' memory, not the GPU's cost.",
                money,
                Query(q.gpu_cost_rate((m.TEAM,), TEAM, graph=True), legend="{{team}}"),
                stacked=True,
            ),
        ],
        height=8,
    )
    hardware = Row(
        "Memory and power",
        [
            timeseries(
                r.MEMORY_PER_GPU.title,
                "Framebuffer memory used as a share of the GPU's total (aispend's gpu"
                " exporter, or dcgm-exporter's FB_USED / (FB_USED + FB_FREE)).",
                d.RATIO,
                Query(q.gpu_memory_used_ratio(TEAM), legend="{{Hostname}} gpu{{gpu}}"),
            ),
            timeseries(
                "Power draw, per GPU",
                "GPU power draw in watts (aispend's gpu exporter, or dcgm-exporter).",
                d.WATTS,
                Query(q.gpu_power(TEAM), legend="{{Hostname}} gpu{{gpu}}"),
            ),
            timeseries(
                r.NVML_ERRORS.title,
                "NVML calls that failed, per exporter instance and call (aispend's gpu"
                " exporter; every team: a GPU it cannot identify has none). A field a GPU"
                " lacks fails at every read and is harmless; nvmlDeviceGetHandleByIndex,"
                " Name or UUID failing means a GPU that goes unreported (AISpendGPULost). "
                + d.ALERT_ONLY,
                d.COUNT,
                Query(q.nvml_errors_per_second(), legend="{{instance}} {{call}}"),
            ),
        ],
        height=8,
    )
    return d.dashboard(
        "gpu-fleet",
        "GPU utilisation, idle GPUs and their hourly cost, GPU cost by team, memory and power.",
        layout(summary, util, cost, hardware),
        [d.label_variable("team", m.TEAM, m.REC_GPU_PRESENT)],
        time_from="now-6h",
    )
