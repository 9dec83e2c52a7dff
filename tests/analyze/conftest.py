"""Fixtures for the analyze tests: the readers' libraries, skipped locally but required in CI."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import unavailable


@pytest.fixture(scope="session")
def onnx_lib() -> None:
    if importlib.util.find_spec("onnx") is None:
        unavailable("onnx is not installed (pip install 'edgemeter[onnx]')")


@pytest.fixture(scope="session")
def litert_lib() -> None:
    if (
        importlib.util.find_spec("flatbuffers") is None
        or importlib.util.find_spec("ai_edge_litert") is None
    ):
        unavailable("ai-edge-litert/flatbuffers are not installed (pip install 'edgemeter[litert]')")


@pytest.fixture(scope="session")
def models(shared_models: Path, onnx_lib: None, litert_lib: None) -> Path:
    """The team's real models (``../shared/models``), with both graph readers available."""
    return shared_models
