"""The shipped hardware catalogue: every figure cited, the parts the comparison needs, matching."""

from __future__ import annotations

from typing import get_args

import pytest

from shared.catalogue import HardwareEntry, load_catalogue

FIGURE_FIELDS = tuple(
    name for name, field in HardwareEntry.model_fields.items()
    if {*(get_args(field.annotation) or (field.annotation,))} & {int, float}
)
"""every number an entry can hold (a new numeric field is a figure that needs a citation too)"""


def test_figure_fields_are_every_number_of_an_entry() -> None:
    assert {"peak_int8_tops", "peak_fp16_tflops", "peak_fp32_tflops", "tdp_w", "idle_w",
            "per_core_w", "mem_bandwidth_gbs", "price_usd", "cloud_usd_per_hour",
            "lifetime_years"} <= set(FIGURE_FIELDS)
    assert not {"key", "name", "tier", "notes", "sources"} & set(FIGURE_FIELDS)


def test_every_shipped_figure_has_a_source() -> None:
    missing = [
        f"{key}.{field}"
        for key, entry in load_catalogue().entries.items()
        for field in FIGURE_FIELDS
        if getattr(entry, field) is not None and len(entry.sources.get(field, "").strip()) < 10
    ]
    assert not missing, f"figures without a citation: {missing}"


def test_sources_name_only_known_fields() -> None:
    for key, entry in load_catalogue().entries.items():
        stray = set(entry.sources) - set(FIGURE_FIELDS)
        assert not stray, f"{key}: sources for unknown fields {stray}"


def test_catalogue_has_edge_datacenter_and_hpc_parts() -> None:
    entries = load_catalogue().entries
    for key in ("generic-x86_64", "generic-aarch64", "raspberry-pi-4", "raspberry-pi-5", "jetson-nano",
                "jetson-orin-nano-8gb", "jetson-agx-orin-64gb", "coral-usb-accelerator",
                "coral-dev-board", "xeon-8380-2s", "nvidia-t4", "nvidia-l4", "nvidia-a100",
                "nvidia-h100"):
        assert key in entries
    tiers = {e.tier for e in entries.values()}
    assert tiers == {"edge", "datacenter", "hpc"}
    for entry in entries.values():
        if entry.tier == "datacenter" and entry.key.startswith("nvidia-"):
            assert entry.cloud_usd_per_hour and entry.price_usd and entry.peak_int8_tops


@pytest.mark.parametrize(("board", "cpu", "key"), [
    ("Raspberry Pi 4 Model B Rev 1.4", None, "raspberry-pi-4"),
    ("Raspberry Pi 5 Model B Rev 1.0", None, "raspberry-pi-5"),
    ("NVIDIA Jetson Nano Developer Kit", None, "jetson-nano"),
    ("NVIDIA Jetson Orin Nano Developer Kit", None, "jetson-orin-nano-8gb"),
    ("Jetson AGX Orin Developer Kit", None, "jetson-agx-orin-64gb"),
    ("Freescale i.MX8MQ Phanbell", None, "coral-dev-board"),
    ("Coral Dev Board Mini", None, "coral-dev-board-mini"),
    (None, "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz", "xeon-8380-2s"),
])
def test_devices_map_to_their_entry(board: str | None, cpu: str | None, key: str) -> None:
    entry = load_catalogue().match(board=board, cpu_model=cpu, machine="aarch64")
    assert entry is not None and entry.key == key


def test_unknown_devices_fall_back_to_the_generic_entry() -> None:
    cat = load_catalogue()
    entry = cat.match(board=None, cpu_model="Intel(R) Core(TM) i7-8650U", machine="x86_64")
    assert entry is not None and entry.key == "generic-x86_64"
