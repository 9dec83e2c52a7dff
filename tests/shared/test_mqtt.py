"""Reaching a broker: MQTT v5 where it has it, 3.1.1 where it does not, and clear failures."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgemeter.demo.broker import PrivateBroker
from edgemeter.demo.loopback import free_port
from edgemeter.demo.mosquitto import Mosquitto, find_mosquitto
from shared.errors import BrokerError, ConfigError, PublishRefusedError
from shared.mqtt import (
    SHORT_LIVED_S,
    Backoff,
    Built,
    DisconnectWatch,
    MqttConnection,
    MqttOptions,
    PublishTracker,
    TlsFiles,
    Will,
    connect,
    make_client,
    parse_broker_url,
    publish_checked,
)
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


# -- the one client builder, the one publish, the one options model -------------------------------


class _Info:
    """What paho's publish returns, already acknowledged."""

    def __init__(self, mid: int) -> None:
        self.mid, self.rc = mid, 0

    def is_published(self) -> bool:
        return True

    def wait_for_publish(self, timeout: float | None = None) -> None:
        return None


class _AckingClient:
    """A paho stand-in whose broker answers every publish with ``reason`` in its PUBACK."""

    def __init__(self, tracker: Any, reason: Any) -> None:
        self.tracker, self.reason, self.mid = tracker, reason, 0

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> _Info:
        self.mid += 1
        self.tracker.on_publish(self, None, self.mid, self.reason, None)
        return _Info(self.mid)


@pytest.mark.parametrize(("name", "code"), [("Not authorized", 135), ("Unspecified error", 128),
                                            ("Quota exceeded", 151)])
def test_a_puback_reason_code_of_128_or_more_raises_in_the_one_publish(name: str, code: int) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    url = parse_broker_url("mqtt://broker:1883")
    tracker = PublishTracker(url)
    built = Built(_AckingClient(tracker, ReasonCode(PacketTypes.PUBACK, name)), tracker)
    with pytest.raises(PublishRefusedError, match=f"reason code {code}") as info:
        publish_checked(built, "edgemeter/v1/f/d/result", b"{}", qos=1)
    assert info.value.reason_code == code
    # MqttConnection.publish is the same publish: a refusal is never a success there either
    conn = MqttConnection(built.client, "5", url, tracker)
    with pytest.raises(PublishRefusedError):
        conn.publish("edgemeter/v1/f/d/result", b"{}", qos=1)


def test_a_puback_below_128_is_a_success() -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    url = parse_broker_url("mqtt://broker:1883")
    tracker = PublishTracker(url)
    for name in ("Success", "No matching subscribers"):  # 0 and 16
        built = Built(_AckingClient(tracker, ReasonCode(PacketTypes.PUBACK, name)), tracker)
        publish_checked(built, "t", b"{}", qos=1)


def test_tls_files_with_a_plain_url_are_refused_with_one_error_everywhere(tmp_path: Path) -> None:
    from agent.daemon.link import Link, LinkOptions

    ca = tmp_path / "ca.pem"
    messages = set()
    for attempt in (
        lambda: connect("mqtt://127.0.0.1:1", "tls", ca_file=ca),
        lambda: MqttOptions(urls=["mqtt://127.0.0.1:1"], ca_file=ca),
        lambda: make_client(parse_broker_url("mqtt://127.0.0.1:1"), "tls", "5",
                            tls_files=TlsFiles(ca_file=ca)),
        lambda: Link([parse_broker_url("mqtt://127.0.0.1:1")], LinkOptions(client_id="x", ca_file=ca),
                     will=lambda: ("t", b""), on_connect=lambda _l: None,
                     on_message=lambda _t, _p: None).start(),
    ):
        with pytest.raises(ConfigError) as info:
            attempt()
        messages.add(str(info.value))
    assert messages == {"TLS files are set but the broker URL mqtt://127.0.0.1:1 is not TLS: "
                        "use mqtts://HOST:PORT"}


def test_a_bad_ca_file_is_a_config_error_from_every_client(tmp_path: Path) -> None:
    from agent.daemon.link import Link, LinkOptions

    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    url = f"mqtts://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match=r"cannot set up TLS.*ca_file"):
        connect(url, "tls", ca_file=bad, timeout_s=1)
    link = Link([parse_broker_url(url)], LinkOptions(client_id="x", ca_file=bad),
                will=lambda: ("t", b""), on_connect=lambda _l: None, on_message=lambda _t, _p: None)
    with pytest.raises(ConfigError, match=r"cannot set up TLS.*ca_file"):
        link.start()  # said at once, not a link thread that dies later


def test_the_will_is_built_again_before_every_connection_attempt(mosquitto_url: str) -> None:
    """paho >= 2 calls on_pre_connect before each attempt: each one gets a fresh Will."""
    calls: list[int] = []

    def will() -> Will:
        calls.append(len(calls) + 1)
        return Will("edgemeter/v1/_test/will", str(len(calls)).encode(), retain=False)

    built = make_client(parse_broker_url(mosquitto_url), f"will-{uuid.uuid4().hex[:6]}", "5",
                        will=will)
    url = parse_broker_url(mosquitto_url)
    built.client.connect(url.host, url.port)
    built.client.disconnect()
    built.client.reconnect()
    built.client.disconnect()
    assert calls == [1, 2]


class _TakeoverBroker:
    """Just enough of an MQTT v5 broker: CONNACK every CONNECT, and end the first connection
    with DISCONNECT reason 142 (Session taken over), as a broker does when another connection
    with the same client id arrives. (Mosquitto 2.0 closes the socket without saying why.)"""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(conn, self.connections == 1),
                             daemon=True).start()

    @staticmethod
    def _session(conn: socket.socket, take_over: bool) -> None:
        with conn:
            conn.recv(4096)  # the CONNECT
            conn.sendall(bytes([0x20, 3, 0, 0, 0]))  # CONNACK: success, no properties
            if take_over:
                time.sleep(0.5)
                conn.sendall(bytes([0xE0, 2, 142, 0]))  # DISCONNECT: Session taken over
                return
            with contextlib.suppress(OSError):
                while conn.recv(4096):
                    pass

    def close(self) -> None:
        self.server.close()


def test_a_session_taken_over_is_logged_as_an_error_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = _TakeoverBroker()
    hooked = threading.Event()
    try:
        conn = connect(f"mqtt://127.0.0.1:{broker.port}", "taken", protocol="5",
                       on_takeover=hooked.set)
        try:
            assert hooked.wait(10)
        finally:
            conn.close()
    finally:
        broker.close()
    assert conn.takeovers == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("session taken over (MQTT reason code 142" in m for m in errors), errors


def test_other_disconnects_are_logged_with_their_reason_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    watch = DisconnectWatch()
    watch.seen("mqtt://broker:1883", ReasonCode(PacketTypes.DISCONNECT, "Server shutting down"))
    assert (watch.disconnects, watch.takeovers) == (1, 0)
    assert "Server shutting down (reason code 139)" in caplog.text


def test_fresh_connections_closed_twice_in_a_row_without_a_reason_count_as_a_takeover(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mosquitto before 2.0.15 closes the old connection of a taken-over client id and says
    nothing: the daemon's watch (shared with the collector) still tells it from a lost network."""
    now_s = [0.0]
    hooked: list[int] = []
    watch = DisconnectWatch(lambda: hooked.append(1), clock=lambda: now_s[0])
    watch.connected()
    now_s[0] += 60.0
    watch.seen("mqtt://b:1883", "Unspecified error")  # an established connection lost
    for _ in range(2):
        watch.connected()
        now_s[0] += 1.0
        watch.seen("mqtt://b:1883", "Unspecified error", from_server=False)
    assert (watch.disconnects, watch.takeovers, len(hooked)) == (3, 1, 1)
    assert "2 times in a row" in caplog.text
    watch.connected()
    now_s[0] += 1.0
    watch.seen("mqtt://b:1883", "Server shutting down", from_server=True)  # said why: not one
    watch.connected()
    now_s[0] += SHORT_LIVED_S
    watch.seen("mqtt://b:1883", "Unspecified error")  # lived long enough: the run ends
    assert watch.takeovers == 1


def test_options_read_the_password_file_and_name_it_when_unreadable(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    assert MqttOptions(password_file=secret).resolved_password() == "s3cret"
    assert MqttOptions(password="x", password_file=secret).resolved_password() == "x"
    with pytest.raises(ConfigError, match="password_file"):
        MqttOptions(password_file=tmp_path / "missing").resolved_password()


def test_backoff_grows_with_full_jitter_and_resets() -> None:
    import random

    backoff = Backoff(1.0, 8.0, random.Random(3))
    waits = [backoff.next_s() for _ in range(6)]
    assert all(1.0 <= w <= 8.0 for w in waits)
    assert max(waits[3:]) > 2.0, "later waits may be longer"
    backoff.reset()
    assert backoff.next_s() == 1.0  # the first wait after a success is the minimum
