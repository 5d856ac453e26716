"""RunawaySpend's detection latency, derived from the tunables (docs/runbooks.md section).

The figures come from the rule's tunables and the intervals of the shipped configs
(`PIPELINE`; tests/rules checks it against deploy/prometheus.yml and
deploy/alertmanager.yml), so the text cannot drift from the rule. The example jump
(`JUMP`) and the agent's normal spend as a share of its team's budget pace
(`NORMAL_SHARE`) are stated assumptions, not measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aispend.rules.anomaly import RUNAWAY_LEVEL, name
from aispend.rules.promql import num, seconds
from aispend.rules.tunables import Tunables


@dataclass(frozen=True)
class Pipeline:
    """Intervals between a spend jump and the actuator's webhook, in seconds."""

    scrape: int = 15
    """deploy/prometheus.yml global scrape_interval."""
    evaluation: int = 15
    """deploy/prometheus.yml global evaluation_interval (every aispend rule group that
    RunawaySpend reads, and the alerts, use it)."""
    group_wait: int = 5
    """deploy/alertmanager.yml: group_wait of the route to the actuator."""


PIPELINE = Pipeline()
JUMP = 20.0
"""Example: the agent's spend rate jumps to this multiple of its normal rate."""
NORMAL_SHARE = 0.3
"""Example: the agent's normal spend as a share of its team's tightest budget pace."""


@dataclass(frozen=True)
class Latency:
    window: int
    """Seconds of the rate window (runaway_rate_window)."""
    fires_after: int
    """Seconds from pending to firing: `for` rounded up to whole evaluations."""
    floor: int
    """Jump to webhook, every wait at its minimum, once both conditions hold."""
    worst: int
    """The same with every wait at its maximum."""
    t_zscore: float
    """Seconds of the jump the window needs before the z-score exceeds runaway_sigma
    (stddev at its floor, prediction = normal spend)."""
    t_burn: float
    """Seconds of the jump the window needs before the agent alone burns
    runaway_burn_factor x its team's pace (normal spend NORMAL_SHARE of the pace)."""


def runaway_latency(t: Tunables, p: Pipeline = PIPELINE) -> Latency:
    window = seconds(t.runaway_rate_window)
    fires_after = math.ceil(seconds(t.runaway_for) / p.evaluation) * p.evaluation
    rise = (JUMP - 1) / window  # the window's rate grows by rise x normal per second
    return Latency(
        window=window,
        fires_after=fires_after,
        floor=fires_after + p.group_wait,
        worst=p.scrape + 2 * p.evaluation + fires_after + p.group_wait,
        t_zscore=t.runaway_sigma * t.min_stddev_ratio / rise,
        t_burn=max(0.0, (t.runaway_burn_factor / NORMAL_SHARE - 1) / rise),
    )


def _s(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def runaway_latency_markdown(t: Tunables, p: Pipeline = PIPELINE) -> str:
    """The runbooks' "Detection latency of RunawaySpend" section."""
    lat = runaway_latency(t, p)
    w, j1 = lat.window, num(JUMP - 1)
    sigma, ratio, burn = num(t.runaway_sigma), num(t.min_stddev_ratio), num(t.runaway_burn_factor)
    share = num(NORMAL_SHARE)
    t_need = max(lat.t_zscore, lat.t_burn)
    zscore = name(RUNAWAY_LEVEL, f"zscore_rate{t.runaway_rate_window}")
    return f"""\
## Detection latency of RunawaySpend

Derived from the tunables `runaway_rate_window` ({t.runaway_rate_window}), `runaway_for` \
({t.runaway_for}),
`runaway_sigma` ({sigma}), `min_stddev_ratio` ({ratio}) and `runaway_burn_factor` ({burn}),
and the shipped configs: scrape every {p.scrape}s and rule evaluation every {p.evaluation}s
(deploy/prometheus.yml), `group_wait: {p.group_wait}s` on Alertmanager's actuator route
(deploy/alertmanager.yml). From the agent's jump, once both conditions of the rule hold:

- the next scrape ingests the higher counters: 0 to {p.scrape} s;
- the next rule evaluation records the agent's {t.runaway_rate_window} spend rate and its
  z-score (`{zscore}`): 0 to {p.evaluation} s;
- the next evaluation of the alerts makes the alert pending: 0 to {p.evaluation} s;
- it fires at the evaluation `for: {t.runaway_for}` later (rounded up to whole
  evaluations): {lat.fires_after} s;
- Alertmanager's actuator route sends it after `group_wait`: {p.group_wait} s.

Floor {lat.fires_after} + {p.group_wait} = **{lat.floor} s**; worst case \
{p.scrape} + 2 x {p.evaluation} + {lat.fires_after} + {p.group_wait} = **{lat.worst} s**;
plus t, the seconds of the jump that the {t.runaway_rate_window} rate must contain before
both conditions hold. For a jump to {num(JUMP)}x the agent's normal spend, the
{t.runaway_rate_window} rate ({w} s) after t seconds is (1 + {j1} t / {w}) x normal:

- The z-score exceeds {sigma}: {j1} t / {w} x normal > {sigma} x stddev. With the stddev at
  its floor ({ratio} x the prediction, the prediction being the normal spend):
  t > {sigma} x {ratio} x {w} / {j1} = {_s(lat.t_zscore)} s. A bursty agent's larger
  stddev delays it in proportion.
- The agent alone burns at least {burn}x its team's tightest budget pace:
  (1 + {j1} t / {w}) x normal >= {burn} x pace, i.e.
  t >= {w} s x ({burn} x pace / normal - 1) / {j1}: {_s(lat.t_burn)} s when the agent's
  normal spend is {share} of the pace; 0 when it already reaches {burn}x the pace; never
  when even {num(JUMP)}x normal stays below it.

With these examples t = {_s(t_need)} s: about {round(lat.floor + t_need)} s to \
{round(lat.worst + t_need)} s from the jump to the actuator's webhook.
Size a demo accordingly.
"""
