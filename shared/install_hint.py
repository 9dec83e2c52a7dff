"""The one command that installs an extra into *this* copy of edgemeter, for error messages.

The package index does not serve edgemeter, and Debian 12 / Raspberry Pi OS refuse the system pip
(PEP 668), so ``pip install 'edgemeter[onnx]'`` never works. What works is the pip of the
environment this copy runs in, given the wheel or source tree it was installed from. pip records
that origin in the distribution's ``direct_url.json`` (PEP 610); ``deploy/install.sh`` also leaves
``edgemeter-install.txt`` in its venv naming the extras it installed, so the hint can offer to rerun
it with one more extra.

Use::

    from shared.install_hint import install_command
    raise SomeError(f"... needs the 'onnx' extra: {install_command('onnx')}")

Every missing-extra message (:class:`shared.errors.MissingExtraError`, the power sources' probes)
goes through :func:`install_command`; nothing else spells an install line.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

DIST = "edgemeter"
MARKER = "edgemeter-install.txt"


@dataclass(frozen=True)
class Origin:
    """Where this copy was installed from: a wheel or sdist file, a source directory, or unknown."""

    path: str | None
    editable: bool = False


def read_origin(dist: str = DIST) -> Origin:
    """The installed distribution's origin from its ``direct_url.json``; never raises."""
    from importlib import metadata

    try:
        # every copy on the path: a source tree's own egg-info has no direct_url.json
        texts = [d.read_text("direct_url.json") for d in metadata.distributions(name=dist)]
    except Exception:  # unreadable metadata: an unknown origin
        return Origin(None)
    return parse_direct_url(next((t for t in texts if t), None))


def parse_direct_url(text: str | None) -> Origin:
    """Parse PEP 610 ``direct_url.json`` text; a non-file URL or bad JSON is an unknown origin."""
    if not text:
        return Origin(None)
    try:
        data = json.loads(text)
        url = urlparse(str(data["url"]))
    except (ValueError, KeyError, TypeError):
        return Origin(None)
    if url.scheme != "file":
        return Origin(None)
    editable = bool((data.get("dir_info") or {}).get("editable", False))
    return Origin(unquote(url.path), editable=editable)


def read_install_marker(prefix: str) -> dict[str, str]:
    """``key=value`` lines of the marker ``deploy/install.sh`` writes into its venv (empty if none)."""
    try:
        lines = (Path(prefix) / MARKER).read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def pip_command(python: str, prefix: str, *, has_pip: bool, uv: str | None, writable: bool) -> str:
    """The pip that installs into ``prefix``: its own ``python -m pip``, else ``uv pip -p``."""
    sudo = "" if writable else "sudo "
    if has_pip or not uv:
        return f"{sudo}{shlex.quote(python)} -m pip install"
    return f"{sudo}{shlex.quote(uv)} pip install -p {shlex.quote(python)}"


def format_command(extra: str, origin: Origin, pip: str, *, version: str,
                   marker: dict[str, str]) -> str:
    """Compose the hint from plain facts (the testable core of :func:`install_command`)."""
    if origin.path is None:
        wheel = f"dist/edgemeter-{version}-py3-none-any.whl"
        command = (f"{pip} {shlex.quote(f'{wheel}[{extra}]')} (the wheel `make wheel` builds; "
                   "the package index does not serve edgemeter)")
    elif origin.editable:
        command = f"{pip} -e {shlex.quote(f'{origin.path}[{extra}]')}"
    else:
        command = f"{pip} {shlex.quote(f'{origin.path}[{extra}]')}"
    if "extra" in marker:
        have = [e for e in marker["extra"].split(",") if e]
        wanted = ",".join([*have, extra] if extra not in have else have)
        wheel = marker.get("wheel") or origin.path or "WHEEL"
        command += f", or rerun: sudo deploy/install.sh --extra {wanted} {shlex.quote(wheel)}"
    return command


def install_command(extra: str) -> str:
    """The command that adds ``extra`` to this copy, as the user should paste it."""
    from importlib import metadata
    from importlib.util import find_spec

    try:
        version = metadata.version(DIST)
    except metadata.PackageNotFoundError:
        version = "VERSION"
    prefix = sys.prefix
    pip = pip_command(sys.executable, prefix, has_pip=find_spec("pip") is not None,
                      uv=shutil.which("uv"), writable=os.access(prefix, os.W_OK))
    return format_command(extra, read_origin(), pip, version=version, marker=read_install_marker(prefix))
