"""What this machine can run: formats, backends and versions, delegates, execution providers.

The daemon's birth carries it (:func:`build_manifest`), so ``fleet run`` and the collector refuse
a job no selected device can run before sending it (:mod:`shared.capability`); ``edgemeter power``
prints it. Probing imports the runtimes (ONNX Runtime alone is tens of MB), so the daemon probes
once, in a child process (:func:`probe_in_child`: ``python -m agent.capabilities`` prints
:class:`Capabilities` as JSON), and keeps its own process lean.

The Edge TPU delegate counts when ``libedgetpu.so.1`` loads; whether a Coral is attached
(``/dev/apex_*`` for PCIe/M.2, USB ids ``1a6e:089a``/``18d1:9302``) is reported beside it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.messages import AgentManifest

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120.0
RUNTIME_DISTS = ("onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime")
CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}


@dataclass
class Capabilities:
    """Plain facts: what loads here, and why what does not."""

    formats: list[str] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)
    runtimes: dict[str, str] = field(default_factory=dict)
    delegates: list[str] = field(default_factory=list)
    execution_providers: list[str] = field(default_factory=list)
    accelerators: list[str] = field(default_factory=list)
    why_not: dict[str, str] = field(default_factory=dict)


def installed_runtimes() -> dict[str, str]:
    """Runtime distribution -> version, from package metadata (imports nothing)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in RUNTIME_DISTS:
        with contextlib.suppress(PackageNotFoundError):
            found[dist] = version(dist)
    return found


def coral_devices(root: Path = Path("/")) -> list[str]:
    """Attached Edge TPUs: ``/dev/apex_N`` nodes and USB devices with a Coral's ids."""
    found = sorted(str(Path("/") / p.relative_to(root)) for p in (root / "dev").glob("apex_*"))
    usb = root / "sys/bus/usb/devices"
    for dev in sorted(usb.glob("*")) if usb.is_dir() else []:
        try:
            ids = ((dev / "idVendor").read_text().strip(), (dev / "idProduct").read_text().strip())
        except OSError:
            continue
        if ids in CORAL_USB_IDS:
            found.append(f"usb {ids[0]}:{ids[1]}")
    return found


def probe(*, root: Path = Path("/"), load_library: Callable[[str], Any] = ctypes.CDLL) -> Capabilities:
    """Probe every backend and delegate in this process; never raises."""
    from agent.backends.base import BACKENDS, get_backend
    from agent.backends.litert_backend import DELEGATE_LIBRARIES

    caps = Capabilities(runtimes=installed_runtimes())
    for name in BACKENDS:
        try:
            backend = get_backend(name)
            why = backend.probe()
        except Exception as err:  # a broken install must not stop a birth
            why = f"{type(err).__name__}: {err}"
        if why is not None:
            caps.why_not[name] = why
            continue
        caps.formats.extend(f for f in backend.formats if f not in caps.formats)
        caps.backends[name] = _backend_version(name)
        if name == "onnxruntime":
            caps.execution_providers = _providers()
    for delegate, library in DELEGATE_LIBRARIES.items():
        if "litert" not in caps.backends:
            caps.why_not[delegate] = "no LiteRT runtime to load it into"
            continue
        try:
            load_library(library)
        except OSError as err:
            first = str(err).splitlines()[0]
            caps.why_not[delegate] = f"{library} does not load ({first}); for a Coral: libedgetpu1-std"
            continue
        caps.delegates.append(delegate)
    caps.accelerators = coral_devices(root)
    if "edgetpu" in caps.delegates and not caps.accelerators:
        caps.why_not["edgetpu device"] = "libedgetpu loads but no Edge TPU is attached"
    caps.formats.sort()
    return caps


def _backend_version(name: str) -> str:
    try:
        if name == "onnxruntime":
            import onnxruntime

            return str(onnxruntime.__version__)
        from agent.backends.litert_backend import import_interpreter

        _, dist, ver = import_interpreter()
        return f"{ver} ({dist})" if dist != "ai-edge-litert" else ver
    except Exception:  # version unknown is still usable
        return "unknown"


def _providers() -> list[str]:
    try:
        import onnxruntime

        return [str(p) for p in onnxruntime.get_available_providers()]
    except Exception:
        return []


def probe_in_child(timeout_s: float = PROBE_TIMEOUT_S) -> Capabilities:
    """:func:`probe` in a child interpreter, so this process never imports the runtimes.

    A child that fails or times out leaves formats empty, which senders read as "not said".
    """
    try:
        done = subprocess.run([sys.executable, "-m", "agent.capabilities"], capture_output=True,
                              text=True, timeout=timeout_s, check=True)
        return Capabilities(**json.loads(done.stdout))
    except (OSError, subprocess.SubprocessError, ValueError, TypeError) as err:
        logger.warning("could not probe the runtimes (%s); the birth lists none", err)
        return Capabilities(runtimes=installed_runtimes())


def power_sources() -> list[str]:
    """Power sources usable here (the estimate always is); never raises."""
    try:
        from agent.power.registry import probe_all

        return sorted(name for name, why in probe_all().items() if why is None)
    except Exception:  # probing never stops a birth
        logger.debug("power probe failed", exc_info=True)
        return []


def manifest_builder(settings: Any) -> Callable[[], AgentManifest]:
    """The daemon's birth manifest: device, capabilities (probed once, in a child), power sources."""
    from agent import __version__

    root = Path(settings.bench.sysfs_root or "/")
    # Probe now, in the background, so the child's imports overlap the daemon's connect; the
    # first birth waits for it. The future is this closure's alone.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capabilities")
    probing = pool.submit(probe_in_child)
    pool.shutdown(wait=False)  # the thread ends when the probe does

    def capabilities() -> Capabilities:
        return probing.result()

    def build() -> AgentManifest:
        from agent.manifest import collect_manifest
        from shared.catalogue import load_catalogue

        device = collect_manifest(root, load_catalogue(), None)
        caps = capabilities()
        return AgentManifest(agent_version=__version__, device=device, runtimes=caps.runtimes,
                             power_sources=power_sources(), telemetry_s=settings.telemetry_s,
                             keepalive_s=settings.mqtt.keepalive_s, formats=caps.formats,
                             backends=caps.backends, delegates=caps.delegates,
                             execution_providers=caps.execution_providers)

    return build


def describe(caps: Capabilities) -> list[str]:
    """Lines for ``edgemeter power``: each backend, delegate and accelerator, or why not."""
    lines = []
    for name, ver in caps.backends.items():
        extra = f"; providers {', '.join(caps.execution_providers)}" if name == "onnxruntime" else ""
        lines.append(f"backend {name} {ver}{extra}")
    lines += [f"delegate {d}: loads" for d in caps.delegates]
    lines += [f"accelerator {a}" for a in caps.accelerators]
    lines += [f"{name}: unusable: {why}" for name, why in caps.why_not.items()]
    return lines


if __name__ == "__main__":
    print(json.dumps(asdict(probe())))
