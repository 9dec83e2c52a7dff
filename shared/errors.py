"""The errors both sides share. Every error edgemeter raises on purpose derives from the root here.

    EdgemeterError                 root: the CLI prints ``str(err)`` as one line and exits 2
    ├── ConfigError                bad flag, environment variable or config file
    ├── BrokerError                a broker could not be reached, refused, or did not acknowledge
    │   ├── PublishRefusedError        an MQTT v5 PUBACK with a reason code >= 128 (an ACL refusal)
    │   ├── PublishError (the agent's)       a result was not delivered (says where it is kept)
    │   └── SubscribeError (the collector's) the collector could not subscribe
    └── MissingExtraError          an optional dependency group is not installed

Each side keeps its own subtree beside its code, in its own ``errors`` module: the agent's (model,
backend, power source, publish) and the collector's (store, subscribe). This module keeps only what
both sides raise through the contract (:mod:`shared.mqtt`, :mod:`shared.catalogue`).

Third-party exceptions are translated once, at the boundary where edgemeter calls the library,
with ``raise ... from err`` so the cause stays in the traceback for ``--debug``.
"""

from __future__ import annotations


class EdgemeterError(Exception):
    """Root of every error edgemeter raises on purpose; its message is one actionable line."""


class ConfigError(EdgemeterError):
    """A flag, environment variable or configuration file is invalid."""


class BrokerError(EdgemeterError):
    """An MQTT broker could not be reached, started, refused a request or did not acknowledge."""


class PublishRefusedError(BrokerError):
    """The broker answered a publish with an MQTT v5 reason code of 128 or more (135: the ACL
    refused the topic). Never a success: the message was not accepted."""

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class MissingExtraError(EdgemeterError):
    """An optional dependency group is not installed; the message carries the command that adds it
    to this copy (:func:`shared.install_hint.install_command`)."""

    def __init__(self, extra: str, module: str) -> None:
        from shared.install_hint import install_command

        super().__init__(
            f"this command needs the '{extra}' extra (module {module!r} is missing): "
            f"{install_command(extra)}"
        )
        self.extra = extra
        self.module = module


def require_module(module: str, extra: str) -> None:
    """Raise :class:`MissingExtraError` when ``module`` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(extra, module)
