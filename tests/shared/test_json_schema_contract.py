"""`edgemeter schema` is a contract a third party can check with any JSON Schema validator: only
standard keywords, real results validate, impossible ones do not (checked with ``jsonschema``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgemeter.cli import main
from shared.schema import EnergyReport, PowerScope
from tests.factories import make_result

jsonschema = pytest.importorskip("jsonschema")

WIRE_V1 = Path(__file__).with_name("wire_v1") / "result_vww_96_int8_quick.json"
#: pydantic's own constraint names, which no JSON Schema validator knows
PYDANTIC_KEYS = {"ge", "le", "gt", "lt", "multiple_of", "min_length", "max_length", "strict",
                 "allow_inf_nan", "max_digits", "decimal_places"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["schema"]) == 0
    loaded: dict[str, Any] = json.loads(out.getvalue())
    return loaded


def keywords(node: Any, in_properties: bool = False) -> Iterator[str]:
    """Every key used as a schema keyword (not the names under properties, $defs, ...)."""
    if isinstance(node, list):
        for item in node:
            yield from keywords(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if not in_properties:
                yield key
            named = not in_properties and key in ("properties", "$defs", "patternProperties",
                                                  "dependentSchemas", "mapping")
            yield from keywords(value, in_properties=named)


def test_the_schema_uses_standard_keywords_only(schema: dict[str, Any]) -> None:
    used = set(keywords(schema))
    assert not used & PYDANTIC_KEYS, sorted(used & PYDANTIC_KEYS)
    assert {"minimum", "maximum"} <= used
    jsonschema.Draft202012Validator.check_schema(schema)


def valid(schema: dict[str, Any], document: dict[str, Any]) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(document)


def test_real_results_validate(schema: dict[str, Any]) -> None:
    captured = json.loads(WIRE_V1.read_text())  # what a board sent running a team model
    assert valid(schema, captured)
    energy = EnergyReport(source="ina3221", scope=PowerScope.BOARD, estimated=False,
                          avg_power_w=4.2, energy_j=1.5, joules_per_inference=0.003, coverage=1.0)
    for result in (make_result(), make_result(schema_version=1), make_result(energy=energy)):
        assert valid(schema, json.loads(result.model_dump_json()))


def _with(path: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(make_result().model_dump_json())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(("path", "value"), [
    ("latency_ms.p50", -1.0),
    ("throughput_sps", -5.0),
    ("seq", -1),
    ("seq", 2**64),
    ("seq", "5"),
    ("schema_version", 0),
    ("schema_version", "2"),
    ("device.cpu_cores", 0),
    ("device.surprise", 1),
    ("role", "cloud"),
    ("run_id", 7),
])
def test_impossible_results_do_not_validate(schema: dict[str, Any], path: str, value: Any) -> None:
    assert not valid(schema, _with(path, value))
