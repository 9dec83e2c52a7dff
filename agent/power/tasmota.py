"""Tasmota smart plugs over MQTT (Tasmota documentation, "MQTT" and "Commands": Status 10).

With the default FullTopic ``%prefix%/%topic%/``, the source publishes ``10`` to
``cmnd/<topic>/STATUS`` once a second; the plug answers on ``stat/<topic>/STATUS10`` with
``{"StatusSNS": {"ENERGY": {"Power": 7.5, ...}}}``. Telemetry on ``tele/<topic>/SENSOR``
(``{"ENERGY": {"Power": ...}}``, every TelePeriod) is taken too. Multi-channel meters report
``Power`` as a list; the channels are added.
"""

from __future__ import annotations

import json
from typing import Any

from agent.power.mqttplug import MqttPlugSource
from shared.mqtt import MqttConnection


def _watts(energy: Any) -> float | None:
    if not isinstance(energy, dict) or "Power" not in energy:
        return None
    power = energy["Power"]
    if isinstance(power, list):
        return float(sum(float(p) for p in power))
    return float(power)


class TasmotaSource(MqttPlugSource):
    name = "tasmota"
    poll_s = 1.0
    stale_s = 5.0

    def topics(self) -> list[str]:
        return [f"stat/{self.topic}/STATUS10", f"tele/{self.topic}/SENSOR"]

    def parse(self, topic: str, payload: bytes) -> float | None:
        doc = json.loads(payload)
        if topic.endswith("/STATUS10"):
            return _watts(doc.get("StatusSNS", {}).get("ENERGY"))
        return _watts(doc.get("ENERGY"))

    def poll(self, conn: MqttConnection) -> None:
        conn.publish(f"cmnd/{self.topic}/STATUS", b"10", qos=0, timeout_s=1.0)
