"""``bench --publish``: spool the result, send everything waiting, wait a little for receipts.

The spool (:mod:`agent.spool`) is the same one the daemon uses: a result stays there until the
collector's receipt names it. :func:`publish_via_spool` connects with a short-lived client,
subscribes to the receipt topics of what is waiting, sends it all at QoS 1 (oldest first) and waits
up to ``receipt_timeout_s``. Whatever is not confirmed by then stays in the spool, for the daemon,
the next ``--publish`` or ``edgemeter agent flush``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from agent.delivery import Courier, deliver_once
from agent.errors import PublishError
from agent.spool import Spool
from shared.errors import BrokerError
from shared.mqtt import connect
from shared.redact import redact_url

logger = logging.getLogger(__name__)

RECEIPT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Delivery:
    sent: int
    """results published (this one and any that were waiting)"""
    unconfirmed: frozenset[str]
    """run_ids with no receipt yet: still in the spool"""


def publish_via_spool(spool: Spool, broker_url: str, *, client_name: str = "bench",
                      receipt_timeout_s: float = RECEIPT_TIMEOUT_S,
                      timeout_s: float = 10.0) -> Delivery:
    """Send every result in ``spool``; raises PublishError (saying where they wait) on failure.

    ``broker_url`` may carry a password; no message shows it (:func:`shared.redact.redact_url`).
    """
    waiting = spool.depth()
    courier = Courier(spool)

    def on_message(_topic: str, payload: bytes) -> None:
        courier.on_receipt(payload)

    where = (f"{waiting} result(s) kept in the spool {spool.path}; they go with the agent daemon, "
             "the next --publish or `edgemeter agent flush`")
    try:
        conn = connect(broker_url, f"edgemeter-{client_name}-{uuid.uuid4().hex[:8]}",
                       timeout_s=timeout_s, on_message=on_message)
    except BrokerError as err:
        raise PublishError(f"{redact_url(str(err))}; {where}") from err
    with conn:
        try:
            missing = deliver_once(courier, conn, receipt_timeout_s=receipt_timeout_s)
        except BrokerError as err:
            raise PublishError(f"{redact_url(str(err))}; {where}") from err
    return Delivery(sent=waiting, unconfirmed=frozenset(missing))
