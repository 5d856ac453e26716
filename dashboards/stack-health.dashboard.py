"""Stack health: are the exporters up and their data fresh, are scrapes and rules
healthy, do notifications go out, does the actuator answer, which requests the gateway
could not meter."""

from grafanalib import core as g

from aispend.dashboards import defaults as d
from aispend.dashboards import queries as q
from aispend.dashboards import refs
from aispend.dashboards.panels import Query, Row, layout, stat, timeseries

UP_STEPS = (("red", None), ("green", 1.0))


def build(ctx: d.Context) -> g.Dashboard:
    up = Row(
        "Up",
        [
            stat(
                "Scrape targets up",
                "Prometheus' `up` for aispend's processes, Prometheus and Alertmanager"
                " (1 = the last scrape succeeded).",
                d.BOOL,
                Query(q.scrape_up(), legend="{{job}} {{instance}}", instant=True),
                thresholds=UP_STEPS,
            ),
            stat(
                "Exporters reading their source",
                "Per source, 1 when the exporter's last read of its"
                " source (API, NVML, config) succeeded.",
                d.BOOL,
                Query(q.exporter_up(), legend="{{source}}", instant=True),
                thresholds=UP_STEPS,
            ),
            stat(
                "Config loaded",
                "1 when the process' last load of aispend.yaml succeeded; 0 while it keeps"
                " an older good config because the file is invalid.",
                d.BOOL,
                Query(q.config_reload_ok(), legend="{{job}}", instant=True),
                thresholds=UP_STEPS,
            ),
        ],
        height=5,
        widths=[10, 8, 6],
    )
    freshness = Row(
        "Freshness and scrapes",
        [
            timeseries(
                "Data age, by source",
                "Seconds since each source (Azure Cost Management, FOCUS, APIM logs, NVML)"
                " was last read successfully; billing data is hours old by nature.",
                d.SECONDS,
                Query(q.data_age(), legend="{{source}}"),
            ),
            timeseries(
                "Config age, by process",
                "Seconds since each process last loaded aispend.yaml successfully.",
                d.SECONDS,
                Query(q.config_age(), legend="{{job}}"),
            ),
            timeseries(
                "Scrape duration, by job",
                "How long Prometheus takes to scrape each aispend process.",
                d.SECONDS,
                Query(q.scrape_duration(), legend="{{job}}"),
            ),
        ],
    )
    rules = Row(
        "Rules, notifications, actuator",
        [
            timeseries(
                refs.RULE_EVALUATION_FAILURES.title,
                "Failed rule evaluations per rule group over each interval (should be 0).",
                d.COUNT,
                Query(q.rule_evaluation_failures(), legend="{{rule_group}}"),
            ),
            timeseries(
                refs.RULE_GROUP_EVALUATION_TIME.title,
                "How long each rule group's last evaluation took (baselines are the heaviest).",
                d.SECONDS,
                Query(q.rule_group_duration(), legend="{{rule_group}}"),
            ),
            timeseries(
                refs.ALERTMANAGER_NOTIFICATIONS.title,
                "Notifications sent and failed per second, by integration (webhook for the"
                " actuator and chat, pager).",
                d.REQ_PER_SEC,
                Query(q.alertmanager_notifications(), legend="{{integration}} sent"),
                Query(q.alertmanager_notifications(failed=True), legend="{{integration}} failed"),
            ),
            timeseries(
                "Actuator webhook answers",
                "Alertmanager deliveries to the actuator per second, by HTTP status it"
                " answered (5xx = Alertmanager retries; 202 = an apply the actuator retries"
                " itself; 4xx = a bad payload or token). " + d.ALERT_ONLY,
                d.REQ_PER_SEC,
                Query(q.actuator_webhook_requests(), legend="{{code}}"),
            ),
        ],
    )
    metering = Row(
        "Gateway metering",
        [
            timeseries(
                refs.REQUESTS_WITHOUT_USAGE.title,
                "Requests per second the gateway forwarded but whose token usage it could"
                " not read: counted with no tokens and no cost, so spend is under-counted"
                " by what they cost. missing_usage: the answer had none (an Azure OpenAI"
                " api-version before 2024-08-01 sends none in streams); client_disconnected:"
                " the client left before the answer ended; timeout, truncated, connection,"
                " too_large, malformed, upstream_error: the provider's answer broke or"
                " failed; none (0): every request's usage was read.",
                d.REQ_PER_SEC,
                Query(q.usage_unknown_per_second(), legend="{{reason}}"),
            ),
        ],
    )
    return d.dashboard(
        "stack-health",
        "Exporters up and fresh, scrape durations, rule evaluation failures, Alertmanager"
        " notifications, the actuator's answers and requests the gateway could not meter.",
        layout(up, freshness, rules, metering),
        time_from="now-6h",
    )
