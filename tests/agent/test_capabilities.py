"""The capabilities a birth lists: backends that load, delegates whose library loads, attached TPUs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.capabilities import Capabilities, coral_devices, describe, probe


def refuse_all(library: str) -> None:
    raise OSError(f"{library}: cannot open shared object file")


def test_the_edge_tpu_delegate_is_listed_only_when_libedgetpu_loads(tmp_path: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    loaded: list[str] = []
    with_lib = probe(root=tmp_path, load_library=loaded.append)
    assert loaded == ["libedgetpu.so.1"] and with_lib.delegates == ["edgetpu"]
    assert "no Edge TPU is attached" in with_lib.why_not["edgetpu device"]
    without = probe(root=tmp_path, load_library=refuse_all)
    assert without.delegates == [] and "libedgetpu1-std" in without.why_not["edgetpu"]


def test_attached_corals_are_found_by_dev_node_and_usb_ids(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/apex_0").touch()
    usb = tmp_path / "sys/bus/usb/devices/1-1"
    usb.mkdir(parents=True)
    (usb / "idVendor").write_text("18d1\n")
    (usb / "idProduct").write_text("9302\n")
    other = tmp_path / "sys/bus/usb/devices/1-2"
    other.mkdir()
    (other / "idVendor").write_text("046d\n")
    (other / "idProduct").write_text("c52b\n")
    assert coral_devices(tmp_path) == ["/dev/apex_0", "usb 18d1:9302"]


def test_both_runtimes_of_this_install_are_listed_with_formats_and_providers(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    caps = probe(root=tmp_path, load_library=refuse_all)
    assert caps.formats == ["onnx", "tflite"]
    assert set(caps.backends) == {"onnxruntime", "litert"}
    assert "CPUExecutionProvider" in caps.execution_providers
    lines = describe(caps)
    assert any(line.startswith("backend onnxruntime ") and "CPUExecutionProvider" in line for line in lines)


@pytest.mark.subprocess
def test_the_child_probe_prints_capabilities_as_json() -> None:
    out = subprocess.run([sys.executable, "-m", "agent.capabilities"], capture_output=True, text=True,
                         check=True).stdout
    caps = Capabilities(**json.loads(out))
    assert isinstance(caps.formats, list) and isinstance(caps.backends, dict)
