"""Monitor windows: validation, and merging windows into a longer span exactly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from pydantic import ValidationError

from shared.latency import percentile
from shared.monitoring import MonitorWindow, merge_histograms, merge_windows, window_latency
from shared.schema import LatencyHistogram
from shared.topics import TopicKind, Topics

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def window(latencies_ms: list[float] | np.ndarray, start_s: float, *, length_s: float = 10.0,
           **extra: object) -> MonitorWindow:
    values = np.asarray(latencies_ms, dtype=float)
    histogram = LatencyHistogram.of(values * 1e6) if len(values) else None
    fields: dict[str, object] = dict(
        device_id="pi-1", fleet="lab", name="vww", start=T0 + timedelta(seconds=start_s),
        end=T0 + timedelta(seconds=start_s + length_s), queries=len(values), latencies=histogram,
        latency_ms=window_latency(histogram), throughput_sps=len(values) / length_s)
    fields.update(extra)
    return MonitorWindow.model_validate(fields)


def test_merged_histogram_equals_the_histogram_of_all_latencies() -> None:
    rng = np.random.default_rng(7)
    parts = [rng.lognormal(1.5, 0.4, size=n) for n in (300, 1, 1200, 57)]
    merged = merge_windows([window(p, 10 * i) for i, p in enumerate(parts)])
    everything = np.concatenate(parts)
    assert merged.latencies == LatencyHistogram.of(everything * 1e6)
    assert merged.queries == len(everything)
    assert merged.start == T0 and merged.end == T0 + timedelta(seconds=40)
    exact_p99 = percentile(np.sort(everything), 0.99)
    assert merged.latency_ms is not None
    assert merged.latency_ms.p99 == pytest.approx(exact_p99, rel=0.01)


def test_merge_weights_throughput_and_power_by_duration() -> None:
    a = window([1.0] * 100, 0, length_s=10, power_w=2.0, power_source="ina3221",
               temperature_c=50, throttled=False)
    b = window([1.0] * 300, 10, length_s=30, power_w=4.0, power_source="ina3221",
               temperature_c=61.5, throttled=True)
    merged = merge_windows([a, b])
    assert merged.throughput_sps == pytest.approx(400 / 40)
    assert merged.power_w == pytest.approx((2 * 10 + 4 * 30) / 40)
    assert merged.power_source == "ina3221"
    assert merged.temperature_c == 61.5
    assert merged.throttled is True


def test_merging_is_associative() -> None:
    rng = np.random.default_rng(3)
    ws = [window(rng.exponential(2.0, size=200), 10 * i) for i in range(4)]
    left = merge_windows([merge_windows(ws[:2]), merge_windows(ws[2:])])
    assert left.latencies == merge_windows(ws).latencies


def test_windows_of_different_monitors_do_not_merge() -> None:
    with pytest.raises(ValueError, match="different devices or monitors"):
        merge_windows([window([1.0], 0), window([1.0], 10, name="other")])


def test_an_empty_window_has_no_histogram_and_merges() -> None:
    empty = window([], 0)
    assert empty.latencies is None and empty.latency_ms is None
    merged = merge_windows([empty, window([2.0, 3.0], 10)])
    assert merged.queries == 2


def test_histograms_of_different_resolutions_do_not_add() -> None:
    a = LatencyHistogram.of([1e6], rel_error=0.01)
    b = LatencyHistogram.of([1e6], rel_error=0.02)
    with pytest.raises(ValueError, match="rel_error"):
        merge_histograms([a, b])


def test_a_histogram_that_disagrees_with_queries_is_refused() -> None:
    with pytest.raises(ValidationError, match="holds 2 queries"):
        window([1.0, 2.0], 0, queries=5)


def test_a_window_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError, match="before start"):
        window([1.0], 0, end=T0 - timedelta(seconds=1))


def test_queries_without_a_histogram_are_refused() -> None:
    with pytest.raises(ValidationError, match="no latencies"):
        window([], 0, queries=3)


def test_a_window_round_trips_through_json() -> None:
    original = window([1.5, 2.5, 9.0], 0, power_w=3.2, power_estimated=True)
    assert MonitorWindow.model_validate_json(original.model_dump_json()) == original


def test_monitor_windows_have_their_own_topic() -> None:
    topic = Topics.monitor("lab", "pi-1")
    assert topic == "edgemeter/v1/lab/pi-1/monitor"
    parsed = Topics.parse(topic)
    assert parsed is not None and parsed.kind is TopicKind.MONITOR
