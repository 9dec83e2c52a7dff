"""Output fidelity: a compact fingerprint of a model's outputs on a fixed input set.

The same seed gives the same canonical inputs on every device (see :mod:`agent.inputs`), so the
collector can score an edge int8 run against a datacenter float run of the same network. Outputs
are keyed by position (``"0"``, ``"1"``...) because output names differ between formats. Per input
and output: the top-k indices and dequantized scores; all values when the output has at most
``MAX_VALUES`` elements, else a seeded random projection (``SKETCH_DIM`` values) that preserves
cosine similarity approximately.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.backends.base import Session
from shared.schema import Fidelity, OutputFingerprint, TensorInfo

MAX_VALUES = 256
SKETCH_DIM = 64
TOP_K = 5


def dequantize(array: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    if tensor.quant and tensor.quant.scale and array.dtype.kind in "iu":
        scale, zp = tensor.quant.scale[0], tensor.quant.zero_point[0]
        return (array.astype(np.float64) - zp) * scale
    return array.astype(np.float64)


def _projection(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, size])
    return rng.choice([-1.0, 1.0], size=(SKETCH_DIM, size)) / np.sqrt(SKETCH_DIM)


def fingerprint(values: np.ndarray, seed: int, k: int = TOP_K) -> OutputFingerprint:
    """Top-k and values (or a sketch). NaN and infinities, which JSON cannot carry (a log-softmax
    gives -inf), become 0 and the float64 extremes, and ``non_finite`` says how many there were."""
    flat = values.reshape(-1)
    bad = int(flat.size - np.count_nonzero(np.isfinite(flat)))
    if bad:
        flat = np.nan_to_num(flat, nan=0.0, posinf=np.finfo(np.float64).max,
                             neginf=np.finfo(np.float64).min)
    kk = min(k, flat.size)
    top = np.argsort(-flat, kind="stable")[:kk]
    if flat.size <= MAX_VALUES:
        return OutputFingerprint(top_k=top.tolist(), top_scores=flat[top].tolist(),
                                 values=flat.tolist(), non_finite=bad)
    with np.errstate(over="ignore", invalid="ignore"):
        sketch = _projection(flat.size, seed) @ flat
    sketch = np.nan_to_num(sketch, nan=0.0, posinf=np.finfo(np.float64).max,
                           neginf=np.finfo(np.float64).min)
    return OutputFingerprint(top_k=top.tolist(), top_scores=flat[top].tolist(),
                             sketch=sketch.tolist(), non_finite=bad)


def measure_fidelity(session: Session, inputs: Sequence[np.ndarray], seed: int,
                     source: str) -> Fidelity:
    """Run each sample (batch 1) and fingerprint every output."""
    n = len(inputs[0])
    outputs: dict[str, list[OutputFingerprint]] = {str(i): [] for i in range(len(session.outputs))}
    for s in range(n):
        raw = session.run([array[s : s + 1] for array in inputs])
        for i, (array, tensor) in enumerate(zip(raw, session.outputs, strict=True)):
            outputs[str(i)].append(fingerprint(dequantize(array, tensor), seed))
    return Fidelity(seed=seed, input_source=source, n_inputs=n, k=TOP_K, outputs=outputs)
