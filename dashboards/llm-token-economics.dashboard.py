"""LLM token economics: tokens, cost per request and its distribution, cache reads,
errors, throttles and what the gateway itself costs in latency."""

from grafanalib import core as g

from aispend import metrics as m
from aispend.dashboards import defaults as d
from aispend.dashboards import queries as q
from aispend.dashboards import refs as r
from aispend.dashboards.panels import Query, Row, layout, timeseries

TEAM = q.TEAM
MODEL = q.MODEL


def build(ctx: d.Context) -> g.Dashboard:
    money = ctx.money
    volume = Row(
        "Volume",
        [
            timeseries(
                r.TOKENS_BY_MODEL_AND_TYPE.title,
                "LLM tokens per second by model and token type (input = uncached prompt,"
                " cached_input = cache reads, output = all output, reasoning included;"
                " reasoning = the part of output spent on reasoning). Not stacked:"
                " reasoning is inside output.",
                d.TOKENS_PER_SEC,
                Query(
                    q.tokens_per_second((m.MODEL, m.TOKEN_TYPE), TEAM, MODEL),
                    legend="{{model}} {{token_type}}",
                ),
            ),
            timeseries(
                r.REQUESTS_BY_MODEL_AND_STATUS.title,
                "LLM requests per second by model and the HTTP status returned to the client.",
                d.REQ_PER_SEC,
                Query(
                    q.requests_per_second((m.MODEL, m.STATUS), TEAM, MODEL),
                    legend="{{model}} {{status}}",
                ),
                stacked=True,
            ),
        ],
    )
    cost = Row(
        "Cost per request",
        [
            timeseries(
                "Cost per 1k requests, by model",
                "LLM spend per 1000 requests, by model: what a unit of work costs. "
                + q.COST_PER_REQUEST_SCOPE,
                money,
                Query(q.cost_per_1k_requests((m.MODEL,), TEAM, MODEL), legend="{{model}}"),
            ),
            timeseries(
                r.REQUEST_COST_QUANTILES.title,
                "Quantiles of the cost of one request, from the gateway's request-cost"
                " histogram (interpolated within buckets).",
                money,
                *(
                    Query(q.request_cost_quantile(p, TEAM, MODEL), legend=f"p{round(p * 100)}")
                    for p in (0.5, 0.95, 0.99)
                ),
            ),
            timeseries(
                r.CACHE_READ_SHARE.title,
                "Cache-read input tokens as a share of all input tokens: higher is cheaper.",
                d.RATIO,
                Query(q.cache_read_share((m.MODEL,), TEAM, MODEL), legend="{{model}}"),
            ),
        ],
    )
    quality = Row(
        "Errors, throttles and overhead",
        [
            timeseries(
                "Non-2xx share, by model",
                "Share of requests answered with anything but 2xx (upstream errors,"
                " throttles, client errors), by model.",
                d.RATIO,
                Query(q.non_2xx_share((m.MODEL,), TEAM, MODEL), legend="{{model}}"),
            ),
            timeseries(
                "Throttled requests, by team",
                "Requests refused with 429 by a throttle rule, per second. " + d.ALERT_ONLY,
                d.REQ_PER_SEC,
                Query(q.throttled_per_second((m.TEAM,), TEAM), legend="{{team}}"),
            ),
            timeseries(
                "Gateway overhead p50 / p99",
                "Time a request spends in the gateway itself (upstream excluded): the cost"
                " of metering.",
                d.SECONDS,
                *(
                    Query(q.gateway_overhead_quantile(p), legend=f"p{round(p * 100)}")
                    for p in (0.5, 0.99)
                ),
            ),
            timeseries(
                "Request duration p95, by model",
                "95th percentile of the whole operation (upstream included), by model.",
                d.SECONDS,
                Query(
                    q.operation_duration_quantile(0.95, (m.GEN_AI_REQUEST_MODEL,), TEAM, MODEL),
                    legend="{{gen_ai_request_model}}",
                ),
            ),
        ],
    )
    return d.dashboard(
        "llm-token-economics",
        "Tokens, cost per request and its distribution, cache reads, errors, throttles and"
        " the gateway's own overhead.",
        layout(volume, cost, quality),
        [d.llm_team_variable(), d.model_variable()],
        time_from="now-6h",
    )
