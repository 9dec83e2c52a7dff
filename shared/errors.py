"""The exception tree. Every error edgemeter raises on purpose is one of these.

    EdgemeterError                 root: the CLI prints ``str(err)`` as one line and exits 2
    ├── ConfigError                bad flag, environment variable or config file
    ├── ModelError                 missing, corrupt or unsupported model file
    ├── BackendError               an inference runtime is missing or failed
    │   └── DelegateError          an accelerator delegate (Edge TPU, ...) could not be loaded
    ├── PowerSourceError           a power source named by the user is unusable
    ├── PublishError               a broker could not be reached, started, or did not acknowledge
    ├── StoreError                 the results database could not be opened or written
    └── MissingExtraError          an optional dependency group is not installed

Third-party exceptions are translated once, at the boundary where edgemeter calls the library,
with ``raise ... from err`` so the cause stays in the traceback for ``--debug``.
"""

from __future__ import annotations


class EdgemeterError(Exception):
    """Root of every error edgemeter raises on purpose; its message is one actionable line."""


class ConfigError(EdgemeterError):
    """A flag, environment variable or configuration file is invalid."""


class ModelError(EdgemeterError):
    """A model file is missing, corrupt or in a format no backend can run."""


class BackendError(EdgemeterError):
    """An inference runtime is missing, or failed to load or run the model."""


class DelegateError(BackendError):
    """A hardware delegate or execution provider the user asked for could not be loaded."""


class PowerSourceError(EdgemeterError):
    """A power source the user asked for by name cannot be read."""


class PublishError(EdgemeterError):
    """A broker could not be reached, started or did not acknowledge.

    When the agent fails to deliver a result, the message says where the result is kept.
    """


class StoreError(EdgemeterError):
    """The results store could not be opened, migrated or written."""


class MissingExtraError(EdgemeterError):
    """An optional dependency group is not installed; the message carries the pip command."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this command needs the '{extra}' extra (module {module!r} is missing): "
            f"pip install 'edgemeter[{extra}]'"
        )
        self.extra = extra
        self.module = module


def require_module(module: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(extra, module)
