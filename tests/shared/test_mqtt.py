"""Reaching a broker: MQTT v5 where it has it, 3.1.1 where it does not, and clear failures."""

from __future__ import annotations

import time

import pytest

from edgemeter.demo.broker import PrivateBroker, free_port
from shared.errors import BrokerError, ConfigError
from shared.mqtt import connect, parse_broker_url


def test_mosquitto_is_spoken_to_in_mqtt_v5(mosquitto_url: str) -> None:
    with connect(mosquitto_url, "v5-check", clean_start=False, session_expiry_s=60) as conn:
        assert conn.protocol == "5"


@pytest.mark.parametrize("session_expiry_s", [0, 3600])
def test_a_v3_only_broker_gets_a_quick_fallback_to_3_1_1(session_expiry_s: int) -> None:
    pytest.importorskip("amqtt")
    with PrivateBroker(prefer="amqtt") as broker:
        started = time.monotonic()
        with connect(broker.url, f"fallback-{session_expiry_s}", clean_start=session_expiry_s == 0,
                     session_expiry_s=session_expiry_s) as conn:
            assert conn.protocol == "3.1.1"
            conn.publish("edgemeter/v1/demo/x/result", b"{}", qos=1)
        assert time.monotonic() - started < 5


def test_unreachable_broker_is_one_clear_error() -> None:
    with pytest.raises(BrokerError, match="cannot reach the broker"):
        connect(f"mqtt://127.0.0.1:{free_port()}", "nobody", timeout_s=2)


@pytest.mark.parametrize("url", ["http://host:1883", "mqtt://", "mqtt://host:notaport"])
def test_bad_broker_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_broker_url(url)
