"""LiteRT backend: ai-edge-litert, or tflite-runtime where that is what a board has installed.

Its own settings table, ``[bench.backends.litert]``, names the delegate: ``delegate = "edgetpu"``
(or ``--delegate edgetpu``) loads ``libedgetpu.so.1`` (the Coral runtime). Models compiled for the
Edge TPU hold an ``edgetpu-custom-op`` that only that delegate can run.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from agent.backends.base import BackendSettings
from agent.errors import BackendError, DelegateError, ModelError
from shared.errors import MissingExtraError
from shared.run_settings import Flag
from shared.schema import QuantParams, RuntimeInfo, TensorInfo

logger = logging.getLogger(__name__)

DELEGATE_LIBRARIES = {"edgetpu": "libedgetpu.so.1"}


def import_interpreter() -> tuple[Any, str, str]:
    """The interpreter module, its distribution name and version (ai-edge-litert first)."""
    try:
        from ai_edge_litert import interpreter as module

        dist = "ai-edge-litert"
    except ImportError:
        try:
            from tflite_runtime import interpreter as module

            dist = "tflite-runtime"
        except ImportError as err:
            raise MissingExtraError("litert", "ai_edge_litert") from err
    try:
        ver = version(dist)
    except PackageNotFoundError:
        ver = "unknown"
    return module, dist, ver


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    qp = detail.get("quantization_parameters") or {}
    scales = [float(s) for s in np.atleast_1d(qp.get("scales", []))]
    zps = [int(z) for z in np.atleast_1d(qp.get("zero_points", []))]
    quant = QuantParams(scale=scales, zero_point=zps) if scales else None
    return TensorInfo(
        name=str(detail["name"]),
        dtype=np.dtype(detail["dtype"]).name,
        shape=[int(d) for d in detail["shape"]],
        quant=quant,
    )


class LiteRtSession:
    def __init__(self, interp: Any, runtime: RuntimeInfo, batch: int) -> None:
        self._interp = interp
        self.batch = batch
        self.runtime = runtime
        self._in = interp.get_input_details()
        self._out = interp.get_output_details()
        self.inputs = [_tensor_info(d) for d in self._in]
        self.outputs = [_tensor_info(d) for d in self._out]

    def _set(self, feed: Sequence[np.ndarray]) -> None:
        for detail, array in zip(self._in, feed, strict=True):
            self._interp.set_tensor(detail["index"], array)

    def bind(self, feed: Sequence[np.ndarray]) -> Callable[[], object]:
        self._set(feed)
        invoke: Callable[[], object] = self._interp.invoke
        return invoke

    def run(self, feed: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            self._set(feed)
            self._interp.invoke()
        except (RuntimeError, ValueError) as err:
            raise BackendError(f"LiteRT failed to run the model: {err}") from err
        return [np.array(self._interp.get_tensor(d["index"])) for d in self._out]

    def close(self) -> None:
        self._interp = None


class LiteRtSettings(BackendSettings):
    """LiteRT's own options (the table [bench.backends.litert])."""

    delegate: Annotated[str | None, Flag("runtime", name="delegate")] = Field(
        None, description="LiteRT delegate, e.g. edgetpu (loads libedgetpu.so.1), or a "
        "delegate library's path (default: the runtime's CPU delegates)")


class LiteRtBackend:
    name = "litert"
    formats = ("tflite",)
    Settings: ClassVar[type[LiteRtSettings]] = LiteRtSettings

    def probe(self) -> str | None:
        try:
            import_interpreter()
        except MissingExtraError as err:
            return str(err)
        return None

    def _delegates(self, module: Any, delegate: str | None) -> list[Any]:
        if not delegate:
            return []
        library = DELEGATE_LIBRARIES.get(delegate, delegate)
        try:
            # Try the shared library first: a failed load_delegate() leaves a half-built object
            # whose destructor prints a traceback.
            ctypes.CDLL(library)
            return [module.load_delegate(library)]
        except (ValueError, OSError, RuntimeError) as err:
            raise DelegateError(
                f"cannot load the {delegate} delegate ({library}): {str(err).splitlines()[0]}; "
                "install its runtime (for a Coral: the libedgetpu1-std package) and attach the "
                "device"
            ) from err

    def load(
        self,
        path: Path,
        *,
        threads: int | None,
        batch: int = 1,
        settings: LiteRtSettings | None = None,
    ) -> LiteRtSession:
        module, dist, ver = import_interpreter()
        delegate = (settings or LiteRtSettings()).delegate
        delegates = self._delegates(module, delegate)
        try:
            interp = module.Interpreter(
                model_path=str(path), num_threads=threads, experimental_delegates=delegates or None
            )
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"LiteRT cannot load {path.name}: {str(err).splitlines()[0]}") from err
        if batch > 1:
            for detail in interp.get_input_details():
                signature = detail.get("shape_signature", detail["shape"])
                if int(signature[0]) not in (-1, batch):
                    raise ModelError(
                        f"{path.name} has a fixed batch of {int(signature[0])}; use --batch 1 "
                        "(and --streams N for parallel throughput)"
                    )
                interp.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
        try:
            interp.allocate_tensors()
        except RuntimeError as err:
            message = str(err)
            if "edgetpu-custom-op" in message:
                raise ModelError(
                    f"{path.name} is compiled for the Edge TPU: run it with --delegate edgetpu "
                    "on a Coral device, or benchmark the CPU model instead"
                ) from err
            raise ModelError(
                f"LiteRT cannot prepare {path.name}: {message.strip().splitlines()[0]}"
            ) from err
        used = [delegate] if delegate else ["cpu (runtime default delegates)"]
        runtime = RuntimeInfo(name="litert", version=f"{dist} {ver}", threads=threads,
                              providers=used)
        return LiteRtSession(interp, runtime, batch)
