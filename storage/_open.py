"""Choosing a store from what the user gave the engine."""

from __future__ import annotations

import os

from prana._errors import StoreError

from ._memory import MemoryStore
from ._postgres import PostgresStore
from ._protocol import Store
from ._sqlite import SQLiteStore, Synchronous


def open_store(
    option: Store | str | os.PathLike[str] | None, *, synchronous: Synchronous | None = None
) -> Store:
    """A store for ``option``: ``None`` or ``"memory://"`` for memory, a
    ``sqlite:///path.db`` URL or a path for SQLite, a ``postgresql://`` URL for
    PostgreSQL, or a :class:`Store` as it is.

    ``synchronous`` sets SQLite's synchronous mode unless the URL chose one. Raises
    :class:`StoreError` for a URL it does not understand. The store is not opened.
    """
    if option is None or option in ("memory", "memory://"):
        return MemoryStore()
    if isinstance(option, os.PathLike):
        return SQLiteStore(option, synchronous=synchronous or "NORMAL")
    if isinstance(option, str):
        if option.startswith("sqlite:"):
            store = SQLiteStore.from_url(option)
            if synchronous is not None and "synchronous=" not in option:
                store.synchronous = synchronous
            return store
        if option.startswith(("postgresql:", "postgres:")):
            return PostgresStore(option)
        raise StoreError(
            f"unknown store {option!r}; use None or 'memory://' for memory, "
            "'sqlite:///path/to/file.db' for SQLite, or 'postgresql://user@host/db' for "
            "PostgreSQL"
        )
    if not isinstance(option, Store):
        raise TypeError(
            f"store must be a Store, a store URL or a path, not {type(option).__name__}"
        )
    return option
