"""ONNX Runtime backend: CPU by default, other execution providers from its own settings table.

``[bench.backends.onnxruntime] providers = ["CUDAExecutionProvider"]`` (or ``--providers``) picks
the execution providers, in order; one this onnxruntime build lacks fails with the list it has.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from agent.backends.base import BackendSettings
from agent.errors import BackendError, DelegateError, ModelError
from shared.errors import MissingExtraError
from shared.install_hint import install_command
from shared.run_settings import Flag
from shared.schema import RuntimeInfo, TensorInfo

logger = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingExtraError("onnx", "onnxruntime") from err
    return onnxruntime


def _dims(shape: Sequence[Any]) -> list[int | str | None]:
    return [d if isinstance(d, int | str) or d is None else str(d) for d in shape]


class OnnxRuntimeSession:
    def __init__(self, session: Any, version: str, threads: int | None, batch: int) -> None:
        self._session = session
        self.batch = batch
        self.inputs = [
            TensorInfo(name=i.name, dtype=_ORT_TYPES.get(i.type, i.type), shape=_dims(i.shape))
            for i in session.get_inputs()
        ]
        self.outputs = [
            TensorInfo(name=o.name, dtype=_ORT_TYPES.get(o.type, o.type), shape=_dims(o.shape))
            for o in session.get_outputs()
        ]
        self.runtime = RuntimeInfo(
            name="onnxruntime",
            version=version,
            threads=threads,
            providers=list(session.get_providers()),
        )
        for tensor in self.inputs:
            tensor.shape = self._batched(tensor.shape)

    def _batched(self, shape: list[int | str | None]) -> list[int | str | None]:
        if not shape:
            return shape
        first = shape[0]
        if not isinstance(first, int) or first < 1:
            return [self.batch, *shape[1:]]
        return shape

    def _feed(self, feed: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {tensor.name: array for tensor, array in zip(self.inputs, feed, strict=True)}

    def bind(self, feed: Sequence[np.ndarray]) -> Callable[[], object]:
        return partial(self._session.run, None, self._feed(feed))

    def run(self, feed: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self._session.run(None, self._feed(feed)))
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise BackendError(f"onnxruntime failed to run the model: {err}") from err

    def close(self) -> None:
        self._session = None


class OnnxRuntimeSettings(BackendSettings):
    """ONNX Runtime's own options (the table [bench.backends.onnxruntime])."""

    providers: Annotated[list[str] | None, Flag("runtime", name="providers")] = Field(
        None, description="ONNX Runtime execution providers, comma-separated, in order "
        "(default: CPUExecutionProvider)")

    @field_validator("providers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """``"A,B"`` (a flag, an environment variable) or a JSON list ``'["A", "B"]'``."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                with contextlib.suppress(ValueError):
                    return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value
def _provider_hint(missing: Sequence[str]) -> str:
    if any(p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for p in missing):
        return f"the 'gpu' extra has them (instead of 'onnx'): {install_command('gpu')}"
    return "install the onnxruntime build that has them"


def fallen_back(wanted: Sequence[str], used: Sequence[str]) -> list[str]:
    """Requested providers the session does not use: ONNX Runtime drops one that fails to start
    (a CUDA library missing) with only a log line, and runs everything on the CPU."""
    return [p for p in wanted if p not in used]


class OnnxRuntimeBackend:
    name = "onnxruntime"
    formats = ("onnx",)
    Settings: ClassVar[type[OnnxRuntimeSettings]] = OnnxRuntimeSettings

    def probe(self) -> str | None:
        try:
            _import_ort()
        except MissingExtraError as err:
            return str(err)
        return None

    def load(
        self,
        path: Path,
        *,
        threads: int | None,
        batch: int = 1,
        settings: OnnxRuntimeSettings | None = None,
    ) -> OnnxRuntimeSession:
        ort = _import_ort()
        providers = (settings or OnnxRuntimeSettings()).providers
        available = ort.get_available_providers()
        wanted = list(providers) if providers else ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise DelegateError(
                f"execution provider(s) {', '.join(missing)} not in this onnxruntime build "
                f"(available: {', '.join(available)}); {_provider_hint(missing)}"
            )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
        except Exception as err:  # InvalidProtobuf, Fail, NotImplemented... are untyped here
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"onnxruntime cannot load {path.name}: {first[:300]}") from err
        dropped = fallen_back(wanted, session.get_providers())
        if dropped:
            raise DelegateError(
                f"onnxruntime fell back to {', '.join(session.get_providers())}: {', '.join(dropped)} did not "
                "start (CUDA, cuDNN or TensorRT libraries missing or not matching this onnxruntime-gpu); "
                "fix them, or ask for --providers CPUExecutionProvider to measure the CPU on purpose"
            )
        first_dim = session.get_inputs()[0].shape[0] if session.get_inputs()[0].shape else None
        if batch > 1 and isinstance(first_dim, int) and first_dim != batch:
            raise ModelError(
                f"{path.name} has a fixed batch of {first_dim}; use --batch 1 "
                "(and --streams N for parallel throughput)"
            )
        return OnnxRuntimeSession(session, ort.__version__, threads, batch)
