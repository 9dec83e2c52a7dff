"""What device a run happened on: the manifest that travels with every result.

The board is named by, in order: the device tree's model (``/proc/device-tree/model``, also read
at ``/sys/firmware/devicetree/base/model``); the ``Model`` line of ``/proc/cpuinfo`` (a Raspberry
Pi writes its board there, and containers that hide the device tree still show it); an NVIDIA
Jetson's L4T release (``/etc/nv_tegra_release``), with the module named from the ``TNSPEC`` of
``/etc/nv_boot_control.conf`` when it is there. Every path is read under a root directory, so tests
pass a fake tree.
"""

from __future__ import annotations

import os
import platform
import re
import socket
from pathlib import Path

import psutil

from shared.catalogue import Catalogue
from shared.schema import DeviceManifest


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        return None


def cpu_model(root: Path) -> str | None:
    text = _read(root / "proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or None


# Jetson module part numbers (the first field of TNSPEC) and, where one part holds several
# modules, the SKU: NVIDIA Jetson Linux Developer Guide, "Jetson Modules and Configurations".
_JETSON_MODULES = {
    "3448": "Jetson Nano",
    "3701": "Jetson AGX Orin",
    "3767-0000": "Jetson Orin NX 16GB",
    "3767-0001": "Jetson Orin NX 8GB",
    "3767-0003": "Jetson Orin Nano 8GB",
    "3767-0004": "Jetson Orin Nano 4GB",
    "3767-0005": "Jetson Orin Nano 8GB",
}


def _cpuinfo_model(root: Path) -> str | None:
    for line in (_read(root / "proc/cpuinfo") or "").splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "Model" and value.strip():
            return value.strip()
    return None


def _jetson(root: Path) -> str | None:
    """``NVIDIA Jetson Orin Nano 8GB (L4T R36.3.0)`` from the L4T release files, or None."""
    release = _read(root / "etc/nv_tegra_release")
    if not release:
        return None
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    l4t = f"L4T R{match.group(1)}.{match.group(2)}" if match else "L4T"
    # TNSPEC <board id>-<fab>-<sku>-<rev>-...-<target board>
    spec = re.search(r"TNSPEC\s+(\d{4})-\w*-(\d{4})", _read(root / "etc/nv_boot_control.conf") or "")
    module = None
    if spec:
        part, sku = spec.group(1), spec.group(2)
        module = _JETSON_MODULES.get(f"{part}-{sku}") or _JETSON_MODULES.get(part)
    return f"NVIDIA {module or 'Jetson'} ({l4t})"


def board_name(root: Path) -> str | None:
    """The board, from the first source that names it (see the module docstring)."""
    return (_read(root / "proc/device-tree/model")
            or _read(root / "sys/firmware/devicetree/base/model")
            or _cpuinfo_model(root)
            or _jetson(root))


def os_name(root: Path) -> str | None:
    text = _read(root / "etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def collect_manifest(
    sysfs_root: Path = Path("/"), catalogue: Catalogue | None = None, hardware: str | None = None
) -> DeviceManifest:
    """Read the manifest; ``sysfs_root`` replaces ``/`` for every file read, ``/dev`` included."""
    board = board_name(sysfs_root)
    cpu = cpu_model(sysfs_root)
    machine = platform.machine()
    entry = (
        catalogue.match(board=board, cpu_model=cpu, machine=machine, key=hardware)
        if catalogue
        else None
    )
    accelerators = []
    if any((sysfs_root / "dev").glob("apex_*")):  # Coral PCIe/M.2 driver nodes
        accelerators.append("coral-pcie")
    return DeviceManifest(
        hostname=socket.gethostname(),
        board=board,
        cpu_model=cpu,
        cpu_cores=os.cpu_count(),
        ram_bytes=psutil.virtual_memory().total,
        os=os_name(sysfs_root),
        kernel=platform.release(),
        machine=machine,
        python=platform.python_version(),
        hardware_key=entry.key if entry else hardware,
        accelerators=accelerators,
    )
