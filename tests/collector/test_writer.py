"""The writer: what is stored, in which order it is announced and acknowledged, and its outage
state; with a fake store, a fake listener and a fake clock (no broker, mostly no threads)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from collector.health import Backoff
from collector.inbox import Delivery, Inbox, Item
from collector.ingest import Rejection
from collector.writer import Committed, Writer
from shared.messages import JobAck, Telemetry
from shared.topics import TopicKind, Topics
from tests.collector.conftest import wait_for
from tests.collector.test_service import FakeClock
from tests.collector.test_service_fleet import FleetStore
from tests.factories import make_result


class Recorder:
    """The writer's acker and listener at once: keeps every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        self.calls.append(("ack", sorted(d.mid for d in deliveries)))

    def committed(self, batch: Committed) -> None:
        self.calls.append(("committed", batch))

    def recorded(self, message: Any) -> None:
        self.calls.append(("recorded", message))

    def dead_lettered(self, topic: str, rejection: Rejection) -> None:
        self.calls.append(("dead_lettered", rejection.code))

    def store_retried(self) -> None:
        self.calls.append(("store_retried", None))

    def outage_changed(self) -> None:
        self.calls.append(("outage_changed", None))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]

    def batches(self) -> list[Committed]:
        return [batch for kind, batch in self.calls if kind == "committed"]


def message(kind: TopicKind, payload: BaseModel | bytes, mid: int, device_id: str = "pi-01") -> Item:
    body = payload if isinstance(payload, bytes) else payload.model_dump_json().encode()
    return Item(Topics.build("default", device_id, kind), body, Delivery(1, mid, 1),
                datetime.now(timezone.utc))


def ack(job_id: str, state: str, device_id: str = "pi-01") -> JobAck:
    return JobAck(device_id=device_id, fleet="default", job_id=job_id, state=state)  # type: ignore[arg-type]


def writer(store: FleetStore, recorder: Recorder, clock: FakeClock | None = None,
           window: int = 100) -> Writer:
    return Writer(store, Inbox(window), acker=recorder, listener=recorder,  # type: ignore[arg-type]
                  retry_interval_s=5.0, retry_max_interval_s=20.0, clock=clock or FakeClock())


def test_results_are_announced_after_their_commit_and_acknowledged_after_that() -> None:
    store, recorder = FleetStore(), Recorder()
    results = [make_result(seq=i) for i in range(3)]
    store.run_ids.add(str(results[0].run_id))  # a re-send
    pending = writer(store, recorder).write(
        [message(TopicKind.RESULT, r, mid) for mid, r in enumerate(results, start=1)])
    assert pending == []
    assert recorder.kinds() == ["committed", "ack"]
    batch = recorder.batches()[0]
    assert batch.results == results and batch.new == 2  # duplicates are announced too
    assert recorder.calls[1] == ("ack", [1, 2, 3])


def test_final_job_acks_are_announced_with_the_batch_and_others_are_not() -> None:
    store, recorder = FleetStore(), Recorder()
    items = [message(TopicKind.ACK, ack("j1", "running"), 1),
             message(TopicKind.ACK, ack("j1", "done"), 2),
             message(TopicKind.ACK, ack("j2", "failed"), 3),
             message(TopicKind.ACK, ack("j3", "cancelled"), 4),
             message(TopicKind.RESULT, make_result(seq=1), 5)]
    assert writer(store, recorder).write(items) == []
    assert [a.state for a in store.acks] == ["running", "done", "failed", "cancelled"]
    (batch,) = recorder.batches()
    assert [a.job_id for a in batch.final_acks] == ["j1", "j2", "j3"]
    assert len(batch.results) == 1
    assert recorder.kinds()[-2:] == ["committed", "ack"]
    assert recorder.calls[-1] == ("ack", [1, 2, 3, 4, 5])


def test_a_batch_of_non_final_records_announces_no_commit() -> None:
    store, recorder = FleetStore(), Recorder()
    telemetry = Telemetry(device_id="pi-01", fleet="default", uptime_s=1, spool_depth=0)
    writer(store, recorder).write([message(TopicKind.TELEMETRY, telemetry, 1),
                                   message(TopicKind.ACK, ack("j1", "accepted"), 2)])
    assert recorder.kinds() == ["recorded", "recorded", "ack"]


def test_a_store_failure_keeps_the_batch_unannounced_and_unacknowledged() -> None:
    store, recorder = FleetStore(), Recorder()
    store.down = True
    w = writer(store, recorder)
    items = [message(TopicKind.RESULT, make_result(seq=1), 1),
             message(TopicKind.ACK, ack("j1", "done"), 2)]
    assert w.write(items) == items
    assert recorder.kinds() == ["outage_changed"]
    outage = w.outage()
    assert outage.down and "database is down (test)" in outage.error
    assert w.stats["store_errors"] == 1 and w.stats["stored"] == 0


def test_results_committed_before_a_later_message_fails_are_announced_and_acknowledged() -> None:
    store, recorder = FleetStore(), Recorder()

    def refuse(*_args: Any) -> None:
        from collector.errors import StoreError
        raise StoreError("acks table locked (test)")

    store.record_ack = refuse  # type: ignore[method-assign]
    items = [message(TopicKind.RESULT, make_result(seq=1), 1),
             message(TopicKind.ACK, ack("j1", "done"), 2)]
    pending = writer(store, recorder).write(items)
    assert pending == items[1:]
    assert recorder.kinds() == ["outage_changed", "committed", "ack"]
    assert recorder.batches()[0].final_acks == [] and recorder.calls[-1] == ("ack", [1])


def test_a_dead_letter_is_stored_counted_and_acknowledged() -> None:
    store, recorder = FleetStore(), Recorder()
    w = writer(store, recorder)
    assert w.write([message(TopicKind.RESULT, b"{not json", 7)]) == []
    assert store.letters == [b"{not json"]
    assert recorder.calls == [("dead_lettered", "not-json"), ("ack", [7])]
    assert w.stats["dead_letters"] == 1


def test_the_outage_begins_once_and_ends_once_with_one_log_line_each(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="collector.writer")
    store, recorder, clock = FleetStore(), Recorder(), FakeClock()
    w = writer(store, recorder, clock)
    store.down = True
    items = [message(TopicKind.RESULT, make_result(seq=1), 1)]
    assert w.write(items) == items
    assert w.write(items) == items
    since = w.outage().since
    store.down = False
    clock.now_s += 42
    w.write_until_done(items, Backoff(5.0, 20.0))
    assert recorder.kinds() == ["outage_changed", "committed", "ack", "outage_changed"]
    assert not w.outage().down and w.outage().since >= since and w.outage().error == ""
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    over = [r for r in caplog.records if "works again after 42 s" in r.getMessage()]
    assert len(errors) == 1 and len(over) == 1


def test_the_committer_retries_on_the_clock_and_stops_with_one_last_try() -> None:
    store, recorder, clock = FleetStore(), Recorder(), FakeClock()
    w = writer(store, recorder, clock)
    store.down = True
    w.inbox.put(message(TopicKind.RESULT, make_result(seq=1), 1))
    w.start()
    try:
        assert wait_for(lambda: store.writes == 1 and w.stats["retry_pending"] == 1)
        reads = clock.reads
        assert wait_for(lambda: clock.reads >= reads + 3)  # looking at the clock, not due yet
        assert store.writes == 1
        clock.now_s += 5.0
        assert wait_for(lambda: store.writes == 2)
        assert recorder.kinds().count("store_retried") == 1
    finally:
        w.inbox.close()
        assert w.stop(5)
    assert store.writes == 3  # the last try, at stop
    assert "ack" not in recorder.kinds() and w.inbox.depth == 0


def test_a_bug_in_a_listener_leaves_the_batch_unacknowledged_and_the_writer_running(
        caplog: pytest.LogCaptureFixture) -> None:
    store, recorder = FleetStore(), Recorder()

    def broken(batch: Committed) -> None:
        raise RuntimeError("listener bug (test)")

    recorder.committed = broken  # type: ignore[method-assign]
    w = writer(store, recorder)
    w.start()
    try:
        w.inbox.put(message(TopicKind.RESULT, make_result(seq=1), 1))
        assert wait_for(lambda: w.inbox.depth == 0)
        w.inbox.put(message(TopicKind.RESULT, b"{oops", 2))
        assert wait_for(lambda: ("ack", [2]) in recorder.calls)
    finally:
        w.inbox.close()
        w.stop(5)
    assert ("ack", [1]) not in recorder.calls
    assert "left unacknowledged" in caplog.text and "listener bug (test)" in caplog.text
