"""The backend interface, its registry, and each backend's own settings table.

A backend loads a model into a :class:`Session`. The runner owns the clock: a session never times
itself. :meth:`Session.bind` returns a zero-argument callable that runs one inference on inputs
bound in advance, so the timed loop holds nothing but that call.

Settings: every backend declares its own pydantic model, ``Settings`` (a :class:`BackendSettings`:
unknown keys are errors), read from its table ``[bench.backends.NAME]`` of the agent's config
file (``EDGEMETER_BACKENDS__NAME__KEY``), and :meth:`Backend.load` takes it. ONNX Runtime's
execution providers live in ``[bench.backends.onnxruntime]``, LiteRT's delegate in
``[bench.backends.litert]``: a device may set both, and each backend reads only its own. The
flags ``--providers`` and ``--delegate`` are generated from these models. Adding a backend touches
its own module and :data:`BACKENDS`, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from shared.errors import ConfigError
from shared.plugins import load_plugin
from shared.schema import RuntimeInfo, TensorInfo
from shared.settings import plugin_table


class Session(Protocol):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    runtime: RuntimeInfo
    batch: int
    """the batch size the session was prepared for"""

    def bind(self, feed: Sequence[np.ndarray]) -> Callable[[], object]:
        """Bind inputs (one array per input, in order) and return the call to time."""

    def run(self, feed: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run once and return the outputs (raw, as the runtime returns them)."""

    def close(self) -> None: ...


class BackendSettings(BaseModel):
    """The base of every backend's own settings (its ``[bench.backends.NAME]`` table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Backend(Protocol):
    name: str
    formats: tuple[str, ...]
    Settings: ClassVar[type[BackendSettings]]

    def probe(self) -> str | None:
        """None when usable, else why not (never raises)."""

    def load(self, path: Path, *, threads: int | None, batch: int,
             settings: Any) -> Session:
        """Load the model with this backend's ``Settings``; raises ModelError, BackendError or
        DelegateError."""


BACKENDS: dict[str, str] = {
    "onnxruntime": "agent.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "litert": "agent.backends.litert_backend:LiteRtBackend",
}

_FORMAT_DEFAULT = {"onnx": "onnxruntime", "tflite": "litert"}


def backend_class(name: str) -> Any:
    """The backend class registered as ``name`` (its module imported, its runtime not)."""
    return load_plugin(BACKENDS, name, kind="backend", also=("auto",))


def get_backend(name: str) -> Backend:
    backend: Backend = backend_class(name)()
    return backend


#: old flat settings keys -> (backend, key) of the table they belong to
FLAT_BACKEND_KEYS = {"providers": ("onnxruntime", "providers"), "delegate": ("litert", "delegate")}


class BackendTables(BaseModel):
    """``[bench.backends]``: one table per backend, each validated by that backend's ``Settings``.

    A table for an unknown backend, or a key its backend does not take, fails when the settings
    load, with one line naming the table and the key.
    """

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _tables(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        return {name: _validate_table(name, raw) for name, raw in data.items()}

    def table(self, name: str) -> BackendSettings:
        """Backend ``name``'s settings: its table when one was given, else its defaults."""
        found = (self.__pydantic_extra__ or {}).get(name)
        if isinstance(found, BackendSettings):
            return found
        settings: BackendSettings = backend_class(name).Settings()
        return settings


def _validate_table(name: str, raw: Any) -> BackendSettings:
    if name not in BACKENDS:
        raise ConfigError(f"[backends.{name}]: no backend {name!r}; tables are named after a "
                         f"backend: {', '.join(BACKENDS)}")
    cls: type[BackendSettings] = backend_class(name).Settings
    if not isinstance(raw, (Mapping, cls)):
        raise ConfigError(f"[backends.{name}] must be a table")
    return plugin_table(cls, raw, f"[backends.{name}]")


def fold_backend_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the flat ``providers``/``delegate`` keys of old moved into their tables."""
    out = dict(data)
    moved = {k: out.pop(k) for k in FLAT_BACKEND_KEYS if k in out}
    moved = {k: v for k, v in moved.items() if v is not None}
    if not moved:
        return out
    tables = out.get("backends")
    tables = dict(tables) if isinstance(tables, Mapping) else \
        dict(tables.__pydantic_extra__ or {}) if isinstance(tables, BackendTables) else {}
    for key, value in moved.items():
        backend, field = FLAT_BACKEND_KEYS[key]
        table = tables.get(backend)
        table = table.model_dump(exclude_unset=True) if isinstance(table, BaseModel) \
            else dict(table or {})
        table[field] = value
        tables[backend] = table
    out["backends"] = tables
    return out


def backend_for(fmt: str, requested: str = "auto") -> Backend:
    """The backend for a model format (``auto``) or the one named, checked against the format."""
    name = _FORMAT_DEFAULT.get(fmt) if requested == "auto" else requested
    if name is None:
        raise ConfigError(f"no backend runs {fmt!r} models")
    backend = get_backend(name)
    if fmt not in backend.formats:
        raise ConfigError(
            f"backend {name!r} cannot run {fmt} models; use --backend auto or "
            f"{_FORMAT_DEFAULT.get(fmt, 'another backend')}"
        )
    return backend
