"""GPU execution providers: the provider a session really uses is recorded, and ONNX Runtime's
silent fall-back to the CPU is refused instead of measured as if it were the GPU."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.backends import onnxruntime_backend
from agent.backends.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeSettings, fallen_back
from agent.errors import DelegateError


def test_a_requested_provider_the_session_dropped_is_named() -> None:
    assert fallen_back(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]) == [
        "CUDAExecutionProvider"]
    assert fallen_back(["CUDAExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]) == []


class FallingBackOrt:
    """An onnxruntime-gpu whose CUDA provider is listed but fails to start (no libcudnn)."""

    __version__ = "1.20.0"
    ExecutionMode = SimpleNamespace(ORT_SEQUENTIAL=0)

    @staticmethod
    def get_available_providers() -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    class SessionOptions:
        pass

    class InferenceSession:
        def __init__(self, path: str, sess_options: Any, providers: list[str]) -> None:
            self.asked = providers

        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]


def test_onnxruntime_falling_back_to_the_cpu_is_an_error_not_a_gpu_result(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(onnxruntime_backend, "_import_ort", lambda: FallingBackOrt)
    with pytest.raises(DelegateError, match=r"fell back to CPUExecutionProvider: CUDAExecutionProvider did not start"):
        OnnxRuntimeBackend().load(tmp_path / "m.onnx", threads=None,
                                  settings=OnnxRuntimeSettings(providers=["CUDAExecutionProvider"]))


def test_a_provider_missing_from_the_build_points_at_the_gpu_extra(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(DelegateError, match=r"'gpu' extra.*\[gpu\]'"):
        OnnxRuntimeBackend().load(tmp_path / "m.onnx", threads=None,
                                  settings=OnnxRuntimeSettings(providers=["CUDAExecutionProvider"]))


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_on_a_gpu_the_result_records_the_provider_that_ran(provider: str, shared_models: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if provider not in ort.get_available_providers():
        pytest.skip(f"no {provider} here (needs an NVIDIA GPU and the 'gpu' extra)")
    session = OnnxRuntimeBackend().load(shared_models / "vww_96_int8_qdq.onnx", threads=None,
                                        settings=OnnxRuntimeSettings(providers=[provider, "CPUExecutionProvider"]))
    assert session.runtime.providers[0] == provider
