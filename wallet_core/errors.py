"""Exceptions of the project, as a small tree::

    ShadowError                  root: anything rgs-shadow reports as a one-line message
    +-- ConfigError              a bad configuration key or value (exit 2)
    +-- StorageError             the store failed; the callback was not applied
    |   +-- StoreBusy            a lock or pool wait ran out: answered RETRY_LATER
    |   +-- SchemaOutdated       the store needs ``rgs-shadow db upgrade``
    +-- InputError               a file or argument given by the user is unusable (exit 2)

Wallet decisions are never exceptions: a refused bet is a value (:class:`Decision`).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputError",
    "SchemaOutdated",
    "ShadowError",
    "StorageError",
    "StoreBusy",
]


class ShadowError(Exception):
    """Root of the tree; ``str(exc)`` is the one line shown to the user."""


class ConfigError(ShadowError):
    """Raised while loading configuration; the message names the key."""


class StorageError(ShadowError):
    """Raised by a store when a transaction could not be completed; nothing was written."""


class StoreBusy(StorageError):
    """Raised when a lock or pool wait exceeded its bound; the caller answers RETRY_LATER."""


class SchemaOutdated(StorageError):
    """Raised when the store's schema is older than this code; run ``db upgrade``."""


class InputError(ShadowError):
    """Raised for unusable user input such as a malformed snapshot file."""
