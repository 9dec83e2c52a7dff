"""Identity of a model file: hash, format, size, network name and precision."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from shared.errors import ModelError

TFLITE_IDENTIFIER = b"TFL3"
_SUFFIXES = re.compile(
    r"(_(int8|uint8|int16|float32|float16|fp32|fp16|float|quant|qdq|edgetpu|full_integer))+$"
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """``onnx`` or ``tflite``, by content first, then by suffix."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist; check the path")
    if not path.is_file():
        raise ModelError(f"{path} is not a file; pass the model file itself")
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise ModelError(f"cannot read {path}: {err.strerror}") from err
    if len(head) < 8:
        raise ModelError(f"{path} is empty or truncated; it is not a model")
    if head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.suffix.lower() == ".tflite":
        raise ModelError(f"{path} has no TFLite identifier: the file is corrupt or not TFLite")
    raise ModelError(f"{path}: unsupported model format; edgemeter runs .onnx and .tflite files")


def network_name(path: Path) -> str:
    """The network a file holds, from its name without format and precision suffixes.

    ``vww_96_int8.tflite``, ``vww_96_float.onnx`` and ``vww_96_int8_qdq.onnx`` are all ``vww_96``:
    the comparison matches runs of one network across formats by this name (and their MACs).
    Override it with ``--network``.
    """
    return _SUFFIXES.sub("", path.stem) or path.stem
