"""Each backend owns its settings table: providers in [backends.onnxruntime], the delegate in
[backends.litert]; each table refuses the other's options, and load() takes its own settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.backends.base import BACKENDS, BackendSettings, backend_class
from agent.backends.litert_backend import LiteRtSettings
from agent.backends.onnxruntime_backend import OnnxRuntimeSettings
from agent.config import load_settings
from shared.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def test_every_backend_declares_its_own_settings_model() -> None:
    for name in BACKENDS:
        model = backend_class(name).Settings
        assert issubclass(model, BackendSettings) and model.model_config.get("extra") == "forbid"
        assert all(f.description for f in model.model_fields.values()), name


def test_each_table_takes_its_own_backends_options(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[bench.backends.onnxruntime]\nproviders = ["CPUExecutionProvider"]\n'
                '[bench.backends.litert]\ndelegate = "edgetpu"\n')
    settings = load_settings({}, cfg)
    assert settings.backend_settings("onnxruntime") == OnnxRuntimeSettings(
        providers=["CPUExecutionProvider"])
    assert settings.backend_settings("litert") == LiteRtSettings(delegate="edgetpu")


@pytest.mark.parametrize(("text", "message"), [
    ('[bench.backends.onnxruntime]\ndelegate = "edgetpu"\n',
     r"^\[backends\.onnxruntime\] delegate: unknown key \(known: providers\)$"),
    ('[bench.backends.litert]\nproviders = ["CUDAExecutionProvider"]\n',
     r"^\[backends\.litert\] providers: unknown key \(known: delegate\)$"),
    ('[bench.backends.tensorrt]\nworkspace = 1\n', r"^\[backends\.tensorrt\]: no backend"),
])
def test_a_table_refuses_another_backends_option(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({}, write(tmp_path, text))


def test_the_old_flat_keys_and_flags_land_in_their_backends_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings({}, write(tmp_path, 'providers = "A,B"\ndelegate = "edgetpu"\n'))
    assert settings.backend_settings("onnxruntime").providers == ["A", "B"]
    assert settings.backend_settings("litert").delegate == "edgetpu"
    from_flags = load_settings({"backends": {"litert": {"delegate": "/opt/libdelegate.so"}}})
    assert from_flags.backend_settings("litert").delegate == "/opt/libdelegate.so"
    assert from_flags.backend_settings("onnxruntime") == OnnxRuntimeSettings()
    monkeypatch.setenv("EDGEMETER_BACKENDS__ONNXRUNTIME__PROVIDERS", '["X"]')
    assert load_settings({}).backend_settings("onnxruntime").providers == ["X"]
    monkeypatch.setenv("EDGEMETER_BACKENDS__ONNXRUNTIME__PROVIDERS", "X,Y")
    assert load_settings({}).backend_settings("onnxruntime").providers == ["X", "Y"]


def test_a_device_may_set_both_tables_and_each_backend_reads_its_own(shared_models: Path) -> None:
    pytest.importorskip("onnxruntime")
    from agent.backends.onnxruntime_backend import OnnxRuntimeBackend

    settings = load_settings({"delegate": "edgetpu", "providers": ["CPUExecutionProvider"]})
    session = OnnxRuntimeBackend().load(shared_models / "ad_autoencoder_int8_qdq.onnx", threads=1,
                                        batch=1, settings=settings.backend_settings("onnxruntime"))
    assert session.runtime.providers == ["CPUExecutionProvider"]
    session.close()
