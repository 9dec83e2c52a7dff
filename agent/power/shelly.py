"""Shelly Gen2 plugs over MQTT (Shelly API docs, "MQTT" and "Switch" component).

With "generic status update" enabled the device publishes the status of its switch component on
``<topic>/status/switch:0`` (``<topic>`` is its MQTT prefix, the device id by default) whenever it
changes and at least once a minute: ``{"id": 0, "output": true, "apower": 7.5, ...}`` with
``apower`` in watts. The value is held between messages for up to 90 s.
"""

from __future__ import annotations

import json

from agent.power.mqttplug import MqttPlugSource


class ShellySource(MqttPlugSource):
    name = "shelly"
    stale_s = 90.0

    def topics(self) -> list[str]:
        return [f"{self.topic}/status/switch:0"]

    def parse(self, topic: str, payload: bytes) -> float | None:
        doc = json.loads(payload)
        power = doc.get("apower") if isinstance(doc, dict) else None
        return None if power is None else float(power)
