"""Output fidelity: a compact digest of a model's outputs on a fixed input set (schema v2).

The same seed gives the same canonical inputs on every device (see :mod:`agent.inputs`), so the
collector can score an edge int8 run against a datacenter float run of the same network. Outputs
are keyed by position (``"0"``, ``"1"``...) because output names differ between formats.

What travels per output (:class:`shared.schema.OutputDigest`), chosen from what
the collector's comparison computes (top-1 agreement, MAE over all values, cosine similarity):

* outputs of at most :data:`MAX_VALUES` elements (a classifier's scores: VWW 2, CIFAR-10 10,
  keyword spotting 12): every value, so top-1, MAE and cosine are all exact;
* larger outputs: the top-:data:`TOP_K` indices and scores (top-1 agreement) and a
  :data:`SKETCH_DIM`-value seeded random projection (cosine similarity, estimated), the first rows
  of the 64-row projection schema v1 sent, so a v1 run and a v2 run still compare; MAE needs every
  value, so it is unknown for these unless the run is made with ``--full-fidelity``;
* always: the sha256 of the full outputs (dequantized, float64 little-endian, input by input, NaN
  and infinities replaced as below), so two runs can be checked for identical outputs.

Values, scores and sketches are rounded, row by row, to :data:`DIGITS` significant digits of the
row's largest magnitude: a softmax row to 4 decimals, so ``0.97265625`` goes as ``0.9727`` and
``1.2e-05`` as ``0.0``. Each value is then within ``0.00005 x`` the row's largest of the truth (an
int8 output's step is 1/256 = 0.004, far above that), which is what MAE and cosine similarity
need, and a row costs a few bytes per element. ``full=True`` (``bench --full-fidelity``) sends
every value of every output, unrounded. NaN and infinities, which JSON cannot carry (a log-softmax
gives -inf), become 0 and the float64 extremes, and ``non_finite`` says how many there were.

A model whose file fixes a batch of N samples per call is run through :class:`OneSampleSession`:
each fidelity sample is repeated into the N slots of its batch axis and the outputs of the first
slot are kept, so the digest is per sample whatever the batch.

:func:`degenerate_outputs` says when outputs do not depend on the input (every distinct input gave
the same output, or an output holds NaN or infinities): a mis-configured runtime or emulator does
that, and the run carries it as a validity warning.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence

import numpy as np

from agent.backends.base import Session
from shared.schema import FidelityDigest, OutputDigest, TensorInfo

MAX_VALUES = 16
"""Outputs with at most this many elements send every value."""
SKETCH_DIM = 16
"""Values in a large output's sketch (the first rows of schema v1's projection)."""
V1_SKETCH_ROWS = 64
"""Rows of the projection schema v1 sent; the sketch is scaled as v1's was (1 / sqrt(64))."""
TOP_K = 5
DIGITS = 4
"""Significant digits of values, scores and sketches on the wire."""
_FLOAT_MAX = float(np.finfo(np.float64).max)
_MOST_DECIMALS = 300


def dequantize(array: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    if tensor.quant and tensor.quant.scale and array.dtype.kind in "iu":
        scale, zp = tensor.quant.scale[0], tensor.quant.zero_point[0]
        return (array.astype(np.float64) - zp) * scale
    return array.astype(np.float64)


@functools.lru_cache(maxsize=8)
def _projection(size: int, seed: int) -> np.ndarray:
    """The first :data:`SKETCH_DIM` rows of v1's seeded ±1/sqrt(64) projection for ``size``."""
    rng = np.random.default_rng([seed, size])
    rows = rng.choice([-1.0, 1.0], size=(SKETCH_DIM, size)) / np.sqrt(V1_SKETCH_ROWS)
    rows.setflags(write=False)
    return rows


def _finite(flat: np.ndarray) -> tuple[np.ndarray, int]:
    bad = int(flat.size - np.count_nonzero(np.isfinite(flat)))
    if bad:
        flat = np.nan_to_num(flat, nan=0.0, posinf=_FLOAT_MAX, neginf=-_FLOAT_MAX)
    return flat, bad


def rounded(values: np.ndarray, digits: int | None) -> list[float]:
    """``values`` (finite) to ``digits`` significant digits of their largest magnitude (none:
    unchanged), never rounded past the float64 extremes."""
    values = np.asarray(values, dtype=np.float64)
    magnitudes = np.abs(values)
    magnitudes = magnitudes[magnitudes < _FLOAT_MAX]  # not the stand-ins for infinities
    largest = float(np.max(magnitudes)) if magnitudes.size else 0.0
    if digits is None or largest == 0.0:
        return values.tolist()
    decimals = digits - 1 - math.floor(math.log10(largest))
    if decimals > _MOST_DECIMALS:  # a row of denormal-small values: nothing to gain
        return values.tolist()
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.round(values, decimals)
    return np.clip(np.nan_to_num(out, nan=0.0), -_FLOAT_MAX, _FLOAT_MAX).tolist()


def digest_output(rows: Sequence[np.ndarray], seed: int, *, k: int = TOP_K,
                  full: bool = False) -> OutputDigest:
    """The digest of one output over every input (``rows``: one array per input)."""
    finite: list[np.ndarray] = []
    non_finite = 0
    sha = hashlib.sha256()
    for row in rows:
        flat, bad = _finite(np.asarray(row, dtype=np.float64).reshape(-1))
        non_finite += bad
        sha.update(flat.astype("<f8").tobytes())
        finite.append(flat)
    size = finite[0].size if finite else 0
    digits = None if full else DIGITS
    if full or size <= MAX_VALUES:
        return OutputDigest(size=size, sha256=sha.hexdigest(), non_finite=non_finite,
                            values=[rounded(flat, digits) for flat in finite])
    kk = min(k, size)
    tops = [np.argsort(-flat, kind="stable")[:kk] for flat in finite]
    projection = _projection(size, seed)
    sketches = []
    for flat in finite:
        with np.errstate(over="ignore", invalid="ignore"):
            sketch = projection @ flat
        sketches.append(rounded(_finite(sketch)[0], digits))
    return OutputDigest(
        size=size, sha256=sha.hexdigest(), non_finite=non_finite,
        top_k=[top.tolist() for top in tops],
        top_scores=[rounded(flat[top], digits) for flat, top in zip(finite, tops, strict=True)],
        sketch=sketches,
    )


class OneSampleSession:
    """A session of a model with a fixed batch of ``batch`` samples per call, seen one sample at a
    time: inputs take a leading sample axis of 1, which is repeated into the input's batch axis
    (``batch_axes``: input name -> axis); each output keeps the first slot of the axis its batch
    lies on (the first axis of length ``batch`` whose slots agree)."""

    def __init__(self, session: Session, batch: int, batch_axes: dict[str, int]) -> None:
        self._session = session
        self.batch = 1
        self.runtime = session.runtime
        self.outputs = session.outputs
        self._axes = [batch_axes.get(t.name, 0) for t in session.inputs]
        self._n = batch
        self.inputs = [
            t.model_copy(update={"shape": [1, *(d for i, d in enumerate(t.shape) if i != axis)]})
            for t, axis in zip(session.inputs, self._axes, strict=True)
        ]

    def _batched(self, feed: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for array, axis in zip(feed, self._axes, strict=True):
            one = np.moveaxis(np.asarray(array), 0, axis)
            out.append(np.ascontiguousarray(np.repeat(one, self._n, axis=axis)))
        return out

    def _first_slot(self, array: np.ndarray) -> np.ndarray:
        for axis, size in enumerate(array.shape):
            if size == self._n:
                slots = np.moveaxis(array, axis, 0)
                if all(np.array_equal(slots[0], slot, equal_nan=True) for slot in slots[1:]):
                    return np.expand_dims(slots[0], 0)
        return array

    def bind(self, feed: Sequence[np.ndarray]) -> Callable[[], object]:
        return self._session.bind(self._batched(feed))

    def run(self, feed: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self._first_slot(np.asarray(a)) for a in self._session.run(self._batched(feed))]

    def close(self) -> None:
        self._session.close()


def degenerate_outputs(digest: FidelityDigest, inputs: Sequence[np.ndarray]) -> list[str]:
    """Why the outputs look independent of the input (empty: they do not).

    Every distinct fidelity input giving one identical output (by each input's values), or any
    NaN or infinity in an output, is named; a single input or identical inputs prove nothing.
    """
    warnings = []
    distinct = len({b"".join(np.ascontiguousarray(a[s]).tobytes() for a in inputs)
                    for s in range(digest.n_inputs)})
    for name, output in sorted(digest.outputs.items()):
        if output.non_finite:
            warnings.append(f"output {name} holds {output.non_finite} NaN or infinite value(s)")
    if distinct > 1:
        rows = [_digest_rows(output) for output in digest.outputs.values()]
        if rows and all(len(set(r)) == 1 for r in rows):
            warnings.append(
                f"outputs do not depend on the input: {distinct} distinct inputs gave identical "
                "outputs (a mis-configured runtime or emulator, or inputs the model cannot tell "
                "apart: check --input-range)"
            )
    return warnings


def _digest_rows(output: OutputDigest) -> list[str]:
    """One comparable key per input of an output's digest."""
    per_input = output.values or output.sketch or output.top_scores or []
    return [repr(row) for row in per_input]


def measure_fidelity(session: Session, inputs: Sequence[np.ndarray], seed: int,
                     source: str, *, full: bool = False) -> FidelityDigest:
    """Run each sample (batch 1) and digest every output."""
    n = len(inputs[0])
    rows: dict[str, list[np.ndarray]] = {str(i): [] for i in range(len(session.outputs))}
    for s in range(n):
        raw = session.run([array[s : s + 1] for array in inputs])
        for i, (array, tensor) in enumerate(zip(raw, session.outputs, strict=True)):
            rows[str(i)].append(dequantize(array, tensor))
    return FidelityDigest(
        seed=seed, input_source=source, n_inputs=n, k=TOP_K, digits=None if full else DIGITS,
        outputs={name: digest_output(output_rows, seed, full=full)
                 for name, output_rows in rows.items()},
    )
