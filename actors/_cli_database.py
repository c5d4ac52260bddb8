"""Which database a ``prana`` command uses: one rule, for every command.

1. ``--db PATH`` (or ``--db sqlite:///PATH``), if given;
2. else the ``PRANA_DB`` environment variable, if set;
3. else the nearest ``.prana/prana.db``, from the current folder upward (as git finds
   its repository), so that commands run anywhere in a project share one;
4. else a new ``.prana/prana.db`` in the current folder, for the commands that write
   (``run``, ``resume``, ``cancel``, ...). The commands that only read (``list``,
   ``show``) never create a file: they say there is none.

Every command says which file it used.
"""

from __future__ import annotations

import os
from pathlib import Path

from prana._errors import StoreError
from prana.storage import PostgresStore, SQLiteStore, Store

DEFAULT_DB = Path(".prana") / "prana.db"


def find_database(given: str | None, *, create: bool) -> Path:
    """The database a command uses (see the module's docstring). Raises
    :class:`StoreError` if a reading command (``create=False``) finds none."""
    chosen = given or os.environ.get("PRANA_DB")
    if chosen:
        if chosen.startswith("sqlite:"):  # a URL: its file
            chosen = str(SQLiteStore.from_url(chosen).path)
        path = Path(chosen).expanduser()
        if not create and not path.exists():
            how = "--db" if given else "PRANA_DB"
            raise StoreError(
                f"there is no database at {path} (from {how}): nothing has run with it yet"
            )
        return path
    folder = Path.cwd()
    for candidate in (folder, *folder.parents):
        path = candidate / DEFAULT_DB
        if path.is_file():
            return path
    if not create:
        raise StoreError(
            f"no {DEFAULT_DB} here or in any folder above {folder}: nothing has run here "
            "yet; give a database with --db or PRANA_DB"
        )
    return folder / DEFAULT_DB


def store_for_reading(database: Path | str) -> Store:
    """The store of a command that only reads: the SQLite file, or the store URL,
    opened so that nothing is created or changed."""
    if isinstance(database, str):
        return PostgresStore(database, read_only=True)
    return SQLiteStore(database, read_only=True)
