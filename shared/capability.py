"""Can a device run a job? Read from the capabilities its birth lists, before the job is sent.

An agent's birth (:class:`shared.messages.AgentManifest`) lists the model formats, backends with
their versions, LiteRT delegates and ONNX Runtime execution providers it can use. Whoever sends
jobs (``edgemeter fleet run``, the collector's ``POST /api/jobs``) asks :func:`lacks` for each
selected device and :func:`split` for the whole selection::

    able, unable = split(devices, model_name, settings, manifest_of=lambda d: d.manifest)
    if not able:
        refuse(refusal(unable))          # exit 2 / HTTP 422, naming each device and what it lacks
    for device, why in unable:
        say(f"skipped {device_id}: {why}")

A device whose birth lists no formats (an agent older than these fields, or no birth seen yet) is
given the benefit of the doubt: it refuses the job itself if it must.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from shared.messages import AgentManifest

FORMAT_BACKEND = {"onnx": "onnxruntime", "tflite": "litert"}
EXTRA_OF_BACKEND = {"onnxruntime": "onnx", "litert": "litert"}

T = TypeVar("T")


def model_format(name: str) -> str:
    """The format a model file name implies (``x.onnx`` -> ``onnx``)."""
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def lacks(manifest: AgentManifest | None, model_name: str, settings: Any = None) -> str | None:
    """What the device lacks to run ``model_name`` with ``settings`` (a JobSettings), or None.

    None also when the manifest does not say (no birth, or an older agent).
    """
    if manifest is None or not manifest.formats:
        return None
    fmt = model_format(model_name)
    backend = getattr(settings, "backend", "auto") or "auto"
    wanted = FORMAT_BACKEND.get(fmt) if backend == "auto" else backend
    if fmt not in manifest.formats:
        extra = EXTRA_OF_BACKEND.get(wanted or "", fmt)
        has = ", ".join(manifest.formats)
        return f"no {wanted or fmt} runtime for {fmt} models (it runs {has}; install the '{extra}' extra)"
    if wanted and manifest.backends and wanted not in manifest.backends:
        return f"no {wanted} backend (it has {', '.join(manifest.backends)})"
    delegate = getattr(settings, "delegate", None)
    if delegate and wanted == "litert" and delegate not in manifest.delegates:
        return f"no {delegate} delegate (libedgetpu not found or no device attached)"
    providers: Sequence[str] = (getattr(settings, "providers", None) or ()) if wanted == "onnxruntime" else ()
    missing = [p for p in providers if p not in manifest.execution_providers]
    if missing:
        offered = ", ".join(manifest.execution_providers) or "none"
        return f"no execution provider {', '.join(missing)} (it offers {offered})"
    return None


def split(devices: Iterable[T], model_name: str, settings: Any,
          manifest_of: Callable[[T], AgentManifest | None]) -> tuple[list[T], list[tuple[T, str]]]:
    """Devices that can run the model, and those that cannot with the reason for each."""
    able: list[T] = []
    unable: list[tuple[T, str]] = []
    for device in devices:
        why = lacks(manifest_of(device), model_name, settings)
        if why is None:
            able.append(device)
        else:
            unable.append((device, why))
    return able, unable


def refusal(model_name: str, unable: Sequence[tuple[str, str]], limit: int = 10) -> str:
    """One line: no selected device can run the model, each named with what it lacks."""
    listed = "; ".join(f"{device}: {why}" for device, why in unable[:limit])
    more = f"; and {len(unable) - limit} more" if len(unable) > limit else ""
    return f"no selected device can run {model_name}: {listed}{more}"
