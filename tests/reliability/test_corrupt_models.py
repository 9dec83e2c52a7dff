"""Corrupt model files on the CLI: ``edgemeter bench`` and ``edgemeter analyze`` end with one line
naming the file and what is wrong, never a traceback. (The daemon's side, a failed job, is in
``test_daemon_runtime_crash.py``.)

The files: the team's real models cut in half, and seeded random bytes with a model's extension.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edgemeter.cli import main

REAL = {".onnx": "vww_96_int8_qdq.onnx", ".tflite": "vww_96_int8.tflite"}


@pytest.fixture(params=["truncated.onnx", "truncated.tflite", "random.onnx", "random.tflite"])
def corrupt_model(request: pytest.FixtureRequest, tmp_path: Path, shared_models: Path) -> Path:
    name: str = request.param
    kind, suffix = name.split(".")
    path = tmp_path / name
    if kind == "truncated":
        real = (shared_models / REAL[f".{suffix}"]).read_bytes()
        path.write_bytes(real[: len(real) // 2])
    else:
        path.write_bytes(random.Random(name).randbytes(64 * 1024))
    return path


@pytest.mark.parametrize("command", [["bench", "--power", "none", "--iterations", "5"],
                                     ["analyze"]])
def test_a_corrupt_model_is_a_one_line_error_on_the_cli(
    command: list[str], corrupt_model: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code = main([command[0], str(corrupt_model), *command[1:]])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("edgemeter: error:") and corrupt_model.name in err, err
