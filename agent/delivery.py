"""Delivered means stored: send spooled results and forget each only on the collector's receipt.

Monitor windows wait in the same spool and go the same way, each on its own kind's topic
(``monitor``); a receipt naming a window's ``window_id`` releases it.

:class:`Courier` is the one delivery path, used by the daemon (continuously) and by
``bench --publish`` and ``agent flush`` (once, waiting a few seconds for receipts). It publishes at
QoS 1 what :meth:`Spool.due` returns — results never sent, then results sent more than
``resend_after_s`` ago without a receipt — oldest first and at most ``max_per_tick`` at a time, so
a board coming back after a week offline does not flood its broker. A re-sent result carries
``replayed: true``; the collector stores each run_id once, so re-sends are harmless.

The courier needs from a connection only ``publish(topic, payload, qos)`` (raising
:class:`shared.errors.BrokerError` when the broker refuses or does not acknowledge) and
``subscribe(topic, qos)``; receipts reach it through :meth:`Courier.on_receipt`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from pydantic import ValidationError

from agent.spool import Spool, SpooledResult
from shared.messages import Receipt
from shared.payload import pack
from shared.topics import TopicKind, Topics

logger = logging.getLogger(__name__)

RESEND_AFTER_S = 60.0
MAX_PER_TICK = 50


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout_s: float = 10.0) -> None: ...

    def subscribe(self, topic: str, qos: int = 1) -> None: ...


def receipt_topics(spool: Spool, extra: set[tuple[str, str]] | None = None) -> list[str]:
    """The receipt topics for every (fleet, device) with results waiting, plus ``extra``."""
    pairs = spool.destinations() | (extra or set())
    return sorted(Topics.build(fleet, device, TopicKind.RECEIPT) for fleet, device in pairs)


def replayed_payload(entry: SpooledResult) -> bytes:
    """The spooled payload with ``replayed: true`` set (a re-send)."""
    data = json.loads(entry.payload)
    data["replayed"] = True
    return json.dumps(data, separators=(",", ":")).encode()


class Courier:
    """Publishes due results from a spool and confirms them from receipts. Thread-safe."""

    def __init__(self, spool: Spool, *, resend_after_s: float = RESEND_AFTER_S,
                 max_per_tick: int = MAX_PER_TICK) -> None:
        self.spool = spool
        self.resend_after_s = resend_after_s
        self.max_per_tick = max_per_tick
        self.confirmed = 0
        self._receipt = threading.Condition()

    def on_receipt(self, payload: bytes) -> int:
        """Handle one receipt message; returns how many spooled results it confirmed.

        A malformed receipt is logged and ignored: it confirms nothing, so nothing is lost.
        """
        try:
            receipt = Receipt.model_validate_json(payload)
        except ValidationError as err:
            logger.warning("ignored a malformed receipt: %s", str(err).splitlines()[0])
            return 0
        return self.confirm(str(r) for r in receipt.run_ids)

    def confirm(self, run_ids: Iterable[str]) -> int:
        """The collector stored these results: drop them from the spool; returns how many."""
        done = self.spool.confirm(run_ids)
        with self._receipt:
            self.confirmed += done
            self._receipt.notify_all()
        return done

    def send_due(self, conn: Publisher, *, everything: bool = False) -> int:
        """Publish what is due (all waiting results with ``everything``); returns how many.

        Stops at the first broker error, which it raises: what was not sent stays due.
        """
        if everything:
            batch = self.spool.pending()
        else:
            batch = self.spool.due(resend_after_s=self.resend_after_s, limit=self.max_per_tick)
        sent = 0
        for entry in batch:
            topic = Topics.build(entry.fleet, entry.device_id, TopicKind(entry.kind))
            payload = entry.payload if entry.attempts == 0 else replayed_payload(entry)
            conn.publish(topic, pack(payload), qos=1)  # zlib over 1 KiB: shared.payload
            self.spool.mark_sent([entry.run_id])
            sent += 1
        return sent

    def wait_for_receipts(self, run_ids: set[str], timeout_s: float,
                          wait: Callable[[threading.Condition, float], bool] | None = None) -> set[str]:
        """Wait until none of ``run_ids`` is in the spool any more, or ``timeout_s``.

        Returns the run_ids still unconfirmed. ``wait`` replaces ``Condition.wait`` (tests).
        """
        waiter = wait or (lambda cond, t: cond.wait(t))
        remaining = timeout_s
        step = 0.1
        with self._receipt:
            while True:
                missing = run_ids & {e.run_id for e in self.spool.pending()}
                if not missing or remaining <= 0:
                    return missing
                waiter(self._receipt, min(step, remaining))
                remaining -= step


def deliver_once(courier: Courier, conn: Publisher, *, receipt_timeout_s: float) -> set[str]:
    """Send every waiting result now and wait for receipts; returns the unconfirmed run_ids.

    Used by ``bench --publish`` and ``agent flush``. Raises :class:`shared.errors.BrokerError`
    when the broker refuses a publish (the results stay in the spool).
    """
    waiting = {e.run_id for e in courier.spool.pending()}
    if not waiting:
        return set()
    for topic in receipt_topics(courier.spool):
        conn.subscribe(topic, qos=1)
    courier.send_due(conn, everything=True)
    return courier.wait_for_receipts(waiting, receipt_timeout_s)
