"""The hardware catalogue: peak ops, power, price and lifetime of edge, datacenter and HPC parts.

The catalogue ships as ``shared/catalogue.toml`` in the package. Users extend or override it with
their own TOML file of the same layout (``EDGEMETER_CATALOGUE`` or ``--catalogue FILE``): an entry
with an existing key replaces the shipped one field by field. Every figure carries its source in
``sources`` (field name -> citation); a figure without a source is not allowed in the shipped file.

An agent maps itself to an entry by, in order: ``--hardware KEY``; a regular expression in
``match_board`` against the board name (the device tree's model, else ``/proc/cpuinfo``'s
``Model`` line, else a Jetson's L4T release and module); one in ``match_cpu`` against the CPU
model; else the generic entry of its architecture (``generic-x86_64`` / ``generic-aarch64``).
"""

from __future__ import annotations

import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib

Tier = Literal["edge", "datacenter", "hpc"]


class HardwareEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    name: str
    tier: Tier
    match_board: list[str] = Field(default_factory=list)
    match_cpu: list[str] = Field(default_factory=list)
    peak_int8_tops: float | None = None
    peak_fp16_tflops: float | None = None
    peak_fp32_tflops: float | None = None
    tdp_w: float | None = None
    idle_w: float | None = None
    per_core_w: float | None = Field(
        None, description="for generic CPU entries: TDP share of one logical core"
    )
    cores: int | None = Field(
        None, ge=1, description="logical CPU cores (hardware threads) that tdp_w and idle_w cover"
    )
    mem_bandwidth_gbs: float | None = None
    price_usd: float | None = None
    cloud_usd_per_hour: float | None = None
    lifetime_years: float = 3.0
    notes: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)

    def peak_ops_per_s(self, precision: str) -> float | None:
        """Peak dense ops per second for a model precision (int8 uses TOPS, float FLOPS)."""
        value = {
            "int8": self.peak_int8_tops,
            "uint8": self.peak_int8_tops,
            "float16": self.peak_fp16_tflops,
            "float32": self.peak_fp32_tflops,
        }.get(precision, self.peak_fp32_tflops)
        return None if value is None else value * 1e12


class Catalogue:
    def __init__(self, entries: dict[str, HardwareEntry]) -> None:
        self.entries = entries

    def get(self, key: str) -> HardwareEntry:
        try:
            return self.entries[key]
        except KeyError as err:
            known = ", ".join(sorted(self.entries))
            raise ConfigError(f"unknown hardware key {key!r}; known keys: {known}") from err

    def match(
        self,
        *,
        board: str | None = None,
        cpu_model: str | None = None,
        machine: str | None = None,
        key: str | None = None,
    ) -> HardwareEntry | None:
        """The entry a device maps to (see the module docstring for the order)."""
        if key:
            return self.get(key)
        for entry in self.entries.values():
            if board and any(re.search(p, board, re.IGNORECASE) for p in entry.match_board):
                return entry
        for entry in self.entries.values():
            if cpu_model and any(re.search(p, cpu_model, re.IGNORECASE) for p in entry.match_cpu):
                return entry
        arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine or "", machine or "")
        return self.entries.get(f"generic-{arch}")


def _read_toml(data: bytes, origin: str) -> dict[str, dict[str, Any]]:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"catalogue {origin} is not valid TOML: {err}") from err
    hardware = doc.get("hardware", {})
    if not isinstance(hardware, dict):
        raise ConfigError(f"catalogue {origin}: [hardware.KEY] tables expected")
    return hardware


def load_catalogue(override: Path | None = None) -> Catalogue:
    """The shipped catalogue, with ``override``'s entries merged over it field by field."""
    raw = _read_toml(
        resources.files("shared").joinpath("catalogue.toml").read_bytes(), "shipped"
    )
    if override is not None:
        try:
            extra = _read_toml(Path(override).read_bytes(), str(override))
        except OSError as err:
            raise ConfigError(f"cannot read catalogue {override}: {err.strerror}") from err
        for key, fields in extra.items():
            raw[key] = {**raw.get(key, {}), **fields}
    entries: dict[str, HardwareEntry] = {}
    for key, fields in raw.items():
        try:
            entries[key] = HardwareEntry(key=key, **fields)
        except ValidationError as err:
            first = err.errors()[0]
            raise ConfigError(
                f"catalogue entry {key!r}: {'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from err
    return Catalogue(entries)
