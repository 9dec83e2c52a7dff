"""A three-node NATS cluster with MQTT enabled, on loopback ports the fixture picks itself.

NATS serves MQTT 3.1.1 (no MQTT v5, so no shared subscriptions) on top of JetStream: sessions,
retained messages and QoS 1 messages live in JetStream streams (``$MQTT_sess``, ``$MQTT_msgs``,
``$MQTT_rmsgs``) which ``mqtt { stream_replicas: 3 }`` replicates to every node, and each QoS 1
subscription is a JetStream consumer (``consumer_replicas``), so a session survives the node its
client was connected to. The MQTT side needs JetStream and a ``server_name`` on every node.

:class:`NatsCluster` writes one config per node into a temporary folder, starts the three
servers, waits until each answers ``/healthz`` and a QoS 1 message published on one node reaches a
subscriber on another (the MQTT streams exist and have leaders), and kills what is left after the
test. A missing ``nats-server`` binary skips the test locally and fails it under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgemeter.demo.loopback import free_port, stop_process
from shared.errors import BrokerError
from shared.mqtt import connect
from tests.conftest import unavailable

NATS_FALLBACKS = ("/usr/sbin/nats-server", "/usr/local/bin/nats-server")
READY_TIMEOUT_S = 60.0
ACK_WAIT_S = 10
"""How long a node waits for a PUBACK before it sends a QoS 1 message again (NATS: 30 s)."""


def find_nats_server() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    return next((p for p in NATS_FALLBACKS if Path(p).is_file()), None)


@dataclass
class NatsNode:
    name: str
    folder: Path
    client_port: int
    http_port: int
    cluster_port: int
    mqtt_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def log(self) -> Path:
        return self.folder / "nats.log"

    def config(self, routes: list[str]) -> str:
        return (
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f'jetstream {{ store_dir: "{self.folder / "js"}" }}\n'
            "cluster {\n"
            "  name: edgemeter-test\n"
            f"  listen: 127.0.0.1:{self.cluster_port}\n"
            f"  routes: [{', '.join(routes)}]\n"
            "}\n"
            "mqtt {\n"
            f"  listen: 127.0.0.1:{self.mqtt_port}\n"
            "  stream_replicas: 3\n"
            "  consumer_replicas: 3\n"
            f'  ack_wait: "{ACK_WAIT_S}s"\n'
            "}\n"
        )

    def start(self, binary: str, routes: list[str]) -> None:
        conf = self.folder / "nats.conf"
        conf.write_text(self.config(routes))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([binary, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz",
                                        timeout=1) as reply:
                return bool(json.loads(reply.read()).get("status") == "ok")
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, no Last Wills sent, nothing flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout_s=10)

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "no log"


@dataclass
class NatsCluster:
    nodes: list[NatsNode] = field(default_factory=list)

    def start(self, binary: str) -> None:
        routes = [f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes]
        for node in self.nodes:
            node.start(binary, routes)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            while not node.healthy():
                if node.process is not None and node.process.poll() is not None:
                    raise BrokerError(f"nats-server {node.name} exited: {node.log_tail()}")
                if time.monotonic() > deadline:
                    raise BrokerError(f"nats-server {node.name} not healthy: {node.log_tail()}")
                time.sleep(0.1)
        while not self._round_trip(self.nodes[0], self.nodes[-1]):
            if time.monotonic() > deadline:
                raise BrokerError("the NATS cluster did not carry a QoS 1 message between nodes "
                                  f"within {timeout_s:.0f} s: {self.nodes[0].log_tail()}")
            time.sleep(0.5)

    @staticmethod
    def _round_trip(publish_on: NatsNode, subscribe_on: NatsNode) -> bool:
        """A QoS 1 message from one node to a subscriber on another (creates the MQTT streams)."""
        topic = f"edgemeter/v1/_ready/{uuid.uuid4().hex[:8]}/status"
        got = threading.Event()
        granted = threading.Event()
        try:
            sub = connect(subscribe_on.url, f"ready-sub-{uuid.uuid4().hex[:8]}", protocol="3.1.1",
                          on_message=lambda _t, _p: got.set())
            try:
                sub.subscribe(topic, qos=1, on_granted=lambda ok, _d: ok and granted.set())
                if not granted.wait(10):
                    return False
                with connect(publish_on.url, f"ready-pub-{uuid.uuid4().hex[:8]}",
                             protocol="3.1.1") as pub:
                    pub.publish(topic, b"ready", qos=1, timeout_s=10)
                return got.wait(10)
            finally:
                sub.close()
        except BrokerError:
            return False

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture()
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three clustered nats-server processes with MQTT and JetStream, ready for QoS 1 traffic."""
    binary = find_nats_server()
    if binary is None:
        unavailable("nats-server is not installed (apt-get install nats-server)")
    assert binary is not None
    cluster = NatsCluster()
    ports: set[int] = set()
    while len(ports) < 12:  # four per node, all different
        ports.add(free_port())
    free = sorted(ports)
    for i, name in enumerate(("a", "b", "c")):
        folder = tmp_path / f"nats-{name}"
        folder.mkdir()
        cluster.nodes.append(NatsNode(name, folder, *free[4 * i:4 * i + 4]))
    try:
        cluster.start(binary)
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()
