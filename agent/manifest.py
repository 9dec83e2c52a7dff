"""What device a run happened on: the manifest that travels with every result."""

from __future__ import annotations

import os
import platform
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
    board = _read(sysfs_root / "proc/device-tree/model")
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
