"""The agent's errors, under the shared root :class:`shared.errors.EdgemeterError`.

    EdgemeterError (shared)
    ├── ModelError                 missing, corrupt or unsupported model file
    ├── BackendError               an inference runtime is missing or failed
    │   └── DelegateError          an accelerator delegate (Edge TPU, ...) could not be loaded
    ├── PowerSourceError           a power source named by the user is unusable
    ├── ModelFetchError            a job's model could not be fetched or failed its checksum
    ├── SpoolError                 the spool cannot be opened or written (says where it is)
    └── BrokerError (shared)
        └── PublishError           a result was not delivered; the message says where it is kept
"""

from __future__ import annotations

from shared.errors import BrokerError, EdgemeterError


class ModelError(EdgemeterError):
    """A model file is missing, corrupt or in a format no backend can run."""


class BackendError(EdgemeterError):
    """An inference runtime is missing, or failed to load or run the model."""


class DelegateError(BackendError):
    """A hardware delegate or execution provider the user asked for could not be loaded."""


class PowerSourceError(EdgemeterError):
    """A power source the user asked for by name cannot be read."""


class PublishError(BrokerError):
    """A result could not be delivered; the message says where the result is kept."""


class SpoolError(EdgemeterError):
    """The spool cannot be opened or written (disk full, permissions); says where it is."""


class ModelFetchError(EdgemeterError):
    """A job's model could not be fetched or did not match its sha256."""
