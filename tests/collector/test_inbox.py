"""The inbox: a bounded queue whose receive window holds the network thread back."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from collector.inbox import Delivery, Inbox, Item
from tests.collector.conftest import wait_for


def item(mid: int, connection: int = 1) -> Item:
    return Item("edgemeter/v1/default/pi-01/result", b"{}", Delivery(connection, mid, 1),
                datetime.now(timezone.utc))


def test_take_returns_what_is_queued_at_once_up_to_its_limit() -> None:
    inbox = Inbox(window=10)
    for mid in range(1, 4):
        assert inbox.put(item(mid))
    first = inbox.take(2)
    assert first is not None and [i.delivery.mid for i in first] == [1, 2]
    second = inbox.take(200)  # does not wait to fill the batch
    assert second is not None and [i.delivery.mid for i in second] == [3]


def test_a_message_counts_against_the_window_until_it_is_finished() -> None:
    inbox = Inbox(window=10)
    inbox.put(item(1))
    inbox.put(item(2))
    assert inbox.depth == 2
    batch = inbox.take(10)
    assert batch is not None and inbox.depth == 2  # in flight still counts
    inbox.finish(1)
    assert inbox.depth == 1
    inbox.finish(1)
    assert inbox.depth == 0 and inbox.wait_idle(0)


def test_put_holds_the_network_thread_back_while_the_window_is_full() -> None:
    inbox = Inbox(window=2)
    inbox.put(item(1))
    returned = threading.Event()

    def network_thread() -> None:
        inbox.put(item(2))  # fills the window: does not return until room is made
        returned.set()

    thread = threading.Thread(target=network_thread, daemon=True)
    thread.start()
    assert wait_for(lambda: inbox.depth == 2)
    assert not returned.wait(0.05)
    batch = inbox.take(10)
    assert batch is not None and not returned.is_set()  # taken is not finished
    inbox.finish(len(batch))
    assert returned.wait(5)
    thread.join(5)


def test_close_releases_a_held_put_refuses_new_ones_and_drains_before_none() -> None:
    inbox = Inbox(window=1)
    held = threading.Thread(target=inbox.put, args=(item(1),), daemon=True)
    held.start()
    assert wait_for(lambda: inbox.depth == 1)
    inbox.close()
    held.join(5)
    assert not held.is_alive()
    assert inbox.put(item(2)) is False  # left unacknowledged for the next session
    batch = inbox.take(10)
    assert batch is not None and [i.delivery.mid for i in batch] == [1]
    assert inbox.take(10) is None
    inbox.finish(1)
    inbox.open()  # a service started again takes messages again
    assert not inbox.closed and inbox.depth == 0


def test_an_inbox_opened_again_takes_messages() -> None:
    inbox = Inbox(window=5)
    inbox.close()
    assert inbox.put(item(1)) is False
    inbox.open()
    assert inbox.put(item(2)) and inbox.depth == 1


def test_received_counts_queued_and_unqueued_messages() -> None:
    inbox = Inbox(window=10)
    inbox.put(item(1))
    inbox.note_unqueued()
    assert inbox.received == 2 and inbox.depth == 1


def test_wait_idle_times_out_while_a_message_is_held() -> None:
    inbox = Inbox(window=10)
    inbox.put(item(1))
    assert inbox.wait_idle(0.01) is False


def test_a_window_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Inbox(window=0)
