"""The install hint names the command that works for how this copy was installed, never the index."""

from __future__ import annotations

import json
from pathlib import Path

from shared.install_hint import (
    MARKER,
    Origin,
    format_command,
    parse_direct_url,
    pip_command,
    read_install_marker,
)

WHEEL = "/opt/edgemeter/dist/edgemeter-0.1.0-py3-none-any.whl"


def test_a_wheel_install_is_told_to_reinstall_that_wheel_with_the_extra() -> None:
    origin = parse_direct_url(json.dumps({"url": f"file://{WHEEL}", "archive_info": {}}))
    pip = pip_command("/opt/edgemeter/venv/bin/python", "/opt/edgemeter/venv", has_pip=True, uv=None,
                      writable=False)
    hint = format_command("onnx", origin, pip, version="0.1.0", marker={})
    assert hint == f"sudo /opt/edgemeter/venv/bin/python -m pip install '{WHEEL}[onnx]'"


def test_an_editable_checkout_is_told_to_install_its_tree_editable() -> None:
    origin = parse_direct_url(json.dumps({"url": "file:///home/me/edgemeter", "dir_info": {"editable": True}}))
    pip = pip_command("/home/me/edgemeter/.venv/bin/python", "/x", has_pip=True, uv=None, writable=True)
    assert format_command("collector", origin, pip, version="0.1.0", marker={}) == (
        "/home/me/edgemeter/.venv/bin/python -m pip install -e '/home/me/edgemeter[collector]'")


def test_a_venv_without_pip_is_told_to_use_uv_on_its_interpreter() -> None:
    assert pip_command("/v/bin/python", "/v", has_pip=False, uv="/usr/bin/uv", writable=True) == (
        "/usr/bin/uv pip install -p /v/bin/python")


def test_percent_encoded_paths_are_decoded_and_quoted_for_the_shell() -> None:
    origin = parse_direct_url(json.dumps({"url": "file:///tmp/my%20dist/edgemeter-0.1.0-py3-none-any.whl"}))
    assert origin == Origin("/tmp/my dist/edgemeter-0.1.0-py3-none-any.whl")
    hint = format_command("litert", origin, "python -m pip install", version="0.1.0", marker={})
    assert hint.endswith("'/tmp/my dist/edgemeter-0.1.0-py3-none-any.whl[litert]'")


def test_an_unknown_origin_names_the_built_wheel_not_the_package_index() -> None:
    for text in (None, "", "{not json", json.dumps({"url": "https://example.invalid/x.whl"})):
        hint = format_command("onnx", parse_direct_url(text), "python -m pip install", version="0.2.0",
                              marker={})
        assert "'dist/edgemeter-0.2.0-py3-none-any.whl[onnx]'" in hint
        assert "edgemeter[onnx]" not in hint


def test_an_install_sh_venv_also_offers_rerunning_install_sh_with_one_more_extra(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text(f"# written by deploy/install.sh\nextra=litert\nwheel={WHEEL}\n")
    marker = read_install_marker(str(tmp_path))
    hint = format_command("onnx", Origin(WHEEL), "python -m pip install", version="0.1.0", marker=marker)
    assert hint.endswith(f"or rerun: sudo deploy/install.sh --extra litert,onnx {WHEEL}")
    already = format_command("litert", Origin(WHEEL), "p", version="0.1.0", marker=marker)
    assert "--extra litert " in already


def test_a_missing_marker_reads_as_empty(tmp_path: Path) -> None:
    assert read_install_marker(str(tmp_path)) == {}
