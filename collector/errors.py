"""The collector's errors, under the shared root :class:`shared.errors.EdgemeterError`.

    EdgemeterError (shared)
    ├── StoreError                 the results database could not be opened, migrated or written
    └── BrokerError (shared)
        └── SubscribeError         the collector's subscription was refused or not confirmed
"""

from __future__ import annotations

from shared.errors import BrokerError, EdgemeterError


class StoreError(EdgemeterError):
    """The results store could not be opened, migrated or written."""


class SubscribeError(BrokerError):
    """The broker refused the collector's subscription or did not confirm it in time."""
