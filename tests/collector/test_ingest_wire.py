"""The collector reads both wire versions and both payload forms: schema 1 and 2, plain and
zlib-compressed JSON; stores JSON either way; and every reader (compare, run detail) reads both."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.compare.engine import fidelity_agreement
from collector.config import IngestSettings, MqttSettings
from collector.export import export_results
from collector.http.detail import cdf, histogram
from collector.ingest import Rejection, ingest
from collector.service import CollectorService
from collector.stores.base import Store, open_store
from shared.mqtt import MqttConnection
from shared.payload import pack
from shared.schema import MAX_MESSAGE_BYTES, BenchmarkResult, Fidelity, RawLatencies
from shared.topics import Topics
from tests.collector.conftest import wait_for
from tests.factories import make_result

V1_REAL = Path(__file__).parents[1] / "shared" / "wire_v1" / "result_vww_96_int8_quick.json"
TOPIC = Topics.result("default", "pi-01")


def _v1_real() -> tuple[str, bytes]:
    payload = V1_REAL.read_bytes()
    doc = json.loads(payload)
    return Topics.result(doc["fleet"], doc["device_id"]), payload


def test_a_compressed_result_is_read_as_its_json() -> None:
    result = make_result()
    packed = pack(result.model_dump_json().encode())
    assert packed[0] == 0x78
    assert ingest(TOPIC, packed) == result


def test_a_corrupt_zlib_payload_is_rejected_as_not_zlib() -> None:
    packed = pack(make_result().model_dump_json().encode())
    out = ingest(TOPIC, packed[: len(packed) // 2])
    assert isinstance(out, Rejection) and out.code == "not-zlib", out


def test_a_payload_that_inflates_past_the_limit_is_too_large_and_not_inflated() -> None:
    bomb = zlib.compress(b"{" + b" " * (8 * MAX_MESSAGE_BYTES) + b"}", 9)
    assert len(bomb) < MAX_MESSAGE_BYTES // 10
    out = ingest(TOPIC, bomb)
    assert isinstance(out, Rejection) and out.code == "too-large", out


def test_a_version_1_result_from_the_factory_is_accepted_unchanged() -> None:
    result = make_result(schema_version=1)
    assert isinstance(result.latencies, RawLatencies)
    assert ingest(TOPIC, result.model_dump_json().encode()) == result


def test_a_real_version_1_result_is_accepted_plain_and_compressed() -> None:
    topic, payload = _v1_real()
    plain = ingest(topic, payload)
    assert isinstance(plain, BenchmarkResult), plain
    assert plain.schema_version == 1
    assert ingest(topic, pack(payload)) == plain


def test_readers_decode_a_real_version_1_result() -> None:
    topic, payload = _v1_real()
    result = ingest(topic, payload)
    assert isinstance(result, BenchmarkResult) and result.latencies is not None
    raw = result.latencies
    for q, exact in ((0.5, result.latency_ms.p50), (0.99, result.latency_ms.p99)):
        assert raw.quantile_ms(q) == pytest.approx(exact, rel=raw.rel_error)
    hist, curve = histogram(result), cdf(result)
    assert hist is not None and curve is not None
    assert sum(hist["counts"]) == result.latency_ms.count
    assert hist["edges_ms"][0] <= result.latency_ms.min <= result.latency_ms.max <= hist["edges_ms"][-1]
    assert curve["fraction"][-1] == 1.0
    assert isinstance(result.fidelity, Fidelity)
    same = fidelity_agreement(result.fidelity, result.fidelity)
    assert (same.top1_agreement, same.mae, same.pairs) == (1.0, 0.0, 32)
    assert same.cosine == pytest.approx(1.0)


@pytest.fixture()
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    store = open_store(sqlite_url)
    yield store
    store.close()


@pytest.mark.mqtt
def test_the_service_stores_compressed_and_version_1_results_as_json(
    sqlite_store: Store, mosquitto_url: str, publisher: MqttConnection
) -> None:
    service = CollectorService(sqlite_store, MqttSettings(
        url=mosquitto_url, client_id=f"edgemeter-collector-wire-{uuid.uuid4().hex[:8]}"),
        IngestSettings())
    service.start()
    try:
        v2 = [make_result(device_id="pi-01", seq=i) for i in range(3)]
        for result in v2:
            publisher.publish(TOPIC, pack(result.model_dump_json().encode()), qos=1)
        v1_topic, v1_payload = _v1_real()
        publisher.publish(v1_topic, v1_payload, qos=1)
        assert wait_for(lambda: service.stats["stored"] == 4), service.stats
        assert service.wait_idle(5)
    finally:
        service.stop()
    stored = {str(r.run_id): r for r in sqlite_store.list_results()}
    assert {str(r.run_id): r for r in v2}.items() <= stored.items()
    assert stored[json.loads(v1_payload)["run_id"]].schema_version == 1
    assert sqlite_store.list_dead_letters() == []
    with sqlite_store.engine.connect() as conn:  # type: ignore[attr-defined]
        texts = [row[0] for row in conn.exec_driver_sql("SELECT result FROM results").all()]
    assert len(texts) == 4
    assert all(json.loads(text)["schema_version"] in (1, 2) for text in texts)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_writes_version_1_and_2_results_side_by_side(fmt: str) -> None:
    v1 = BenchmarkResult.model_validate_json(V1_REAL.read_bytes())
    v2 = make_result()
    out = io.StringIO()
    assert export_results([v1, v2], fmt, stream=out) == 2
    if fmt == "jsonl":
        back = [BenchmarkResult.model_validate_json(line) for line in out.getvalue().splitlines()]
        assert back == [v1, v2]
    else:
        rows = list(csv.DictReader(io.StringIO(out.getvalue())))
        assert [r["schema_version"] for r in rows] == ["1", "2"]
        assert rows[0]["latencies_buckets"] and not rows[0]["latencies_runs"]
        assert rows[1]["latencies_runs"] and not rows[1]["latencies_buckets"]
