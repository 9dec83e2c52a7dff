"""EventBus: fan-out, a bounded queue per reader that drops the oldest, close ends a reader."""

from __future__ import annotations

import threading

from collector.events import EventBus


def test_every_subscriber_gets_every_event_in_order_with_growing_seq() -> None:
    bus = EventBus()
    one, two = bus.subscribe(), bus.subscribe()
    bus.publish("status", {"n": 1})
    bus.publish("result", {"n": 2})
    for sub in (one, two):
        events = [sub.get(0), sub.get(0)]
        assert [(e.kind, e.data["n"]) for e in events if e] == [("status", 1), ("result", 2)]
        assert [e.seq for e in events if e] == [1, 2]
        assert sub.get(0) is None


def test_a_slow_reader_loses_its_oldest_events_and_never_blocks_the_publisher() -> None:
    bus = EventBus(queue_events=3)
    slow = bus.subscribe()
    for n in range(10):
        bus.publish("telemetry", {"n": n})  # returns at once although nobody reads
    assert slow.dropped == 7
    kept = [slow.get(0), slow.get(0), slow.get(0)]
    assert [e.data["n"] for e in kept if e] == [7, 8, 9]  # the newest; seq shows the gap
    assert [e.seq for e in kept if e] == [8, 9, 10]


def test_nobody_listening_is_visible_and_publishing_then_costs_nothing_kept() -> None:
    bus = EventBus()
    assert not bus.active
    bus.publish("result", {})
    with bus.subscribe() as sub:
        assert bus.active
        assert sub.get(0) is None  # subscribers see only what comes after they subscribe
    assert not bus.active


def test_close_ends_a_reader_blocked_in_a_for_loop() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.extend(e.data["n"] for e in sub))
    reader.start()
    bus.publish("ack", {"n": 1})
    sub.close()
    reader.join(5)
    assert not reader.is_alive() and seen in ([1], [])
