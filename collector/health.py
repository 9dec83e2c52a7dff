"""The collector's own health: retry backoff while the store fails, and its retained status message.

Status topic: ``edgemeter/v1/_collector/<client_id>/status`` (retained, QoS 1), one
:class:`CollectorStatus` JSON document:

``state``
    ``online`` (storing), ``store-down`` (connected to the broker but the store refuses writes:
    messages stay unacknowledged with the broker and are retried), ``offline`` (stopped cleanly, or
    the broker's Last Will when the collector's connection died).
``since``
    when this state began; ``sent_at`` when the message was sent (``null`` in the Last Will).
``error``
    the store's last error while ``store-down``; ``backlog``: messages received and not yet stored.

A dashboard or ``mosquitto_sub -t 'edgemeter/v1/_collector/+/status'`` shows every collector and
whether its database is reachable, with no access to the database itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.topics import TopicKind, Topics, valid_level

__all__ = ["COLLECTOR_FLEET", "Backoff", "CollectorState", "CollectorStatus", "status_topic"]

COLLECTOR_FLEET = "_collector"
"""The fleet level of collectors' own topics; never a device fleet (the collector ignores it)."""


CollectorState = Literal["online", "store-down", "offline"]


class CollectorStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    collector: str
    state: CollectorState
    since: datetime
    sent_at: datetime | None = None
    error: str | None = Field(None, max_length=400)
    backlog: int = Field(0, ge=0)


def status_topic(client_id: str) -> str | None:
    """The collector's status topic; ``None`` when its client id cannot be one topic level."""
    if not valid_level(client_id):
        return None
    return Topics.build(COLLECTOR_FLEET, client_id, TopicKind.STATUS)


class Backoff:
    """Capped exponential delays: ``first_s``, then doubled each failure, at most ``max_s``."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.first_s = first_s
        self.max_s = max(max_s, first_s)
        self._next_s = first_s

    def next_s(self) -> float:
        """The delay before the next try (and doubles the one after)."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next_s = self.first_s
