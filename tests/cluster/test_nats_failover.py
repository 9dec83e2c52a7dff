"""Agents fail over between clustered brokers and nothing is lost or stored twice.

Three NATS nodes A, B, C (``conftest.py``). Agents are the daemon's own :class:`agent.daemon.link.Link`
built from ``[mqtt] url = A, urls = [C]`` (the fail-over list); they publish results to A; the
collector's persistent session lives on B. A is SIGKILLed mid-stream: each agent's Link loses A and
connects to C, and re-sends the result that was waiting for its PUBACK (at least once, as the
daemon's spool does until the receipt). The collector keeps its session on B throughout; messages A
acknowledged before it died are in the replicated JetStream stream and reach B from the surviving
replicas. Every result sent is stored exactly once (the store keeps one row per run_id).

What NATS's MQTT gives the collector, checked here: persistent sessions (``clean_session=false``),
manual acknowledgement and QoS 1 redelivery of what was not acknowledged (after ``ack_wait``, or
on reconnect). What it does not give: MQTT v5 (so no shared subscriptions, no Receive Maximum, no
session expiry interval; the collector falls back to 3.1.1 and subscribes plainly), QoS 2 (not in
2.9), and a Last Will for clients of a node that is killed (the will lives on that node).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from agent.daemon.config import MqttSettings as AgentMqttSettings
from agent.daemon.link import Link, LinkOptions
from collector.config import MqttSettings as CollectorMqttSettings
from collector.service import CollectorService
from collector.stores.base import open_store
from edgemeter.commands.simulate import synthetic_result
from shared.errors import BrokerError
from shared.messages import Status
from shared.topics import TopicKind, Topics
from tests.cluster.conftest import NatsCluster

pytestmark = [pytest.mark.slow]

FLEET = "cluster"
AGENTS = 4
RESULTS_PER_AGENT = 120
KILL_AFTER = AGENTS * RESULTS_PER_AGENT // 3
DEADLINE_S = 90.0


class Agent:
    """One device: the daemon's Link and a loop that publishes its results until each is acked."""

    def __init__(self, device_id: str, mqtt: AgentMqttSettings, rng: random.Random) -> None:
        self.device_id = device_id
        self.results = [synthetic_result(rng, device_id, FLEET, seq, i)
                        for i, seq in enumerate(range(1, RESULTS_PER_AGENT + 1))]
        self.retries = 0
        self.published = 0
        self.link = Link(mqtt.broker_urls(), LinkOptions(client_id=f"edgemeter-agent-{device_id}"),
                         will=lambda: (self.topic(TopicKind.STATUS), self.status("offline")),
                         on_connect=self._birth, on_message=lambda _t, _p: None)

    def topic(self, kind: TopicKind) -> str:
        return Topics.build(FLEET, self.device_id, kind)

    def status(self, state: str) -> bytes:
        return Status(device_id=self.device_id, fleet=FLEET, status=state,  # type: ignore[arg-type]
                      bd_seq=1).model_dump_json(exclude_none=True).encode()

    def _birth(self, link: Link) -> None:
        link.publish(self.topic(TopicKind.STATUS), self.status("online"), qos=1, retain=True)

    def run(self, deadline: float) -> None:
        for result in self.results:
            payload = result.model_dump_json().encode()
            while True:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.device_id}: not every result acknowledged in time")
                if not self.link.wait_connected(1.0):
                    continue
                try:
                    self.link.publish(self.topic(TopicKind.RESULT), payload, qos=1, timeout_s=5)
                    break
                except BrokerError:  # lost the node mid-publish: again, on the next one
                    self.retries += 1
            self.published += 1


def test_agents_fail_over_when_their_node_is_killed_and_every_result_is_stored_once(
    nats_cluster: NatsCluster, tmp_path: Path,
) -> None:
    node_a, node_b, node_c = nats_cluster.nodes
    store = open_store(f"sqlite:///{tmp_path / 'results.db'}")
    collector = CollectorService(store, CollectorMqttSettings(
        url=node_b.url, client_id="edgemeter-collector-cluster-test", group="cluster"))
    collector.start()
    rng = random.Random(5)
    mqtt = AgentMqttSettings(url=node_a.url, urls=[node_c.url])
    agents = [Agent(f"edge-{i:02d}", mqtt, rng) for i in range(AGENTS)]
    deadline = time.monotonic() + DEADLINE_S
    errors: list[BaseException] = []

    def drive(agent: Agent) -> None:
        try:
            agent.run(deadline)
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    try:
        for agent in agents:
            agent.link.start()
        assert all(a.link.wait_connected(20) for a in agents), "agents did not connect to node A"
        assert {a.link.url.port for a in agents if a.link.url} == {node_a.mqtt_port}
        threads = [threading.Thread(target=drive, args=(a,), daemon=True) for a in agents]
        for thread in threads:
            thread.start()
        while sum(a.published for a in agents) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.01)
        published_before_kill = sum(a.published for a in agents)
        node_a.kill()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not errors, errors
        sent = sorted(str(r.run_id) for a in agents for r in a.results)
        while collector.stats["stored"] < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert collector.wait_idle(10)
        stored = sorted(str(r.run_id) for r in store.list_results())
        subscription = collector.subscription
    finally:
        for agent in agents:
            agent.link.stop()
        collector.stop()
        store.close()

    assert KILL_AFTER <= published_before_kill < len(sent), "node A was not killed mid-stream"
    assert all(a.link.url is not None and a.link.url.port == node_c.mqtt_port for a in agents)
    assert len(stored) == len(sent)
    assert stored == sent  # none missing, none twice
    assert subscription == Topics.subscription(TopicKind.RESULT)  # 3.1.1: no $share/
