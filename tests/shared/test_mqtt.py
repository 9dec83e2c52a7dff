"""Reaching a broker: MQTT v5 where it has it, 3.1.1 where it does not, and clear failures."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgemeter.demo.broker import PrivateBroker
from edgemeter.demo.loopback import free_port
from edgemeter.demo.mosquitto import Mosquitto, find_mosquitto
from shared.errors import BrokerError, ConfigError
from shared.mqtt import MqttConnection, connect, parse_broker_url
from tests.conftest import unavailable


def test_mosquitto_is_spoken_to_in_mqtt_v5(mosquitto_url: str) -> None:
    with connect(mosquitto_url, "v5-check", clean_start=False, session_expiry_s=60) as conn:
        assert conn.protocol == "5"


@pytest.mark.mqtt
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


# -- credentials, TLS files, redaction ----------------------------------------------------------


@pytest.fixture(scope="module")
def auth_broker_url() -> Iterator[str]:
    """A private Mosquitto that refuses anonymous clients; user ``collector``, password
    ``right-pw``. Its folder is world-readable: started as root, mosquitto reads the password file
    as its own user."""
    binary, passwd = find_mosquitto(), shutil.which("mosquitto_passwd")
    if binary is None or passwd is None:
        unavailable("mosquitto and mosquitto_passwd are not installed (apt-get install mosquitto)")
    folder = Path(tempfile.mkdtemp(prefix="edgemeter-auth-broker-"))
    folder.chmod(0o755)
    subprocess.run([str(passwd), "-b", "-c", str(folder / "passwd"), "collector", "right-pw"],
                   check=True, capture_output=True)
    (folder / "passwd").chmod(0o644)
    port = free_port()
    conf = [f"listener {port} 127.0.0.1", "allow_anonymous false",
            f"password_file {folder / 'passwd'}", "persistence false", "log_dest stderr"]
    try:
        with Mosquitto(folder, conf, ports=[port], binary=binary, name="password-protected broker"):
            yield f"mqtt://127.0.0.1:{port}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.mqtt
def test_username_and_password_arguments_win_over_the_url(auth_broker_url: str) -> None:
    url = auth_broker_url.replace("mqtt://", "mqtt://collector:wrong-pw@")
    with pytest.raises(BrokerError) as info:
        connect(url, "auth-wrong", timeout_s=3)
    assert "wrong-pw" not in str(info.value)
    with connect(url, "auth-right", password="right-pw", timeout_s=3) as conn:
        conn.publish("edgemeter/v1/test/x/result", b"{}", qos=1)
    with connect(auth_broker_url, "auth-args", username="collector", password="right-pw",
                 timeout_s=3):
        pass


@pytest.mark.mqtt
def test_acks_flushed_before_a_disconnect_are_not_delivered_again(mosquitto_url: str) -> None:
    client_id = f"flush-{uuid.uuid4().hex[:8]}"
    received: list[tuple[int, int]] = []

    def collect(_topic: str, _payload: bytes, mid: int, qos: int) -> None:
        received.append((mid, qos))

    def session() -> tuple[MqttConnection, threading.Event]:
        granted = threading.Event()

        def on_granted(ok: bool, _detail: str) -> None:
            if ok:
                granted.set()

        def subscribe(conn: MqttConnection) -> None:
            conn.subscribe(topic, 1, on_granted=on_granted)

        conn = connect(mosquitto_url, client_id, clean_start=False, session_expiry_s=60,
                       manual_ack=True, on_message_ack=collect, on_connect=subscribe)
        return conn, granted

    topic = f"edgemeter/v1/{client_id}/+/result"
    conn, granted = session()
    assert granted.wait(5)
    with connect(mosquitto_url, f"{client_id}-pub") as publisher:
        for i in range(30):
            publisher.publish(topic.replace("+", f"d{i}"), b"{}", qos=1)
    deadline = time.monotonic() + 10
    while len(received) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(received) == 30
    for mid, qos in received:
        conn.ack(mid, qos)
    assert conn.flush(5)
    conn.close()
    received.clear()
    again, granted = session()
    with again:
        assert granted.wait(5)
        assert again.flush(5)  # anything the session still held came before this answer
    assert received == []


def test_tls_files_need_an_mqtts_url_and_a_cert_for_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="use mqtts://"):
        connect("mqtt://127.0.0.1:1", "tls", ca_file=tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match="key_file needs its cert_file"):
        connect("mqtts://127.0.0.1:1", "tls", key_file=tmp_path / "key.pem")


def test_a_missing_ca_file_is_a_config_error_before_any_connection(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot set up TLS"):
        connect(f"mqtts://127.0.0.1:{free_port()}", "tls", ca_file=tmp_path / "missing.pem",
                timeout_s=1)


def test_a_password_needs_a_user_name() -> None:
    with pytest.raises(ConfigError, match="needs a user name"):
        connect("mqtt://127.0.0.1:1", "pw", password="x")


def test_broker_urls_never_show_their_password() -> None:
    broker = parse_broker_url("mqtt://collector:hunter2@broker:1884")
    assert broker.password == "hunter2"
    assert "hunter2" not in str(broker) and "hunter2" not in repr(broker)
    with pytest.raises(ConfigError) as info:
        parse_broker_url("mqtt://collector:hunter2@broker:notaport")
    assert "hunter2" not in str(info.value) and "collector:***@broker" in str(info.value)
