"""MQTT topic names: the only module that builds or parses them.

Layout: ``edgemeter/v1/{fleet}/{device_id}/{kind}`` where kind is one of :class:`TopicKind`.
``fleet`` and ``device_id`` are single topic levels, so they may not contain ``/``, ``+`` or ``#``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

ROOT = "edgemeter/v1"
_LEVEL = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class TopicKind(str, Enum):
    """What a topic carries, and who writes it.

    The agent writes ``result``, ``status`` (birth, death and its Last Will), ``telemetry``,
    ``progress``, ``ack`` and ``monitor`` (monitor windows); the collector (or an operator's
    ``fleet run``) writes ``cmd`` and the collector writes ``receipt`` (the run_ids it has
    stored). Payloads: :mod:`shared.schema` for results, :mod:`shared.monitoring` for monitor
    windows, :mod:`shared.messages` for the rest.
    """

    RESULT = "result"
    STATUS = "status"
    TELEMETRY = "telemetry"
    PROGRESS = "progress"
    CMD = "cmd"
    ACK = "ack"
    RECEIPT = "receipt"
    MONITOR = "monitor"


def valid_level(value: str) -> bool:
    """True when ``value`` can stand as one topic level (fleet or device id)."""
    return bool(_LEVEL.match(value))


@dataclass(frozen=True)
class TopicAddress:
    fleet: str
    device_id: str
    kind: TopicKind


class Addressed(Protocol):
    """A message that names its own fleet and device (result, status, telemetry, progress, ack)."""

    @property
    def fleet(self) -> str: ...

    @property
    def device_id(self) -> str: ...


def _shown(value: str, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Topics:
    """Builds and parses edgemeter topics."""

    @staticmethod
    def build(fleet: str, device_id: str, kind: TopicKind) -> str:
        for name, value in (("fleet", fleet), ("device_id", device_id)):
            if not valid_level(value):
                raise ValueError(
                    f"{name} {value!r} cannot be an MQTT topic level: use letters, digits, . _ : @ -"
                )
        return f"{ROOT}/{fleet}/{device_id}/{kind.value}"

    @staticmethod
    def result(fleet: str, device_id: str) -> str:
        return Topics.build(fleet, device_id, TopicKind.RESULT)

    @staticmethod
    def monitor(fleet: str, device_id: str) -> str:
        """Where a device's monitor windows go (:mod:`shared.monitoring`)."""
        return Topics.build(fleet, device_id, TopicKind.MONITOR)

    @staticmethod
    def subscription(kind: TopicKind, fleet: str = "+") -> str:
        """Wildcard subscription for one kind of message across a fleet (``+`` = every fleet)."""
        return f"{ROOT}/{fleet}/+/{kind.value}"

    @staticmethod
    def shared_subscription(kind: TopicKind, group: str, fleet: str = "+") -> str:
        """MQTT v5 shared subscription, so several collectors split one stream between them."""
        return f"$share/{group}/{Topics.subscription(kind, fleet)}"

    @staticmethod
    def parse(topic: str) -> TopicAddress | None:
        """Split a topic into its parts; ``None`` when it is not an edgemeter v1 topic."""
        parts = topic.split("/")
        if len(parts) != 5 or "/".join(parts[:2]) != ROOT:
            return None
        try:
            kind = TopicKind(parts[4])
        except ValueError:
            return None
        return TopicAddress(fleet=parts[2], device_id=parts[3], kind=kind)

    @staticmethod
    def check(address: TopicAddress | str, message: Addressed) -> str | None:
        """Why ``message`` may not travel on this topic, or ``None`` when it may.

        A device's broker ACL lets it write only under its own ``{fleet}/{device_id}``, so the
        topic is the trustworthy name and a payload naming another device is refused, whatever
        its kind. Messages that name no device (``cmd``, ``receipt``) have nothing to compare and
        are not passed here. The reason is one line, fit for a dead letter.
        """
        parsed = Topics.parse(address) if isinstance(address, str) else address
        if parsed is None:
            return f"topic {_shown(str(address), 120)} is not an edgemeter v1 topic"
        if parsed.fleet != message.fleet or parsed.device_id != message.device_id:
            return (
                f"topic says {parsed.fleet}/{parsed.device_id} but the payload says "
                f"{_shown(message.fleet)}/{_shown(message.device_id)}"
            )
        return None
