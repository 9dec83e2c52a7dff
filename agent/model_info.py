"""Identity of a model file: its hash and the network it holds (format: ``agent.analyze.detect_format``)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SUFFIXES = re.compile(
    r"(_(int8|uint8|int16|float32|float16|fp32|fp16|float|quant|qdq|edgetpu|full_integer))+$"
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def network_name(path: Path) -> str:
    """The network a file holds, from its name without format and precision suffixes.

    ``vww_96_int8.tflite``, ``vww_96_float.onnx`` and ``vww_96_int8_qdq.onnx`` are all ``vww_96``:
    the comparison matches runs of one network across formats by this name (and their MACs).
    Override it with ``--network``.
    """
    return _SUFFIXES.sub("", path.stem) or path.stem
