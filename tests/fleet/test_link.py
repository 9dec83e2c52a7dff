"""The daemon's link on a real broker: handlers may publish and wait without stalling it, and a
failure (a Will that cannot be built) is logged, never a silently dead link thread."""

from __future__ import annotations

import threading
import uuid

import pytest

from agent.daemon.link import Link, LinkOptions
from shared.errors import BrokerError
from shared.mqtt import connect, parse_broker_url


def test_a_handler_that_publishes_and_waits_for_its_puback_does_not_stall_the_link(
    mosquitto_url: str,
) -> None:
    tag = uuid.uuid4().hex[:8]
    done = threading.Event()
    errors: list[str] = []
    link: Link

    def on_message(topic: str, _payload: bytes) -> None:
        try:  # what the daemon does for a job: ack it at QoS 1 and wait for the broker
            link.publish(f"test/{tag}/ack", b"accepted", qos=1, timeout_s=5)
        except BrokerError as err:
            errors.append(str(err))
        done.set()

    link = Link([parse_broker_url(mosquitto_url)],
                LinkOptions(client_id=f"link-{tag}", keepalive_s=5),
                will=lambda: (f"test/{tag}/status", b"offline"),
                on_connect=lambda _link: None, on_message=on_message)
    link.subscribe(f"test/{tag}/cmd")
    link.start()
    try:
        assert link.wait_connected(30)
        with connect(mosquitto_url, f"sender-{tag}") as sender:
            # retained, so it arrives whether or not the link's SUBSCRIBE is through yet
            sender.client.publish(f"test/{tag}/cmd", b"run", qos=1, retain=True).wait_for_publish(10)
            assert done.wait(30)
            sender.client.publish(f"test/{tag}/cmd", b"", qos=1, retain=True).wait_for_publish(10)
        assert errors == []
        assert link.connects == 1, "the link never dropped its connection"
    finally:
        link.stop()


def test_a_will_that_cannot_be_built_is_logged_and_the_link_still_connects(
    mosquitto_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    from agent.errors import SpoolError

    def will() -> tuple[str, bytes]:  # a full disk under the spool, where bd_seq is counted
        raise SpoolError("the disk holding the spool /var/lib/edgemeter/spool.db is full")

    link = Link([parse_broker_url(mosquitto_url)],
                LinkOptions(client_id=f"link-{uuid.uuid4().hex[:8]}", keepalive_s=5),
                will=will, on_connect=lambda _link: None, on_message=lambda _t, _p: None)
    link.start()
    try:
        assert link.wait_connected(30), "the link thread is alive and connected"
    finally:
        link.stop()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("cannot build the Last Will" in r.getMessage() for r in errors)
    assert any("is full" in (r.exc_text or "") or "is full" in str(r.exc_info) for r in errors)
