"""The sweep plot says what ran where: model, device, threads, seconds per cell, skipped cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from agent.commands.sweep import plot

SVG = "{http://www.w3.org/2000/svg}"


def cell(batch: int, streams: int, throughput_sps: float, p50_ms: float) -> dict[str, Any]:
    return {"batch": batch, "streams": streams, "threads": 2, "throughput_sps": throughput_sps,
            "latency_ms": {"p50": p50_ms}, "valid": True}


def drawn(path: Path) -> tuple[str, ElementTree.Element]:
    root = ElementTree.parse(path).getroot()
    return " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text")), root


@pytest.fixture
def svg(tmp_path: Path) -> Path:
    import matplotlib

    path = tmp_path / "sweep.svg"
    rows = [cell(1, 1, 900.0, 1.1), cell(4, 1, 1400.0, 2.9), cell(1, 2, 1700.0, 1.2)]
    with matplotlib.rc_context({"svg.fonttype": "none"}):         # keep text as text
        plot(rows, path, model="vww_96_int8.tflite", device="pi5-lab (raspberry-pi-5)",
             duration_s=3.0, skipped=[(8, 2, "batch 8 exceeds the model's fixed batch 1")])
    return path


def test_title_names_model_device_threads_and_seconds_per_cell(svg: Path) -> None:
    text, _ = drawn(svg)
    assert "vww_96_int8.tflite on pi5-lab (raspberry-pi-5)" in text
    assert "2 threads per stream, 3 s per cell" in text


def test_axes_say_units_and_direction(svg: Path) -> None:
    text, _ = drawn(svg)
    assert "p50 latency per query (ms): lower is better" in text
    assert "throughput (samples/s): higher is better" in text
    assert "batch 4" in text and "2 parallel streams" in text


def test_skipped_cells_are_listed_with_their_reason(svg: Path) -> None:
    text, _ = drawn(svg)
    assert "skipped cells" in text
    assert "batch 8, 2 stream(s): batch 8 exceeds the model's fixed batch 1" in text


def test_throughput_axis_starts_at_zero(svg: Path) -> None:
    _, root = drawn(svg)
    ytick_labels = [
        "".join(t.itertext()) for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("ytick")
        for t in g.iter(f"{SVG}text")
    ]
    assert ytick_labels and ytick_labels[0] == "0"
