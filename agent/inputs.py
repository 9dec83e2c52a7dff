"""Inputs for benchmarking and for output fidelity.

Timing inputs: seeded random data of each input's dtype and shape. Quantized int8/uint8 inputs get
realistic values: a normal distribution over the tensor's real range (from its scale and zero
point), quantized back, so activations look like data rather than saturate. Float inputs are drawn
uniformly from ``input_range`` (default [0, 1]).

Fidelity inputs are defined in a *canonical* layout, NHWC for 4-D images, with values in [0, 1),
and mapped to each model's real domain and layout, so the int8 TFLite and the float ONNX file of one
network see the same samples: quantized inputs map [0, 1) onto the tensor's real range; float
inputs onto ``input_range``. An NCHW model (channels of size 1 or 3 in dimension 1) gets the
canonical samples transposed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.errors import ConfigError, MissingExtraError
from shared.schema import TensorInfo

IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".gif", ".webp", ".ppm"}


def _concrete(shape: Sequence[int | str | None], batch: int) -> tuple[int, ...]:
    dims = [d if isinstance(d, int) and d > 0 else 1 for d in shape]
    if dims and (not isinstance(shape[0], int) or shape[0] < 1):
        dims[0] = batch
    return tuple(dims)


def real_range(tensor: TensorInfo, input_range: tuple[float, float]) -> tuple[float, float]:
    """The real values a tensor can represent (quantized) or the configured float range."""
    if tensor.quant and tensor.quant.scale and tensor.dtype in ("int8", "uint8"):
        info = np.iinfo(np.dtype(tensor.dtype))
        scale, zp = tensor.quant.scale[0], tensor.quant.zero_point[0]
        return scale * (info.min - zp), scale * (info.max - zp)
    return input_range


def to_tensor(real: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """Convert real values to the tensor's dtype, quantizing where it is int8/uint8."""
    dtype = np.dtype(tensor.dtype)
    if tensor.quant and tensor.quant.scale and dtype.kind in "iu":
        info = np.iinfo(dtype)
        scale, zp = tensor.quant.scale[0], tensor.quant.zero_point[0]
        q = np.round(real / scale) + zp
        return np.clip(q, info.min, info.max).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(real), info.min, info.max).astype(dtype)
    return real.astype(dtype)


def random_inputs(
    tensors: Sequence[TensorInfo],
    batch: int,
    seed: int,
    input_range: tuple[float, float] = (0.0, 1.0),
) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = []
    for tensor in tensors:
        shape = _concrete(tensor.shape, batch)
        lo, hi = real_range(tensor, input_range)
        if tensor.quant and tensor.quant.scale:
            real = rng.normal((lo + hi) / 2, (hi - lo) / 6, size=shape).clip(lo, hi)
        elif np.dtype(tensor.dtype).kind == "b":
            feed.append(rng.integers(0, 2, size=shape).astype(bool))
            continue
        else:
            real = rng.uniform(lo, hi, size=shape)
        feed.append(to_tensor(real, tensor))
    return feed


def _is_nchw(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3)


def canonical_to_model(samples: np.ndarray, tensor: TensorInfo,
                       input_range: tuple[float, float]) -> np.ndarray:
    """Map canonical [0, 1) samples (N, then NHWC or flat) into a tensor's domain and layout."""
    shape = (len(samples), *_concrete(tensor.shape, 1)[1:])
    if _is_nchw(shape):
        samples = samples.transpose(0, 3, 1, 2)
    samples = samples.reshape(shape)
    lo, hi = real_range(tensor, input_range)
    return to_tensor(lo + samples * (hi - lo), tensor)


def canonical_shape(tensor: TensorInfo) -> tuple[int, ...]:
    """Per-sample canonical shape: NHWC for 4-D image tensors, the model's own otherwise."""
    shape = _concrete(tensor.shape, 1)
    if _is_nchw(shape):
        return (shape[2], shape[3], shape[1])
    return shape[1:]


def seeded_canonical(tensor: TensorInfo, n: int, seed: int) -> np.ndarray:
    """``n`` canonical samples in [0, 1), identical on every device for the same seed."""
    rng = np.random.default_rng(seed)
    return rng.random((n, *canonical_shape(tensor)), dtype=np.float64)


def load_images(folder: Path, tensor: TensorInfo, limit: int | None = None) -> np.ndarray:
    """Images of a folder (sorted by name) as canonical [0, 1) RGB samples at the input size."""
    try:
        from PIL import Image
    except ImportError as err:
        raise MissingExtraError("images", "PIL") from err
    shape = canonical_shape(tensor)
    if len(shape) != 3:
        raise ConfigError(f"input {tensor.name} is not an image tensor (shape {tensor.shape})")
    height, width, channels = shape
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    files = files[:limit] if limit else files
    out = np.empty((len(files), height, width, channels), dtype=np.float64)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as img:
                mode = "L" if channels == 1 else "RGB"
                arr = np.asarray(img.convert(mode).resize((width, height)), dtype=np.float64)
        except OSError as err:
            raise ConfigError(f"cannot read image {path}: {err}") from err
        out[i] = arr.reshape(height, width, channels) / 255.0
    return out


def load_npz(path: Path, tensors: Sequence[TensorInfo]) -> list[np.ndarray]:
    """User inputs from an ``.npz``: arrays named like the inputs, or ``arr_0``, ``arr_1``..."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read inputs {path}: {err}") from err
    arrays = []
    for i, tensor in enumerate(tensors):
        key = tensor.name if tensor.name in data.files else f"arr_{i}"
        if key not in data.files:
            raise ConfigError(
                f"{path} has no array {tensor.name!r} or {key!r}; it holds {', '.join(data.files)}"
            )
        array = data[key]
        expected = _concrete(tensor.shape, array.shape[0] if array.ndim else 1)
        if array.shape[1:] != expected[1:]:
            raise ConfigError(
                f"input {tensor.name!r} in {path} has shape {array.shape}; the model wants "
                f"(N, {', '.join(map(str, expected[1:]))})"
            )
        arrays.append(array.astype(np.dtype(tensor.dtype), copy=False))
    return arrays


def take_batch(arrays: Sequence[np.ndarray], batch: int) -> list[np.ndarray]:
    """The first ``batch`` samples of each array, repeating them if there are fewer."""
    out = []
    for array in arrays:
        reps = math.ceil(batch / len(array))
        out.append(np.concatenate([array] * reps)[:batch] if reps > 1 else array[:batch])
    return out
