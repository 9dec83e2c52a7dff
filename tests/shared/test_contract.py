"""The wire contract: schema round trips, topic names, and the package's own identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import shared
from shared.schema import BenchmarkResult, json_schema
from shared.topics import TopicKind, Topics
from tests.factories import make_result

REPO = Path(__file__).resolve().parents[2]


def test_shared_package_is_the_repository_one_not_a_namesake_from_pypi() -> None:
    assert Path(shared.__file__).resolve().is_relative_to(REPO)


def test_result_survives_a_json_round_trip_unchanged() -> None:
    result = make_result()
    again = BenchmarkResult.model_validate_json(result.model_dump_json())
    assert again == result


def test_result_json_validates_against_the_published_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(make_result().model_dump_json()), json_schema())


def test_unknown_schema_version_is_rejected() -> None:
    data = json.loads(make_result().model_dump_json())
    data["schema_version"] = 99
    with pytest.raises(ValidationError, match="schema_version"):
        BenchmarkResult.model_validate(data)


def test_unknown_fields_are_rejected_so_typos_never_pass() -> None:
    data = json.loads(make_result().model_dump_json())
    data["latency_ms"]["p5O"] = 1.0
    with pytest.raises(ValidationError):
        BenchmarkResult.model_validate(data)


@pytest.mark.parametrize("version", [1, 2])
def test_raw_latency_histogram_recomputes_percentiles_within_its_resolution(version: int) -> None:
    result = make_result(p50_ms=3.0, schema_version=version)
    assert result.latencies is not None
    assert result.latencies.count == result.latency_ms.count
    for q, exact in ((0.5, result.latency_ms.p50), (0.99, result.latency_ms.p99)):
        assert result.latencies.quantile_ms(q) == pytest.approx(exact, rel=result.latencies.rel_error)


def test_topics_are_built_and_parsed_in_one_place() -> None:
    topic = Topics.result("lab", "pi-01")
    assert topic == "edgemeter/v1/lab/pi-01/result"
    addr = Topics.parse(topic)
    assert addr is not None and (addr.fleet, addr.device_id, addr.kind) == ("lab", "pi-01", TopicKind.RESULT)
    assert Topics.parse("edgemeter/v2/lab/pi-01/result") is None
    assert Topics.subscription(TopicKind.RESULT) == "edgemeter/v1/+/+/result"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 200])
def test_device_ids_that_would_break_topics_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Topics.result("lab", bad)
    with pytest.raises(ValidationError):
        make_result(device_id=bad)
