"""Telemetry: the board's state, and power from the same source a job would use."""

from __future__ import annotations

import time

from agent.daemon.telemetry import TelemetryPower, TelemetryProbe


def snapshot(probe: TelemetryProbe):  # type: ignore[no-untyped-def]
    return probe.snapshot(device_id="pi-1", fleet="lab", spool_depth=3, spool_dropped_total=1,
                          current_job="j1", jobs_queued=2)


def test_telemetry_without_power_says_unmeasured_never_zero() -> None:
    power = TelemetryPower({"power": "none"})
    try:
        t = snapshot(TelemetryProbe(power=power))
    finally:
        power.close()
    assert (t.power_w, t.power_source, t.power_estimated) == (None, None, None)
    assert (t.spool_depth, t.spool_dropped_total, t.current_job, t.jobs_queued) == (3, 1, "j1", 2)
    assert t.memory_total_bytes and t.memory_used_bytes is not None


def test_telemetry_power_is_labelled_with_its_source_and_marked_estimated() -> None:
    power = TelemetryPower({"power": "estimate"})
    probe = TelemetryProbe(power=power)
    try:
        deadline = time.monotonic() + 30
        t = snapshot(probe)
        while t.power_w is None and time.monotonic() < deadline:
            time.sleep(0.6)  # the sampler reads at 2 Hz; a window needs readings inside it
            t = snapshot(probe)
    finally:
        power.close()
    assert t.power_w is not None and t.power_w > 0
    assert (t.power_source, t.power_estimated) == ("estimate", True)


def test_a_power_source_that_cannot_work_leaves_telemetry_running() -> None:
    power = TelemetryPower({"power": "rapl", "sysfs_root": "/nonexistent"})
    try:
        t = snapshot(TelemetryProbe(power=power))
    finally:
        power.close()
    assert t.power_w is None
