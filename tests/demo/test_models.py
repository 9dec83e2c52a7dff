"""The generated demo models: real int8 networks that run, written byte-for-byte the same."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.errors import ModelError
from edgemeter.demo import models
from shared.errors import MissingExtraError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
litert = pytest.importorskip("ai_edge_litert.interpreter")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo-models")
    models.generate_demo_models(directory)
    return directory


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generate_demo_models_returns_every_file_it_wrote(tmp_path: Path) -> None:
    paths = models.generate_demo_models(tmp_path)

    assert [p.name for p in paths] == [
        models.ONNX_FLOAT_NAME,
        models.ONNX_INT8_NAME,
        models.TFLITE_FLOAT_NAME,
        models.TFLITE_INT8_NAME,
    ]
    assert all(p.parent == tmp_path and p.stat().st_size > 1000 for p in paths)


def test_generation_is_deterministic_byte_for_byte(demo_dir: Path, tmp_path: Path) -> None:
    again = models.generate_demo_models(tmp_path)

    assert {p.name: _sha256(p) for p in again} == {
        p.name: _sha256(demo_dir / p.name) for p in again
    }


def test_regenerating_leaves_up_to_date_files_untouched(tmp_path: Path) -> None:
    first = models.generate_demo_models(tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for p in first}

    second = models.generate_demo_models(tmp_path)

    assert second == first
    assert {p: p.stat().st_mtime_ns for p in second} == mtimes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in first)


def test_regenerating_repairs_a_corrupted_model(demo_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / models.TFLITE_INT8_NAME
    target.write_bytes(b"not a model")

    models.generate_tflite_int8(target)

    assert _sha256(target) == _sha256(demo_dir / models.TFLITE_INT8_NAME)


def test_onnx_model_is_int8_qdq_with_per_channel_weights(demo_dir: Path) -> None:
    model = onnx.load(str(demo_dir / models.ONNX_INT8_NAME))
    op_types = {node.op_type for node in model.graph.node}
    inits = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    int8_weights = [name for name, value in inits.items() if value.dtype == np.int8 and value.ndim == 4]

    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= op_types
    assert len(int8_weights) == 7  # stem + 3 depthwise + 3 pointwise convolutions
    per_channel_scales = [
        inits[node.input[1]]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in int8_weights
    ]
    assert len(per_channel_scales) == 7
    assert all(scale.ndim == 1 and scale.size > 1 for scale in per_channel_scales)


def test_onnx_model_stays_loadable_by_older_onnxruntimes(demo_dir: Path) -> None:
    model = onnx.load(str(demo_dir / models.ONNX_INT8_NAME))

    assert model.ir_version <= models.ONNX_IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", models.ONNX_OPSET)]


def test_generation_logs_no_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        models.generate_demo_models(tmp_path)

    assert [r.getMessage() for r in caplog.records if r.levelname != "INFO"] == []


def test_onnx_model_runs_with_a_dynamic_batch(demo_dir: Path) -> None:
    session = ort.InferenceSession(
        str(demo_dir / models.ONNX_INT8_NAME), providers=["CPUExecutionProvider"]
    )
    (model_input,) = session.get_inputs()
    batch = np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32)

    (logits,) = session.run(None, {model_input.name: batch})

    assert model_input.shape == ["N", 3, 64, 64]
    assert logits.shape == (3, models.NUM_CLASSES)
    assert np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1])


def test_float_onnx_model_agrees_roughly_with_the_int8_one(demo_dir: Path) -> None:
    batch = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    outputs = []
    for name in (models.ONNX_FLOAT_NAME, models.ONNX_INT8_NAME):
        session = ort.InferenceSession(str(demo_dir / name), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {"input": batch})[0])

    float_logits, int8_logits = outputs
    assert np.abs(float_logits - int8_logits).max() < 0.1 * np.abs(float_logits).max() + 0.05


def _tflite_interpreter(path: Path) -> object:
    interpreter = litert.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def _run_tflite(interpreter: object, image: np.ndarray) -> np.ndarray:
    (inp,) = interpreter.get_input_details()  # type: ignore[attr-defined]
    (out,) = interpreter.get_output_details()  # type: ignore[attr-defined]
    interpreter.set_tensor(inp["index"], image)  # type: ignore[attr-defined]
    interpreter.invoke()  # type: ignore[attr-defined]
    return np.array(interpreter.get_tensor(out["index"]))  # type: ignore[attr-defined]


def test_tflite_model_has_int8_input_and_output(demo_dir: Path) -> None:
    interpreter = _tflite_interpreter(demo_dir / models.TFLITE_INT8_NAME)
    (inp,) = interpreter.get_input_details()  # type: ignore[attr-defined]
    (out,) = interpreter.get_output_details()  # type: ignore[attr-defined]

    assert inp["dtype"] == np.int8 and list(inp["shape"]) == [1, 32, 32, 3]
    assert inp["quantization"] == (pytest.approx(1 / 255), -128)
    assert out["dtype"] == np.int8 and list(out["shape"]) == [1, models.NUM_CLASSES]
    assert out["quantization"][0] > 0


def test_tflite_model_gives_different_outputs_for_different_inputs(demo_dir: Path) -> None:
    interpreter = _tflite_interpreter(demo_dir / models.TFLITE_INT8_NAME)
    rng = np.random.default_rng(2)
    images = [
        np.full((1, 32, 32, 3), -128, dtype=np.int8),
        np.full((1, 32, 32, 3), 127, dtype=np.int8),
        rng.integers(-128, 128, size=(1, 32, 32, 3), dtype=np.int8),
        rng.integers(-128, 0, size=(1, 32, 32, 3), dtype=np.int8),
    ]

    outputs = [_run_tflite(interpreter, image) for image in images]

    assert all(o.dtype == np.int8 for o in outputs)
    assert len({o.tobytes() for o in outputs}) == len(outputs)
    assert all(np.unique(o).size > 1 for o in outputs)  # not saturated to one value


def test_tflite_model_uses_quantized_convolutions(demo_dir: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    data = (demo_dir / models.TFLITE_INT8_NAME).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    ops = schema.BuiltinOperator
    codes = {code.builtinCode for code in model.operatorCodes}

    assert data[4:8] == b"TFL3"
    assert {ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED} <= codes
    assert model.buffers[0].data is None or len(model.buffers[0].data) == 0
    types = {t.type for t in model.subgraphs[0].tensors}
    assert types <= {schema.TensorType.INT8, schema.TensorType.INT32}


def _tflite_model(path: Path) -> Any:
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))


def test_float_tflite_model_has_float32_input_and_output(demo_dir: Path) -> None:
    interpreter = _tflite_interpreter(demo_dir / models.TFLITE_FLOAT_NAME)
    (inp,) = interpreter.get_input_details()  # type: ignore[attr-defined]
    (out,) = interpreter.get_output_details()  # type: ignore[attr-defined]

    assert inp["dtype"] == np.float32 and list(inp["shape"]) == [1, 32, 32, 3]
    assert out["dtype"] == np.float32 and list(out["shape"]) == [1, models.NUM_CLASSES]
    assert inp["quantization"] == (0.0, 0) and out["quantization"] == (0.0, 0)


def test_float_tflite_model_is_float32_throughout(demo_dir: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    model = _tflite_model(demo_dir / models.TFLITE_FLOAT_NAME)
    tensors = model.subgraphs[0].tensors
    ops = schema.BuiltinOperator
    codes = {code.builtinCode for code in model.operatorCodes}

    assert {ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.FULLY_CONNECTED} <= codes
    assert all(t.quantization is None or not t.quantization.scale for t in tensors)
    # The one exception is RESHAPE's new-shape operand, an int32 constant by definition.
    assert {t.name for t in tensors if t.type != schema.TensorType.FLOAT32} == {b"flatten/shape"}


def test_float_tflite_model_holds_the_int8_models_weights_unquantized(demo_dir: Path) -> None:
    def constants(path: Path) -> dict[str, tuple[Any, np.ndarray]]:
        model = _tflite_model(path)
        return {
            t.name.decode(): (t, np.asarray(model.buffers[t.buffer].data, dtype=np.uint8))
            for t in model.subgraphs[0].tensors
            if t.name.endswith(b"/weights")
        }

    float_weights = constants(demo_dir / models.TFLITE_FLOAT_NAME)
    int8_weights = constants(demo_dir / models.TFLITE_INT8_NAME)

    assert len(float_weights) == 6 and float_weights.keys() == int8_weights.keys()
    for name, (tensor, raw) in float_weights.items():
        weight = raw.view("<f4").reshape(tensor.shape)
        q_tensor, q_raw = int8_weights[name]
        assert list(q_tensor.shape) == list(tensor.shape)
        shape = [1] * weight.ndim
        if len(q_tensor.quantization.scale) > 1:
            shape[q_tensor.quantization.quantizedDimension] = -1
        scales = np.array(q_tensor.quantization.scale, dtype=np.float32).reshape(shape)
        dequantized = q_raw.view(np.int8).reshape(tensor.shape) * scales
        # Symmetric rounding moves each weight by at most half a quantization step.
        assert np.all(np.abs(weight - dequantized) <= 0.5 * scales * (1 + 1e-5)), name


def test_float_tflite_model_gives_different_outputs_for_different_inputs(demo_dir: Path) -> None:
    interpreter = _tflite_interpreter(demo_dir / models.TFLITE_FLOAT_NAME)
    rng = np.random.default_rng(2)
    images = [
        np.zeros((1, 32, 32, 3), dtype=np.float32),
        np.ones((1, 32, 32, 3), dtype=np.float32),
        rng.random((1, 32, 32, 3), dtype=np.float32),
        rng.random((1, 32, 32, 3), dtype=np.float32) * 0.5,
    ]

    outputs = [_run_tflite(interpreter, image) for image in images]

    assert all(o.dtype == np.float32 and np.isfinite(o).all() for o in outputs)
    assert len({o.tobytes() for o in outputs}) == len(outputs)


def test_float_tflite_generation_is_deterministic(tmp_path: Path) -> None:
    first = models.generate_tflite_float(tmp_path / "a.tflite")
    second = models.generate_tflite_float(tmp_path / "b.tflite")

    assert first.read_bytes()[4:8] == b"TFL3"
    assert _sha256(first) == _sha256(second)


def _photo_like_images(seed: int, count: int) -> np.ndarray:
    """int8 images (scale 1/255, zero point -128) of varied brightness per channel and contrast."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        base = rng.uniform(0.1, 0.9, size=3)
        contrast = rng.uniform(0.05, 0.5)
        image = np.clip(base + contrast * rng.standard_normal((1, 32, 32, 3)), 0.0, 1.0)
        images.append(np.round(image * 255.0) - 128.0)
    return np.stack(images).astype(np.int8)


def test_float_tflite_model_agrees_with_the_dequantized_int8_one(demo_dir: Path) -> None:
    float_model = _tflite_interpreter(demo_dir / models.TFLITE_FLOAT_NAME)
    int8_model = _tflite_interpreter(demo_dir / models.TFLITE_INT8_NAME)
    (out,) = int8_model.get_output_details()  # type: ignore[attr-defined]
    scale, zero_point = out["quantization"]
    images = _photo_like_images(seed=3, count=8)  # the second one saturates the int8 logits

    float_logits = np.stack([
        _run_tflite(float_model, (image.astype(np.float32) + 128.0) / np.float32(255.0))[0]
        for image in images
    ])
    int8_logits = np.stack([
        (_run_tflite(int8_model, image)[0].astype(np.float32) - zero_point) * scale
        for image in images
    ])

    # The int8 output cannot leave its range; inside it, rounding through six quantized layers
    # adds up to a few output steps (under 5 on 500 such images; 8 leaves room).
    low, high = (-128 - zero_point) * scale, (127 - zero_point) * scale
    bound = 8 * scale
    assert np.abs(np.clip(float_logits, low, high) - int8_logits).max() <= bound
    # Hence the same winner wherever the float model's top two are more than 2 bounds apart.
    top_two = np.sort(float_logits, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 2 * bound
    assert clear.sum() >= 6
    assert (float_logits.argmax(axis=1) == int8_logits.argmax(axis=1))[clear].all()
    # One class wins for most images, so also check that the int8 model follows how each logit
    # moves from image to image, not only the fixed pattern the biases give.
    moves = float_logits - float_logits.mean(axis=0)
    int8_moves = int8_logits - int8_logits.mean(axis=0)
    assert np.corrcoef(moves.ravel(), int8_moves.ravel())[0, 1] > 0.95


def test_missing_onnx_is_reported_as_the_demo_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)

    with pytest.raises(MissingExtraError) as excinfo:
        models.generate_onnx_int8(tmp_path / "m.onnx")

    assert excinfo.value.extra == "demo" and excinfo.value.module == "onnx"
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("generate", [models.generate_tflite_int8, models.generate_tflite_float])
def test_missing_flatbuffers_is_reported_as_the_demo_extra(
    generate: Callable[[Path], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "flatbuffers", None)

    with pytest.raises(MissingExtraError) as excinfo:
        generate(tmp_path / "m.tflite")

    assert excinfo.value.module == "flatbuffers"


def test_unwritable_destination_is_a_model_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")

    with pytest.raises(ModelError, match="cannot write demo model"):
        models.generate_tflite_int8(blocker / "m.tflite")
