"""The backend interface and its registry.

A backend loads a model into a :class:`Session`. The runner owns the clock: a session never times
itself. :meth:`Session.bind` returns a zero-argument callable that runs one inference on inputs
bound in advance, so the timed loop holds nothing but that call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from shared.errors import ConfigError
from shared.plugins import load_plugin
from shared.schema import RuntimeInfo, TensorInfo


class Session(Protocol):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    runtime: RuntimeInfo
    batch: int
    """the batch size the session was prepared for"""

    def bind(self, feed: Sequence[np.ndarray]) -> Callable[[], object]:
        """Bind inputs (one array per input, in order) and return the call to time."""

    def run(self, feed: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run once and return the outputs (raw, as the runtime returns them)."""

    def close(self) -> None: ...


class Backend(Protocol):
    name: str
    formats: tuple[str, ...]

    def probe(self) -> str | None:
        """None when usable, else why not (never raises)."""

    def load(
        self,
        path: Path,
        *,
        threads: int | None,
        batch: int = 1,
        providers: Sequence[str] | None = None,
        delegate: str | None = None,
    ) -> Session:
        """Load the model; raises ModelError, BackendError or DelegateError."""


BACKENDS: dict[str, str] = {
    "onnxruntime": "agent.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "litert": "agent.backends.litert_backend:LiteRtBackend",
}

_FORMAT_DEFAULT = {"onnx": "onnxruntime", "tflite": "litert"}


def get_backend(name: str) -> Backend:
    backend: Backend = load_plugin(BACKENDS, name, kind="backend", also=("auto",))()
    return backend


def backend_for(fmt: str, requested: str = "auto") -> Backend:
    """The backend for a model format (``auto``) or the one named, checked against the format."""
    name = _FORMAT_DEFAULT.get(fmt) if requested == "auto" else requested
    if name is None:
        raise ConfigError(f"no backend runs {fmt!r} models")
    backend = get_backend(name)
    if fmt not in backend.formats:
        raise ConfigError(
            f"backend {name!r} cannot run {fmt} models; use --backend auto or "
            f"{_FORMAT_DEFAULT.get(fmt, 'another backend')}"
        )
    return backend
