"""A job goes only where the device's birth says it can run; an older birth is given the job."""

from __future__ import annotations

import pytest

from edgemeter.commands.fleet import DeviceView, _able
from shared.capability import lacks, refusal, split
from shared.errors import ConfigError
from shared.messages import AgentManifest, JobSettings, Status
from shared.schema import DeviceManifest


def manifest(formats: list[str], delegates: list[str] | None = None,
             providers: list[str] | None = None) -> AgentManifest:
    backends = {"onnx": "onnxruntime", "tflite": "litert"}
    return AgentManifest(agent_version="1", device=DeviceManifest(hostname="h"), formats=formats,
                         backends={backends[f]: "1" for f in formats}, delegates=delegates or [],
                         execution_providers=providers or [])


def test_a_litert_only_device_lacks_onnx_and_says_which_extra() -> None:
    why = lacks(manifest(["tflite"]), "resnet.onnx", JobSettings())
    assert why is not None and "no onnxruntime runtime for onnx models" in why and "'onnx' extra" in why
    assert lacks(manifest(["tflite"]), "m.tflite", JobSettings()) is None


def test_an_older_birth_or_none_is_given_the_benefit_of_the_doubt() -> None:
    assert lacks(None, "m.onnx") is None
    assert lacks(AgentManifest(agent_version="0", device=DeviceManifest(hostname="h")), "m.onnx") is None


def test_delegates_and_providers_are_checked_when_a_job_asks_for_them() -> None:
    class Wants:
        backend = "auto"
        delegate = "edgetpu"
        providers = ["CUDAExecutionProvider"]

    coral = manifest(["tflite"], delegates=["edgetpu"])
    assert lacks(coral, "m_edgetpu.tflite", Wants()) is None
    assert "edgetpu delegate" in (lacks(manifest(["tflite"]), "m.tflite", Wants()) or "")
    cpu = manifest(["onnx"], providers=["CPUExecutionProvider"])
    assert "CUDAExecutionProvider" in (lacks(cpu, "m.onnx", Wants()) or "")


def test_split_and_refusal_name_each_device_and_what_it_lacks() -> None:
    devices = {"a": manifest(["tflite"]), "b": manifest(["onnx", "tflite"])}
    able, unable = split(devices, "m.onnx", JobSettings(), devices.get)
    assert able == ["b"] and [d for d, _ in unable] == ["a"]
    line = refusal("m.onnx", [(d, why) for d, why in unable])
    assert line.startswith("no selected device can run m.onnx: a: no onnxruntime")


def _view(device_id: str, formats: list[str]) -> DeviceView:
    status = Status(device_id=device_id, fleet="lab", status="online", bd_seq=1, manifest=manifest(formats))
    return DeviceView(device_id=device_id, fleet="lab", status=status)


def test_fleet_run_skips_with_a_line_each_and_refuses_when_none_can(capsys: pytest.CaptureFixture[str]) -> None:
    kept = _able([_view("pi-1", ["tflite"]), _view("pc-1", ["onnx", "tflite"])], "m.onnx", JobSettings())
    assert [v.device_id for v in kept] == ["pc-1"]
    assert "skipped pi-1: no onnxruntime runtime" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"no selected device can run m.onnx: pi-1: .*; pi-2: "):
        _able([_view("pi-1", ["tflite"]), _view("pi-2", ["tflite"])], "m.onnx", JobSettings())
