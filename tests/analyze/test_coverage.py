"""``macs_coverage``: printed by ``edgemeter analyze`` and carried on the wire in ``ModelInfo``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from agent.analyze import analyze_model
from agent.commands import analyze as analyze_command
from shared.schema import MacsCoverage, ModelInfo
from tests.analyze.builders import const, image, save

pytestmark = pytest.mark.usefixtures("onnx_lib")


def _partial_model(tmp_path: Path) -> Path:
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"]),
        helper.make_node("Mystery", ["c"], ["m"], domain="com.example"),
        helper.make_node("Loop", ["", "", "m"], ["y"], body=helper.make_graph([], "b", [], [])),
    ]
    inputs, inits = [image("x", [1, 3, 8, 8])], [const("W", (4, 3, 3, 3))]
    return save(tmp_path, nodes, inputs, inits, domains=("com.example",))


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    analyze_command.register(parser.add_subparsers())
    args = parser.parse_args(["analyze", *argv])
    return int(args.func(args))


@pytest.mark.parametrize("as_json", [False, True])
def test_analyze_warns_on_stderr_once_per_uncounted_op_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    path = _partial_model(tmp_path)
    assert _run([str(path), *(["--json"] if as_json else [])]) == 0
    captured = capsys.readouterr()

    assert captured.err.splitlines() == [
        "edgemeter: warning: MACs not counted for op type Loop (1 node): no MAC formula for it, "
        "so MACs and FLOPs are a lower bound",
        "edgemeter: warning: MACs not counted for op type com.example::Mystery (1 node): no MAC "
        "formula for it, so MACs and FLOPs are a lower bound",
    ]
    if as_json:
        coverage = json.loads(captured.out)["macs_coverage"]
        assert coverage["uncounted"] == {"Loop": 1, "com.example::Mystery": 1}
        assert coverage["counted"] == {"Conv": 1}
    else:
        assert "(lower bound)" in captured.out
        assert "PARTIAL: not counted Loop x1, com.example::Mystery x1; counted Conv x1" in (
            captured.out
        )


def test_a_fully_counted_model_prints_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from onnx import helper

    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    path = save(tmp_path, nodes, [image("x", [1, 3, 8, 8])], [const("W", (4, 3, 3, 3))])
    assert _run([str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "complete (Conv x1)" in captured.out and "lower bound" not in captured.out


def test_coverage_travels_in_model_info_and_old_messages_still_validate(tmp_path: Path) -> None:
    coverage = analyze_model(_partial_model(tmp_path)).macs_coverage
    base = {
        "name": "m.onnx", "sha256": "0" * 64, "format": "onnx", "size_bytes": 1,
        "precision": "float32", "inputs": [], "outputs": [], "macs": 432,
    }
    info = ModelInfo.model_validate({**base, "macs_coverage": coverage.model_dump()})
    assert info.macs_coverage == coverage
    assert ModelInfo.model_validate_json(info.model_dump_json()).macs_coverage == coverage
    assert ModelInfo.model_validate(base).macs_coverage is None  # written before the field
    assert not coverage.complete and MacsCoverage().complete
