"""One lookup for every plugin registry: a name maps to ``"module:attribute"``, imported on use.

A registry is a plain ``dict[str, str]`` kept beside the plugin interface it serves, for example::

    BACKENDS = {"onnxruntime": "agent.backends.onnxruntime_backend:OnnxRuntimeBackend"}
    backend_cls = load_plugin(BACKENDS, name, kind="backend", also=("auto",))

:func:`load_plugin` imports the module only when its name is asked for, so importing a registry
never imports a runtime, a vendor library or a database driver. An unknown name raises
:class:`shared.errors.ConfigError` with one line listing the names that work (``also`` adds the
words the caller accepts besides the registered names, such as ``auto`` or ``none``). A registered
module that fails to import raises its own ``ImportError``: the caller decides whether that means
a missing extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from shared.errors import ConfigError

__all__ = ["load_plugin", "unknown_name"]


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """The one-line error for a name that is not in a registry (``kind``: "backend", ...)."""
    return ConfigError(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}")


def load_plugin(
    registry: Mapping[str, str], name: str, *, kind: str, also: Iterable[str] = ()
) -> Any:
    """The object ``registry[name]`` points at (``"package.module:Attribute"``), imported now."""
    target = registry.get(name)
    if target is None:
        raise unknown_name(kind, name, [*also, *registry])
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
