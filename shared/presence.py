"""Which status message wins: one rule for the collector's devices table and ``fleet ls``.

Sparkplug's rule: a birth (``online``) or death (``offline``) counts only if its ``bd_seq`` is at
least the current one; a death whose ``bd_seq`` is older than the current birth's is a stale Last
Will that the broker fired after the device had already reconnected, and is ignored. A device
that restarts its counter (a new spool) is recognised by a birth with a lower ``bd_seq`` arriving
after a death of the current one.
"""

from __future__ import annotations

from shared.messages import Status


def status_wins(current: Status | None, incoming: Status) -> bool:
    """True when ``incoming`` should replace ``current`` as the device's status."""
    if current is None:
        return True
    if incoming.bd_seq > current.bd_seq:
        return True
    if incoming.bd_seq == current.bd_seq:
        # the death of the current connection, or the same birth again (retained re-delivery)
        return not (current.status == "offline" and incoming.status == "online")
    # older bd_seq: a stale death is ignored; a birth after a death means the counter restarted
    return incoming.status == "online" and current.status == "offline"
