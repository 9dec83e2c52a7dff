"""Meta-tests over the operator tables: every operator the installed onnx and LiteRT schemas
define is deliberately placed (counted, no MACs by convention, or known to be uncounted), and
every name in the tables is a real operator, so a typo can neither hide an op nor add noise."""

from __future__ import annotations

import pytest

from agent.analyze import onnx_ops

# Ops of earlier ONNX opsets that the installed onnx no longer lists.
_RETIRED_ONNX_OPS = {
    "Affine", "Crop", "DynamicSlice", "ImageScaler", "ParametricSoftplus", "Scale", "ScaledTanh",
}
# ONNX Runtime registers these in the default domain (contrib ops of its optimizer).
_ORT_DEFAULT_DOMAIN_OPS = {"SimplifiedLayerNormalization"}


@pytest.mark.usefixtures("onnx_lib")
def test_every_default_domain_onnx_op_is_placed_in_exactly_one_group() -> None:
    import onnx.defs

    defined = {
        schema.name for schema in onnx.defs.get_all_schemas_with_history()
        if schema.domain in ("", "ai.onnx")
    }
    counted = {op for domain, op in (*onnx_ops.MAC_OPS, *onnx_ops.FORMULA_OPS) if domain == ""}
    groups = [counted, set(onnx_ops.NO_MAC_OPS), set(onnx_ops.KNOWN_UNCOUNTED_OPS)]
    assert sum(len(group) for group in groups) == len(set().union(*groups)), "an op in two groups"
    assert defined - set().union(*groups) == set()
    assert set().union(*groups) - defined <= _RETIRED_ONNX_OPS | _ORT_DEFAULT_DOMAIN_OPS


def test_every_com_microsoft_name_is_an_onnxruntime_op() -> None:
    pytest.importorskip("onnxruntime")
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_c

    defined = {
        schema.name for schema in ort_c.get_all_operator_schema()
        if schema.domain == onnx_ops.MS_DOMAIN
    }
    counted = {op for domain, op in (*onnx_ops.MAC_OPS, *onnx_ops.FORMULA_OPS) if domain != ""}
    assert counted | set(onnx_ops.MS_NO_MAC_OPS) <= defined


@pytest.mark.usefixtures("litert_lib")
def test_every_tflite_builtin_is_placed_in_exactly_one_group() -> None:
    from ai_edge_litert import schema_py_generated as schema

    from agent.analyze import tflite_graph

    defined = {
        name for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    } - {"CUSTOM", "PLACEHOLDER_FOR_GREATER_OP_CODES"}
    groups = [
        set(tflite_graph._MAC_OPS), set(tflite_graph._NO_MAC_OPS),
        set(tflite_graph._KNOWN_UNCOUNTED_OPS),
    ]
    assert sum(len(group) for group in groups) == len(set().union(*groups)), "an op in two groups"
    assert defined - set().union(*groups) == set()
    assert set().union(*groups) - defined == set()
