"""Hostile input through the real ingest path: a real Mosquitto and ``edgemeter collector serve``.

The held-out corpus (``tests/shared/hostile_corpus/``, the kinds a collector reads) and 10,000
messages drawn by Hypothesis (:func:`tests.strategies.hostile_payloads` over valid results,
statuses, telemetry and job acks, plus valid messages on another device's topic) are published
to the collector. Every one is refused with a reason: a dead letter (counted in the collector's
``dead_letters``) for the result, status, telemetry and ack topics, and a dropped message for the
progress topic (never stored). The collector keeps serving: a valid result sent after them all
is stored. Dead-letter rows hold at most 64 KiB of payload each, with the full size and sha256.

Memory: the collector's resident set (``VmRSS`` of ``/proc/<pid>/status``, Linux) is read after
a warm-up (the corpus and three payloads of 1, 2 and 8 MiB) and again after the 10,000; the
growth must stay under :data:`RSS_GROWTH_LIMIT_MIB` (50 MiB). It measured a few MiB here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from collector.stores.dialects import database_for
from shared.messages import JobAck, Status, Telemetry
from shared.mqtt import connect
from shared.schema import SUPPORTED_SCHEMA_VERSIONS, BenchmarkResult, Strict
from shared.topics import TopicKind, Topics
from tests.factories import make_result
from tests.reliability.services import PersistentMosquitto, stored_count, wait_until
from tests.scale.services import CollectorProcess
from tests.strategies import VALID, hostile_payloads

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

CORPUS = Path(__file__).resolve().parents[1] / "shared" / "hostile_corpus"
CORPUS_DEVICE = ("default", "pi-01")
READ_KINDS = {"result", "status", "telemetry", "ack", "progress"}
DRAWN = 10_000
MAX_DRAWN_BYTES = 256 * 1024
"""Drawn payloads over this are skipped (Hypothesis makes up to 8 MiB ones); the warm-up sends
three of 1, 2 and 8 MiB itself."""
DEAD_LETTER_MAX_BYTES = 64 * 1024
RSS_GROWTH_LIMIT_MIB = 50
KIND_OF: dict[type[Strict], TopicKind] = {BenchmarkResult: TopicKind.RESULT,
                                          Status: TopicKind.STATUS,
                                          Telemetry: TopicKind.TELEMETRY, JobAck: TopicKind.ACK}

STILL_SUPPORTED = {f"schema_version {v!r}" for v in SUPPORTED_SCHEMA_VERSIONS}
"""``hostile_payloads`` takes every version but 1 for unknown; results read version 2 now."""

Hostile = tuple[str, str, bytes]
"""(topic, what it tries, payload)"""


def _valid_pool(per_kind: int = 8) -> list[Strict]:
    """A few valid messages of each kind, drawn once: hostile ones are made from them."""
    pool: list[Strict] = [make_result(device_id=f"pi-{n:02d}", seq=n) for n in range(per_kind)]
    for model in (Status, Telemetry, JobAck):
        drawn: list[Strict] = []

        @settings(max_examples=per_kind, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(VALID[model])
        def collect(message: Strict) -> None:
            drawn.append(message)  # noqa: B023 - run at once, in this iteration

        collect()
        pool.extend(drawn)
    return pool


def _topic(message: Any, device_id: str | None = None) -> str:
    return Topics.build(message.fleet, device_id or message.device_id, KIND_OF[type(message)])


def _hostile(pool: list[Strict]) -> st.SearchStrategy[Hostile]:
    def from_message(message: Strict) -> st.SearchStrategy[Hostile]:
        topic = _topic(message)
        wrong = _topic(message, device_id=f"{getattr(message, 'device_id', 'x')}-other")
        return st.one_of(
            hostile_payloads(st.just(message)).map(lambda p: (topic, p[0], p[1])),
            st.just((wrong, "valid message on another device's topic",
                     message.model_dump_json().encode())),
        )

    return st.sampled_from(pool).flatmap(from_message).filter(
        lambda h: len(h[2]) <= MAX_DRAWN_BYTES and h[1] not in STILL_SUPPORTED)


def draw_hostile(count: int) -> list[Hostile]:
    out: list[Hostile] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(_hostile(_valid_pool()))
    def collect(hostile: Hostile) -> None:
        out.append(hostile)

    collect()
    return out


def corpus() -> Iterator[Hostile]:
    fleet, device = CORPUS_DEVICE
    for path in sorted(CORPUS.iterdir()):
        kind = path.name.split("-", 1)[0]
        if path.suffix in (".json", ".bin") and kind in READ_KINDS:
            yield f"edgemeter/v1/{fleet}/{device}/{kind}", path.name, path.read_bytes()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def publish_all(url: str, messages: list[Hostile]) -> None:
    conn = connect(url, f"rel-hostile-{uuid.uuid4().hex[:6]}")
    try:
        infos = [conn.client.publish(topic, payload, qos=1) for topic, _, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=120)
    finally:
        conn.close()


# Drawing the 10,000 messages alone takes about 35 CPU seconds; on a busy machine, minutes.
@pytest.mark.timeout(600)
def test_hostile_messages_are_all_refused_with_a_reason_and_the_collector_keeps_serving(
    tmp_path: Path,
) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the collector's memory from /proc (Linux)")
    drawn = draw_hostile(DRAWN)
    assert len(drawn) == DRAWN
    held_out = list(corpus())
    fleet, device = CORPUS_DEVICE
    huge = [(f"edgemeter/v1/{fleet}/{device}/result", f"{size} bytes", b" " * size)
            for size in (2**20 + 1, 2 * 2**20, 8 * 2**20)]
    warm_up = held_out + huge
    dead_expected = sum(1 for topic, _, _ in warm_up + drawn if not topic.endswith("/progress"))

    broker = PersistentMosquitto(tmp_path / "broker").start()
    db_url = f"sqlite:///{tmp_path}/results.db"
    collector = CollectorProcess(broker.url, db_url, f"rel-hostile-{uuid.uuid4().hex[:6]}",
                                 tmp_path / "collector.log")

    def dead_letters_logged() -> int:
        return collector.text().count("dead letter from ")

    try:
        collector.wait_listening(60)
        publish_all(broker.url, warm_up)
        warm_dead = sum(1 for topic, _, _ in warm_up if not topic.endswith("/progress"))
        wait_until(lambda: dead_letters_logged() >= warm_dead, 120, "the warm-up dead-lettered")
        before_mib = rss_mib(collector.process.pid)
        publish_all(broker.url, drawn)
        sentinel = make_result(device_id="after-the-storm", seq=1)
        publish_all(broker.url, [(Topics.result(sentinel.fleet, sentinel.device_id), "valid",
                                  sentinel.model_dump_json().encode())])
        wait_until(lambda: dead_letters_logged() >= dead_expected, 300, "every one dead-lettered")
        wait_until(lambda: stored_count(db_url) >= 1, 60, "the valid result after them")
        after_mib = rss_mib(collector.process.pid)
        assert collector.process.poll() is None, "the collector died"
    finally:
        stats = collector.stop() if collector.process.poll() is None else {}
        broker.stop()
    growth = after_mib - before_mib

    engine = database_for(db_url).engine
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT reason, length(payload), size_bytes, sha256, count FROM dead_letters"
            )).all()
            stored = [r[0] for r in conn.execute(text("SELECT run_id FROM results"))]
    finally:
        engine.dispose()
    print(f"{len(warm_up) + len(drawn)} hostile messages: {stats.get('dead_letters')} dead "
          f"letters in {len(rows)} rows (largest {max(r[1] for r in rows)} bytes), 1 valid "
          f"result stored; collector RSS {before_mib:.1f} -> {after_mib:.1f} MiB "
          f"(+{growth:.1f}, limit {RSS_GROWTH_LIMIT_MIB})")
    assert stored == [str(sentinel.run_id)], "a hostile message was stored as a result"
    assert stats["dead_letters"] == dead_expected, (stats, dead_expected)
    assert all(reason.strip() and "\n" not in reason for reason, *_ in rows)
    assert all(length <= DEAD_LETTER_MAX_BYTES for _, length, *_ in rows)
    assert all(size >= length and len(sha) == 64 for _, length, size, sha, _ in rows)
    # one row per device and payload, counted again on each repeat except a bad status (agents
    # publish it retained: the store does not count what a broker hands out again)
    assert len(rows) <= sum(r[4] for r in rows) <= dead_expected
    assert growth < RSS_GROWTH_LIMIT_MIB, f"collector RSS grew {growth:.1f} MiB"
