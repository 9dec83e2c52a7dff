"""What the wall-plug sources share: a broker connection and the last power value heard.

Settings, in the source's own table (``[power.tasmota]``, ``[power.shelly]``): ``broker``, the
plug's broker URL, and ``topic``, the plug's topic (one level). The ``--power-mqtt`` and
``--power-topic`` flags fill them in.

A plug that already speaks MQTT publishes its power on its own schedule; the source keeps the
latest value with the time (``context.clock_ns``) of its arrival. ``read()`` hands it back stamped *now*
(sample and hold) as long as it is younger than ``stale_s``, and ``None`` after that, so a plug
that stops talking shows up as lost coverage rather than as a frozen or zero reading.

Subclasses say which topics to subscribe to, how to parse a payload into watts, and optionally how
to poll (``poll()``, at most every ``poll_s``). Scope ``wall``, one rail ``wall``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from abc import abstractmethod

from pydantic import Field, field_validator

from agent.errors import PowerSourceError
from agent.power.base import OnceLogger, PowerSource, Reading, SourceContext, SourceSettings
from shared.errors import ConfigError, EdgemeterError
from shared.mqtt import MqttConnection, connect, parse_broker_url
from shared.schema import PowerScope

logger = logging.getLogger(__name__)

RAIL = "wall"


class PlugSettings(SourceSettings):
    """A wall plug over MQTT: its broker and topic."""

    broker: str | None = Field(None, description="broker the plug publishes to, mqtt://HOST:PORT")
    topic: str | None = Field(None, description="the plug's topic (one level, e.g. its device id)")
    first_value_timeout_s: float = Field(
        3.0, gt=0, description="how long to wait at start for the plug's first reading"
    )

    @field_validator("broker")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_broker_url(value)
            except ConfigError as err:
                raise ValueError(str(err)) from err
        return value

    @field_validator("topic")
    @classmethod
    def _one_level(cls, value: str | None) -> str | None:
        if value is not None and ("/" in value.strip("/") or "+" in value or "#" in value
                                  or not value.strip("/")):
            raise ValueError(f"{value!r} must be one topic level, without wildcards")
        return value


class MqttPlugSource(PowerSource):
    scope = PowerScope.WALL
    kind = "gauge"
    max_hz = 2.0
    update_period_s = 1.0
    stale_s = 5.0
    poll_s: float | None = None
    Settings = PlugSettings
    settings: PlugSettings

    def __init__(
        self, settings: PlugSettings | None = None, context: SourceContext | None = None
    ) -> None:
        super().__init__(settings, context)
        self.counted_rails = (RAIL,)
        self._lock = threading.Lock()
        self._value_w: float | None = None
        self._value_t = 0.0
        self._last_poll: float | None = None
        self._conn: MqttConnection | None = None
        self._arrived = threading.Event()
        self._once = OnceLogger(logger)

    @abstractmethod
    def topics(self) -> list[str]:
        """Topics to subscribe to."""

    @abstractmethod
    def parse(self, topic: str, payload: bytes) -> float | None:
        """Watts from one message, or None when it carries no power figure."""

    def poll(self, conn: MqttConnection) -> None:
        """Ask the plug for a fresh reading (sources that can)."""

    @property
    def topic(self) -> str:
        assert self.settings.topic is not None
        return self.settings.topic.strip("/")

    def probe(self) -> str | None:
        if not self.settings.broker or not self.settings.topic:
            return (
                f"needs the broker and the plug's topic: [power.{self.name}] broker and topic, "
                f"or --power {self.name} --power-mqtt mqtt://HOST:PORT --power-topic TOPIC"
            )
        return None

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            watts = self.parse(topic, payload)
        except (ValueError, TypeError, KeyError) as err:
            self._once.warning(f"parse:{topic}", "%s: cannot parse %s: %s", self.name, topic, err)
            return
        if watts is None:
            return
        with self._lock:
            self._value_w, self._value_t = watts, self.context.now_s()
        self._arrived.set()

    def _subscribe(self, conn: MqttConnection) -> None:
        for topic in self.topics():
            conn.subscribe(topic, qos=0)

    def open(self) -> None:
        why = self.probe()
        if why is not None:
            raise PowerSourceError(f"{self.name}: {why}")
        assert self.settings.broker is not None
        try:
            self._conn = connect(
                self.settings.broker,
                f"edgemeter-power-{uuid.uuid4().hex[:8]}",
                on_message=self._on_message,
                on_connect=self._subscribe,
                timeout_s=5.0,
            )
        except EdgemeterError as err:
            raise PowerSourceError(f"{self.name}: {err}") from err
        self._maybe_poll(self.context.now_s())
        timeout_s = self.settings.first_value_timeout_s
        if not self._arrived.wait(timeout_s):
            self.close()
            raise PowerSourceError(
                f"{self.name}: no power reading on {', '.join(self.topics())} within "
                f"{timeout_s:g} s; check --power-topic ([power.{self.name}] "
                f"topic) and that the plug publishes to {self.settings.broker}"
            )

    def _maybe_poll(self, now: float) -> None:
        if self.poll_s is None or self._conn is None:
            return
        if self._last_poll is not None and now - self._last_poll < self.poll_s:
            return
        self._last_poll = now
        try:
            self.poll(self._conn)
        except EdgemeterError as err:
            self._once.warning("poll", "%s: poll failed: %s", self.name, err)

    def read(self) -> Reading | None:
        now = self.context.now_s()
        self._maybe_poll(now)
        with self._lock:
            value, at = self._value_w, self._value_t
        if value is None or now - at > self.stale_s:
            return None
        return Reading(t_s=now, power_w={RAIL: value})

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as err:
                logger.debug("%s: disconnect failed: %s", self.name, err)
