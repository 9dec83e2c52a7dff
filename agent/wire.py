"""The power trace as it goes on the wire: at most :data:`MAX_TRACE_POINTS` points, rounded.

A power source samples at ``--power-hz`` (20) for the whole timed phase, so the raw trace grows
with the run: 200 points for a standard 10 s run (4.3 KB of JSON, half of a lean result), 12,000 for
a 600 s mlperf run. Every energy figure (``energy_j``, ``avg_power_w``, ``peak_power_w``, ...) is
computed on the device from the raw samples before this step; the trace only draws the run detail's
power chart. So a longer trace is averaged over equal spans of time into at most
:data:`MAX_TRACE_POINTS` points (each at the mean time and mean power of its samples, so the
chart's area, the energy, is kept). Times are rounded to a tenth of the span a point stands for
(at most :data:`TIME_DECIMALS` decimals of a second) and powers to :data:`POWER_DIGITS`
significant digits: 10 mW at 5 W, finer than a chart shows.
"""

from __future__ import annotations

import math

from shared.schema import EnergyReport, PowerTrace

MAX_TRACE_POINTS = 48
"""Most points a trace on the wire holds (a 10 s run at 20 Hz: one point per 0.21 s)."""
TIME_DECIMALS = 3
"""Trace times to the millisecond at most."""
POWER_DIGITS = 3
"""Trace powers to 3 significant digits."""


def _power(value: float) -> float:
    return float(f"{value:.{POWER_DIGITS}g}") if value else 0.0


def thin_trace(trace: PowerTrace, max_points: int = MAX_TRACE_POINTS) -> PowerTrace:
    """``trace`` averaged over equal spans of time into at most ``max_points`` points, rounded."""
    t_s, power_w = trace.t_s, trace.power_w
    decimals = TIME_DECIMALS
    if len(t_s) > max_points:
        start, end = t_s[0], t_s[-1]
        width = (end - start) / max_points or 1.0
        decimals = min(TIME_DECIMALS, max(0, math.ceil(-math.log10(width / 10))))
        sums: dict[int, list[float]] = {}
        for t, p in zip(t_s, power_w, strict=True):
            span = min(max_points - 1, max(0, math.floor((t - start) / width)))
            acc = sums.setdefault(span, [0.0, 0.0, 0.0])
            acc[0] += t
            acc[1] += p
            acc[2] += 1
        t_s = [acc[0] / acc[2] for _, acc in sorted(sums.items())]
        power_w = [acc[1] / acc[2] for _, acc in sorted(sums.items())]
    return PowerTrace(t_s=[round(t, decimals) for t in t_s],
                      power_w=[_power(p) for p in power_w])


def lean_energy(energy: EnergyReport | None) -> EnergyReport | None:
    """The energy block with its trace thinned (every figure as measured)."""
    if energy is None or energy.trace is None:
        return energy
    return energy.model_copy(update={"trace": thin_trace(energy.trace)})
