"""ingest(): every message becomes a result or a rejection with a reason, whatever it holds."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from collector.ingest import MAX_PAYLOAD_BYTES, Rejection, ingest
from shared.schema import BenchmarkResult
from tests.factories import make_result

TOPIC = "edgemeter/v1/default/pi-01/result"


def valid_dict() -> dict[str, Any]:
    return json.loads(make_result().model_dump_json())


def with_(**changes: Any) -> bytes:
    data = valid_dict()
    data.update(changes)
    return json.dumps(data).encode()


def without(key: str) -> bytes:
    data = valid_dict()
    del data[key]
    return json.dumps(data).encode()


def test_a_valid_result_is_accepted() -> None:
    result = make_result()
    out = ingest(TOPIC, result.model_dump_json().encode())
    assert isinstance(out, BenchmarkResult)
    assert out == result


def test_a_payload_of_exactly_the_limit_is_not_too_large() -> None:
    data = valid_dict()
    body = json.dumps(data)
    data["labels"] = {"pad": "x" * (MAX_PAYLOAD_BYTES - len(body) - len(', "pad": ""') - 4)}
    payload = json.dumps(data).encode()
    payload = payload + b" " * (MAX_PAYLOAD_BYTES - len(payload))
    assert len(payload) == MAX_PAYLOAD_BYTES
    assert isinstance(ingest(TOPIC, payload), BenchmarkResult)


HOSTILE: list[tuple[str, str, bytes, str]] = [
    # id, topic, payload, expected code (and the reason must contain the id's hint below)
    ("random-bytes", TOPIC, b"\xff" + random.Random(1).randbytes(511),
     "not-utf8"),
    ("two-mib", TOPIC, b"{" + b" " * (2 * 1024 * 1024) + b"}", "too-large"),
    ("one-over", TOPIC, b" " * (MAX_PAYLOAD_BYTES + 1), "too-large"),
    ("empty", TOPIC, b"", "not-json"),
    ("truncated", TOPIC, b'{"schema_version": 1', "not-json"),
    ("deep-array", TOPIC, b"[" * 200_000 + b"]" * 200_000, "not-json"),
    ("deep-object", TOPIC, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "not-json"),
    ("nan", TOPIC, with_(throughput_sps=float("nan")), "not-json"),
    ("infinity", TOPIC, b'{"schema_version": 1, "x": -Infinity}', "not-json"),
    ("huge-float", TOPIC, b'{"schema_version": 1, "x": 1e400}', "not-json"),
    ("huge-int-digits", TOPIC, b'{"schema_version": 1, "x": ' + b"9" * 5000 + b"}", "not-json"),
    ("null", TOPIC, b"null", "not-object"),
    ("list", TOPIC, b"[1, 2, 3]", "not-object"),
    ("string", TOPIC, b'"result"', "not-object"),
    ("number", TOPIC, b"42", "not-object"),
    ("no-version", TOPIC, without("schema_version"), "schema-version"),
    ("version-3", TOPIC, with_(schema_version=3), "schema-version"),
    ("version-string", TOPIC, with_(schema_version="1"), "schema-version"),
    ("version-bool", TOPIC, with_(schema_version=True), "schema-version"),
    ("version-float", TOPIC, with_(schema_version=2.0), "schema-version"),
    ("duplicate-run-id-key", TOPIC,
     with_().replace(b'"run_id":', b'"run_id": "00000000-0000-4000-8000-000000000000", "run_id":', 1),
     "duplicate-key"),
    ("duplicate-nested-key", TOPIC,
     with_().replace(b'"p50":', b'"p50": 1.0, "p50":', 1), "duplicate-key"),
    ("empty-object", TOPIC, b"{}", "schema-version"),
    ("wrong-types", TOPIC, with_(seq="many", model=3), "invalid"),
    ("missing-field", TOPIC, without("latency_ms"), "invalid"),
    ("extra-field", TOPIC, with_(surprise=1), "invalid"),
    ("negative-seq", TOPIC, with_(seq=-1), "invalid"),
    ("naive-created-at", TOPIC, with_(created_at="2026-01-01T00:00:00"), "invalid"),
    ("overflowing-date", TOPIC, with_(created_at="0001-01-01T00:00:00+05:00"), "invalid"),
    ("bad-device-id", TOPIC, with_(device_id="a/b"), "invalid"),
    ("huge-seq", TOPIC, with_(seq=2**70), "invalid"),  # the schema bounds seq to 64 bits
    ("nul-in-string", TOPIC, with_(labels={"site": "a\u0000b"}), "unstorable"),
    ("lone-surrogate", TOPIC, with_(labels={"site": "\ud800"}), "unstorable"),
    ("other-device", "edgemeter/v1/default/pi-02/result", make_result().model_dump_json().encode(),
     "mismatch"),
    ("other-fleet", "edgemeter/v1/lab/pi-01/result", make_result().model_dump_json().encode(),
     "mismatch"),
    ("status-topic", "edgemeter/v1/default/pi-01/status", make_result().model_dump_json().encode(),
     "topic"),
    ("foreign-topic", "sensors/kitchen/temp", b"{}", "topic"),
    ("v2-topic", "edgemeter/v2/default/pi-01/result", b"{}", "topic"),
]


@pytest.mark.parametrize(("topic", "payload", "code"), [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])
def test_hostile_payloads_are_rejected_with_a_reason(topic: str, payload: bytes, code: str) -> None:
    out = ingest(topic, payload)
    assert isinstance(out, Rejection), out
    assert out.code == code, out.reason
    assert out.reason and "\n" not in out.reason and len(out.reason) <= 400


def test_reasons_name_the_version_and_the_failing_fields() -> None:
    version = ingest(TOPIC, with_(schema_version=7))
    assert isinstance(version, Rejection)
    assert "schema_version 7" in version.reason and "reads 1" in version.reason
    fields = ingest(TOPIC, with_(seq="many", throughput_sps=-1))
    assert isinstance(fields, Rejection)
    assert "seq" in fields.reason and "throughput_sps" in fields.reason
    nested = ingest(TOPIC, with_(latency_ms={**valid_dict()["latency_ms"], "p50": "fast"}))
    assert isinstance(nested, Rejection) and "latency_ms.p50" in nested.reason
    mismatch = ingest("edgemeter/v1/default/pi-02/result", with_())
    assert isinstance(mismatch, Rejection) and "pi-02" in mismatch.reason


def test_a_duplicate_key_is_named_in_the_reason() -> None:
    out = ingest(TOPIC, with_().replace(b'"seq":', b'"seq": 5, "seq":', 1))
    assert isinstance(out, Rejection) and out.code == "duplicate-key"
    assert "'seq' appears twice" in out.reason


def test_many_errors_are_summarised_in_one_short_line() -> None:
    out = ingest(TOPIC, json.dumps({"schema_version": 1, **{f"k{i}" * 50: i for i in range(50)}})
                 .encode())
    assert isinstance(out, Rejection) and out.code == "invalid"
    assert "more)" in out.reason and len(out.reason) <= 400


def test_random_mutations_never_raise() -> None:
    rng = random.Random(42)
    base = make_result().model_dump_json().encode()
    kinds: dict[str, int] = {}
    for _ in range(400):
        data = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos : pos + rng.randint(1, 20)]
            else:
                data[pos:pos] = rng.choice([b"{", b"[", b'"', b"\\u0000", b"1e999", b",", b"\xff"])
        out = ingest(TOPIC, bytes(data))
        assert isinstance(out, (BenchmarkResult, Rejection))
        key = out.code if isinstance(out, Rejection) else "accepted"
        kinds[key] = kinds.get(key, 0) + 1
    assert "error" not in kinds, kinds
    assert len(kinds) >= 3


def test_wrong_python_types_do_not_raise() -> None:
    assert isinstance(ingest(TOPIC, None), Rejection)  # type: ignore[arg-type]
    assert isinstance(ingest(None, b"{}"), Rejection)  # type: ignore[arg-type]
    assert isinstance(ingest(TOPIC, bytearray(with_())), BenchmarkResult)  # type: ignore[arg-type]


def test_read_validates_every_kind_the_collector_subscribes_to() -> None:
    from collector.ingest import read
    from shared.messages import Status, Telemetry

    status = Status(device_id="pi-01", fleet="default", status="online", bd_seq=1)
    out = read("edgemeter/v1/default/pi-01/status", status.model_dump_json().encode())
    assert out == status
    telemetry = Telemetry(device_id="pi-01", fleet="default", uptime_s=1)
    wrong = read("edgemeter/v1/default/pi-02/telemetry", telemetry.model_dump_json().encode())
    assert isinstance(wrong, Rejection) and wrong.code == "mismatch"
    nan = read("edgemeter/v1/default/pi-01/telemetry",
               telemetry.model_dump_json().replace('"uptime_s":1.0', '"uptime_s":NaN').encode())
    assert isinstance(nan, Rejection) and nan.code == "not-json", nan
    receipt = read("edgemeter/v1/default/pi-01/receipt", b"{}")
    assert isinstance(receipt, Rejection) and receipt.code == "topic"


def test_a_nul_escape_inside_an_escaped_backslash_is_no_nul() -> None:
    data = valid_dict()
    data["labels"] = {"path": "C:\\u0000dir"}  # backslash, then the text u0000: no NUL
    out = ingest(TOPIC, json.dumps(data).encode())
    assert isinstance(out, BenchmarkResult) and out.labels["path"] == "C:\\u0000dir"
