"""TFLite recurrent ops, SVDF, batched matmul and transposed convolutions, counted by hand from
the formulas in :mod:`agent.analyze.tflite_graph`; operators without one are reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.analyze import analyze_model
from tests.analyze.builders import FlatModel, weights

pytestmark = pytest.mark.usefixtures("litert_lib")

STEPS, BATCH, INPUTS, CELLS = 5, 2, 3, 4


def _options(fm: FlatModel, kind: str, **values: Any) -> tuple[int, Any]:
    options = getattr(fm.s, f"{kind}T")()
    for key, value in values.items():
        setattr(options, key, value)
    return getattr(fm.s.BuiltinOptions, kind), options


def _lstm_direction(fm: FlatModel, tag: str, cifg: bool, inputs_n: int = INPUTS) -> list[int]:
    """The 17 tensors of one LSTM direction: weights (4 + 4), peepholes (3), biases (4),
    projection weights and bias (absent: -1)."""
    gates = ("input", "forget", "cell", "output")
    ins = [-1 if cifg and g == "input" else
           fm.tensor(f"{tag}_w_{g}", (CELLS, inputs_n), weights(CELLS, inputs_n)) for g in gates]
    rec = [-1 if cifg and g == "input" else
           fm.tensor(f"{tag}_r_{g}", (CELLS, CELLS), weights(CELLS, CELLS)) for g in gates]
    biases = [-1 if cifg and g == "input" else
              fm.tensor(f"{tag}_b_{g}", (CELLS,), weights(CELLS)) for g in gates]
    return [*ins, *rec, -1, -1, -1, *biases, -1, -1]


def _load_in_litert(path: Path) -> None:
    """The interpreter accepts the hand-built op: its input layout is the real one."""
    from ai_edge_litert.interpreter import Interpreter

    Interpreter(model_path=str(path)).allocate_tensors()


@pytest.mark.parametrize("cifg", [False, True])
def test_unidirectional_sequence_lstm(tmp_path: Path, cifg: bool) -> None:
    fm = FlatModel()
    x = fm.tensor("x", (BATCH, STEPS, INPUTS))
    direction = _lstm_direction(fm, "fw", cifg)
    states = [fm.tensor("h", (BATCH, CELLS), variable=True),
              fm.tensor("c", (BATCH, CELLS), variable=True)]
    y = fm.tensor("y", (BATCH, STEPS, CELLS))
    fm.op(fm.s.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM, [x, *direction, *states], [y],
          _options(fm, "UnidirectionalSequenceLSTMOptions", timeMajor=False,
                   fusedActivationFunction=fm.s.ActivationFunctionType.TANH))
    path = fm.save(tmp_path / "lstm.tflite")
    _load_in_litert(path)
    result = analyze_model(path)

    gates = 3 if cifg else 4  # CIFG couples the input gate to the forget gate
    # every step and sequence: gates x (cells x inputs) + gates x (cells x cells)
    assert result.batch == BATCH  # the file fixes it: counts are per sample
    assert result.macs * BATCH == STEPS * BATCH * gates * CELLS * (INPUTS + CELLS)
    assert result.params == gates * CELLS * (INPUTS + CELLS + 1)
    assert result.other_ops * BATCH == STEPS * BATCH * gates * CELLS * 2
    assert result.precision == "float32"
    assert result.macs_coverage.counted == {"UNIDIRECTIONAL_SEQUENCE_LSTM": 1}


def test_bidirectional_sequence_lstm_counts_both_directions(tmp_path: Path) -> None:
    fm = FlatModel()
    x = fm.tensor("x", (STEPS, BATCH, INPUTS))
    forward, backward = _lstm_direction(fm, "fw", False), _lstm_direction(fm, "bw", False)
    states = [fm.tensor(name, (BATCH, CELLS), variable=True) for name in ("fh", "fc", "bh", "bc")]
    y = fm.tensor("y", (STEPS, BATCH, 2 * CELLS))
    fm.op(fm.s.BuiltinOperator.BIDIRECTIONAL_SEQUENCE_LSTM,
          [x, *forward, *backward, *states, *[-1] * 9], [y],
          _options(fm, "BidirectionalSequenceLSTMOptions", timeMajor=True, mergeOutputs=True))
    path = fm.save(tmp_path / "bilstm.tflite")
    _load_in_litert(path)
    result = analyze_model(path)

    assert result.batch == BATCH  # the file fixes it: counts are per sample
    assert result.macs * BATCH == 2 * STEPS * BATCH * 4 * CELLS * (INPUTS + CELLS)
    assert result.params == 2 * 4 * CELLS * (INPUTS + CELLS + 1)


@pytest.mark.parametrize("op", ["RNN", "UNIDIRECTIONAL_SEQUENCE_RNN"])
def test_rnn_counts_input_and_recurrent_weights_per_step(tmp_path: Path, op: str) -> None:
    fm = FlatModel()
    steps = 1 if op == "RNN" else STEPS  # the plain RNN op is one step
    x = fm.tensor("x", (BATCH, INPUTS) if op == "RNN" else (STEPS, BATCH, INPUTS))
    w = fm.tensor("w", (CELLS, INPUTS), weights(CELLS, INPUTS))
    r = fm.tensor("r", (CELLS, CELLS), weights(CELLS, CELLS))
    b = fm.tensor("b", (CELLS,), weights(CELLS))
    h = fm.tensor("h", (BATCH, CELLS), variable=True)
    y = fm.tensor("y", (BATCH, CELLS) if op == "RNN" else (STEPS, BATCH, CELLS))
    options = ("RNNOptions", {}) if op == "RNN" else ("SequenceRNNOptions", {"timeMajor": True})
    fm.op(getattr(fm.s.BuiltinOperator, op), [x, w, r, b, h], [y],
          _options(fm, options[0], **options[1]))
    path = fm.save(tmp_path / "rnn.tflite")
    _load_in_litert(path)
    result = analyze_model(path)

    assert result.batch == BATCH  # the file fixes it: counts are per sample
    assert result.macs * BATCH == steps * BATCH * CELLS * (INPUTS + CELLS)
    assert result.params == CELLS * (INPUTS + CELLS + 1)


def test_svdf_counts_feature_and_time_weights(tmp_path: Path) -> None:
    fm = FlatModel()
    units, rank, memory, inputs_n = 3, 2, 5, 6
    filters = units * rank
    x = fm.tensor("x", (BATCH, inputs_n))
    feature = fm.tensor("wf", (filters, inputs_n), weights(filters, inputs_n))
    time = fm.tensor("wt", (filters, memory), weights(filters, memory))
    bias = fm.tensor("b", (units,), weights(units))
    state = fm.tensor("s", (BATCH, memory * filters), variable=True)
    y = fm.tensor("y", (BATCH, units))
    fm.op(fm.s.BuiltinOperator.SVDF, [x, feature, time, bias, state], [y],
          _options(fm, "SVDFOptions", rank=rank))
    path = fm.save(tmp_path / "svdf.tflite")
    _load_in_litert(path)
    result = analyze_model(path)

    assert result.batch == BATCH  # the file fixes it: counts are per sample
    assert result.macs * BATCH == BATCH * (filters * inputs_n + filters * memory)
    assert result.params == filters * inputs_n + filters * memory + units
    assert result.other_ops * BATCH == BATCH * units  # the bias add


@pytest.mark.parametrize("adj_x", [False, True])
def test_batch_matmul_reduces_over_k(tmp_path: Path, adj_x: bool) -> None:
    fm = FlatModel()
    x = fm.tensor("x", (1, 2, 8, 4) if adj_x else (1, 2, 4, 8))
    rhs = fm.tensor("rhs", (8, 5), weights(8, 5))
    y = fm.tensor("y", (1, 2, 4, 5))
    fm.op(fm.s.BuiltinOperator.BATCH_MATMUL, [x, rhs], [y],
          _options(fm, "BatchMatMulOptions", adjX=adj_x))
    path = fm.save(tmp_path / "bmm.tflite")
    _load_in_litert(path)
    result = analyze_model(path)

    assert result.macs == (2 * 4 * 5) * 8  # output elements x K
    assert result.params == 40


@pytest.mark.parametrize("op", ["TRANSPOSE_CONV", "CONV_3D_TRANSPOSE"])
def test_transposed_convolutions_count_per_input_element(tmp_path: Path, op: str) -> None:
    fm = FlatModel()
    three_d = op == "CONV_3D_TRANSPOSE"
    shape_data = np.array([1, 4, 10, 10, 2] if three_d else [1, 10, 10, 2], np.int32)
    out_shape = fm.tensor("out_shape", shape_data.shape, shape_data)
    w_shape = (2, 3, 3, 2, 4) if three_d else (2, 3, 3, 4)  # [kD,] kH, kW, Cout, Cin | Cout, ...
    w = fm.tensor("w", w_shape, weights(*w_shape))
    x = fm.tensor("x", (1, 2, 5, 5, 4) if three_d else (1, 5, 5, 4))
    b = fm.tensor("b", (2,), weights(2))
    y = fm.tensor("y", tuple(int(d) for d in shape_data))
    if three_d:
        options = _options(fm, "Conv3DOptions", strideD=2, strideH=2, strideW=2,
                           padding=fm.s.Padding.SAME)
    else:
        options = _options(fm, "TransposeConvOptions", strideH=2, strideW=2,
                           padding=fm.s.Padding.SAME)
    fm.op(getattr(fm.s.BuiltinOperator, op), [out_shape, w, x, b], [y], options)
    path = fm.save(tmp_path / "deconv.tflite")
    _load_in_litert(path)
    result = analyze_model(path)

    input_elements = (2 * 5 * 5 * 4) if three_d else (5 * 5 * 4)
    per_input = (2 * 3 * 3 * 2) if three_d else (2 * 3 * 3)  # [kD x] kH x kW x Cout
    assert result.macs == input_elements * per_input
    assert result.params == int(np.prod(w_shape)) + 2  # the output-shape vector is no param


def test_operators_without_a_formula_are_listed_as_uncounted(tmp_path: Path) -> None:
    fm = FlatModel()
    ops = fm.s.BuiltinOperator
    x = fm.tensor("x", (1, 8))
    fc = fm.tensor("fc", (1, 4))
    fm.op(ops.FULLY_CONNECTED, [x, fm.tensor("w", (4, 8), weights(4, 8)), -1], [fc])
    relu = fm.tensor("relu", (1, 4))
    fm.op(ops.RELU, [fc], [relu])
    custom = fm.tensor("custom", (1, 4))
    fm.op(ops.CUSTOM, [relu], [custom], custom="MysteryMatMul")
    y = fm.tensor("y", (1, 4))
    fm.op(ops.STABLEHLO_DOT_GENERAL, [custom, custom], [y])
    result = analyze_model(fm.save(tmp_path / "partial.tflite"))

    coverage = result.macs_coverage
    assert coverage.counted == {"FULLY_CONNECTED": 1}
    assert coverage.uncounted == {"CUSTOM:MysteryMatMul": 1, "STABLEHLO_DOT_GENERAL": 1}
    assert coverage.no_macs == {"RELU": 1}
    assert result.macs == 32  # what is counted stays right; it is a lower bound
