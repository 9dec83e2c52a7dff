"""The collector's metrics keep a bounded number of devices, whatever ids or fleets boards send."""

from __future__ import annotations

from collector.metrics import CollectorMetrics


def test_spool_depth_sums_at_most_max_devices_and_counts_the_rest() -> None:
    metrics = CollectorMetrics(max_devices=3)
    for fleet in range(500):  # one board inventing fleets
        metrics.agent_spool(f"fleet-{fleet}", "pi-01", 10)
    assert metrics.spool_depth._value.get() == 30
    assert metrics.untracked._value.get() == 497
    metrics.agent_spool("fleet-0", "pi-01", 1)  # a known one still updates
    assert metrics.spool_depth._value.get() == 21
