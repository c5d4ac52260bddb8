"""Finding and opening a SQLite file safely, and what SQLite's errors mean for a user.

Opening refuses, with a :class:`StoreError` that says why, a file that is not SQLite,
a SQLite database of another program, a schema newer than this code, a corrupt file,
a database it cannot write, and one whose disk or size limit is full: better not to
start than to lose or corrupt what is stored.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from prana._errors import StoreError

from ._schema import APPLICATION_ID, LATEST, MIGRATIONS

SQLITE_HEADER = b"SQLite format 3\x00"
# Check the whole file for corruption at start-up below this size.
QUICK_CHECK_LIMIT = 64 * 1024 * 1024


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """The path and options of ``sqlite:///relative/path.db`` or
    ``sqlite:////absolute/path.db``, options as query parameters (``?synchronous=FULL``).
    Raises :class:`StoreError` saying what is wrong with a URL that is not one."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "sqlite" or not parsed.path.startswith("/") or len(parsed.path) < 2:
        raise StoreError(
            f"{url!r} is not a SQLite store URL; write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    options: dict[str, Any] = {}
    for name, value in urllib.parse.parse_qsl(parsed.query):
        if name == "synchronous":
            if value.upper() not in ("OFF", "NORMAL", "FULL"):
                raise StoreError(f"synchronous must be OFF, NORMAL or FULL, not {value!r}")
            options.setdefault("synchronous", value.upper())
        elif name in ("busy_timeout", "max_page_count"):
            try:
                options.setdefault(name, float(value) if name == "busy_timeout" else int(value))
            except ValueError:
                raise StoreError(f"{name} must be a number, not {value!r}") from None
        else:
            raise StoreError(f"unknown option {name!r} in store URL {url!r}")
    return parsed.path[1:], options


def open_connections(
    path: Path, *, synchronous: str, busy_timeout: float, max_page_count: int | None
) -> tuple[sqlite3.Connection, sqlite3.Connection, sqlite3.Connection]:
    """The writer, reader and WAL checkpointer connections of a prana database at
    ``path``, created, checked and migrated. Raises :class:`StoreError`, leaving the file as it was, if it
    is not a prana database this code can use and write."""
    if path.exists():
        if path.is_dir():
            raise StoreError(f"{path} is a directory, not a database file")
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:  # an empty file is a new database
            raise StoreError(
                f"{path} is not a SQLite database (it may be corrupt, or another kind of "
                "file); point prana at another file, or move this one away"
            )
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder for {path}: {exc.strerror}") from None
    try:
        db = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise store_error(exc, "open", path, busy_timeout) from None
    reader: sqlite3.Connection | None = None
    checkpointer: sqlite3.Connection | None = None
    try:
        # Nothing changes in the file before it is known to be prana's (or new).
        tables = _check_identity(db, path, busy_timeout)
        _configure(db, path, synchronous, busy_timeout, max_page_count)
        if tables:
            _check_integrity(db, path, busy_timeout)
        _migrate(db, path, busy_timeout)
        _check_writable(db, path, busy_timeout)
        db.execute("PRAGMA busy_timeout = 0")  # the store waits for locks on its own
        # Reads have their own connection (WAL lets them run beside a write), so
        # they never wait behind a commit. They run on the loop's thread, so they
        # too wait for another process's lock on their own, asleep (decision 0030).
        reader = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        reader.execute("PRAGMA busy_timeout = 0")
        reader.execute("PRAGMA query_only = ON")
        # Checkpoints have one too, so that they run beside commits; it syncs as the
        # writer does.
        checkpointer = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        checkpointer.execute(f"PRAGMA synchronous = {synchronous}")
        # How long letting the WAL start over may hold commits off, waiting for the
        # writer to finish and for readers to leave the WAL (decision 0028).
        checkpointer.execute("PRAGMA busy_timeout = 50")
        checkpointer.execute("PRAGMA wal_autocheckpoint = 0")
        checkpointer.execute("PRAGMA cache_size = 16")  # it copies pages, it reads none
    except sqlite3.Error as exc:
        _close_all(db, reader, checkpointer)
        raise store_error(exc, "open", path, busy_timeout) from None
    except BaseException:
        _close_all(db, reader, checkpointer)
        raise
    return db, reader, checkpointer


def open_read_only(path: Path, *, busy_timeout: float) -> sqlite3.Connection:
    """A connection that only reads the prana database at ``path``, which must exist
    and be at this code's schema version; nothing in the file changes. Raises
    :class:`StoreError` saying why not."""
    if not path.exists():
        raise StoreError(
            f"there is no database at {path}: nothing has run with it yet ('prana run' "
            "creates it); give another with --db or PRANA_DB"
        )
    db = _open_existing_read_only(path, busy_timeout=busy_timeout)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != LATEST:
            raise StoreError(
                f"{path} has schema version {version}; this prana reads version {LATEST}: "
                "a command that writes to it (prana run, resume, ...) migrates it first"
            )
        db.execute("PRAGMA busy_timeout = 0")  # the store waits for locks on its own
        db.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        db.close()
        raise store_error(exc, "read", path, busy_timeout) from None
    except BaseException:
        db.close()
        raise
    return db


def _open_existing_read_only(path: Path, *, busy_timeout: float) -> sqlite3.Connection:
    """A read-only connection to the existing file at ``path``, refused unless it is
    a prana database this code can read or migrate."""
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a database file")
    try:
        db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise store_error(exc, "open", path, busy_timeout) from None
    try:
        _check_identity(db, path, busy_timeout)
    except BaseException:
        db.close()
        raise
    return db


def describe_file(path: Path, *, busy_timeout: float) -> str:
    """What opening ``path`` would find, changing nothing: a new database, or a prana
    database at a schema version (older ones are migrated on opening). Raises
    :class:`StoreError` saying why the file cannot be used."""
    if not path.exists():
        return f"{path} does not exist yet: it is created on start"
    if not path.is_dir() and not os.access(path, os.W_OK):
        raise StoreError(f"cannot write {path}: it is read-only; give prana a file it can write")
    db = _open_existing_read_only(path, busy_timeout=busy_timeout)
    try:
        _, version, tables = _identity(db)
    except sqlite3.Error as exc:
        raise store_error(exc, "read", path, busy_timeout) from None
    finally:
        db.close()
    if not tables:
        return f"{path} is empty: prana's tables are created on start"
    if version < LATEST:
        return f"{path} is at schema version {version}: it is migrated to {LATEST} on start"
    return f"{path} is a prana database at schema version {version}"


def _close_all(*connections: sqlite3.Connection | None) -> None:
    for connection in connections:
        if connection is not None:
            connection.close()


def _configure(
    db: sqlite3.Connection,
    path: Path,
    synchronous: str,
    busy_timeout: float,
    max_page_count: int | None,
) -> None:
    try:
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA journal_size_limit = 67108864")
        db.execute("PRAGMA wal_autocheckpoint = 0")
        if max_page_count is not None:
            db.execute(f"PRAGMA max_page_count = {int(max_page_count)}")
    except sqlite3.Error as exc:
        raise store_error(exc, "open", path, busy_timeout) from None
    if str(mode).lower() != "wal" and not _read_only(path):
        raise StoreError(
            f"{path}: SQLite could not use WAL mode here (got {mode!r}); "
            "put the database on a local disk"
        )


def _identity(db: sqlite3.Connection) -> tuple[int, int, list[str]]:
    """The file's application id, schema version and tables, read in one transaction:
    read statement by statement, they could straddle another process's migration and
    show its tables without its application id."""
    own = not db.in_transaction
    if own:
        db.execute("BEGIN")
    try:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = [
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
    finally:
        if own:
            db.execute("COMMIT")
    return application_id, version, tables


def _refusal(path: Path, application_id: int, version: int, tables: list[str]) -> str | None:
    """Why prana must not use a file with this identity, if it must not."""
    if application_id not in (0, APPLICATION_ID):
        return (
            f"{path} is a SQLite database of another program (its application id is "
            f"{application_id:#x}); point prana at its own file"
        )
    if application_id != APPLICATION_ID and tables:
        shown = ", ".join(sorted(tables)[:5])
        return (
            f"{path} is a SQLite database of another program (tables: {shown}); "
            "point prana at its own file"
        )
    if version > LATEST:
        return (
            f"{path} has schema version {version}, newer than this prana knows "
            f"({LATEST}); upgrade prana to use it"
        )
    return None


def _check_identity(db: sqlite3.Connection, path: Path, busy_timeout: float) -> list[str]:
    """Refuse a file that is not prana's (nor new), or is newer than this code, before
    anything in it changes; return its tables."""
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        application_id, version, tables = _identity(db)
    except sqlite3.DatabaseError as exc:
        raise store_error(exc, "read", path, busy_timeout) from None
    refusal = _refusal(path, application_id, version, tables)
    if refusal is not None:
        raise StoreError(refusal)
    return tables


def _check_integrity(db: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
    if path.stat().st_size > QUICK_CHECK_LIMIT:
        return
    try:
        result = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise store_error(exc, "check", path, busy_timeout) from None
    if result != "ok":
        raise StoreError(
            f"{path} is corrupt ({result}); restore it from a backup, or run "
            "sqlite3's .recover on a copy"
        )


def _migrate(db: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
    """Bring the schema to the latest version, in one transaction that holds the
    write lock from the reading of the version on: several processes may open a new
    (or old) file at once, and only the first migrates it."""
    try:
        _, version, _ = _identity(db)
        if version == LATEST:
            return
        db.execute("BEGIN IMMEDIATE")
        application_id, version, tables = _identity(db)  # as it is now, under the lock
        refusal = _refusal(path, application_id, version, tables)
        if refusal is not None:
            db.execute("ROLLBACK")
            raise StoreError(refusal)
        for target in range(version + 1, LATEST + 1):
            for statement in _statements(MIGRATIONS[target - 1]):
                db.execute(statement)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {LATEST}")
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise store_error(exc, f"migrate to schema version {LATEST}", path, busy_timeout) from None


def _statements(script: str) -> list[str]:
    """The statements of a migration script, one by one (a script run whole would
    commit the transaction it runs in)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


def _check_writable(db: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
    """Refuse to start if a write cannot be made: read-only file, full disk."""
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE IF NOT EXISTS prana_probe (x INTEGER)")
        db.execute("INSERT INTO prana_probe VALUES (1)")
        db.execute("DROP TABLE prana_probe")
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise store_error(exc, "write", path, busy_timeout) from None


def _read_only(path: Path) -> bool:
    return path.exists() and not os.access(path, os.W_OK)


def store_error(exc: sqlite3.Error, doing: str, path: Path, busy_timeout: float) -> StoreError:
    """A :class:`StoreError` that says what ``exc`` means for the user."""
    message = str(exc)
    lowered = message.lower()
    if "full" in lowered:
        text = (
            f"cannot {doing} {path}: the disk (or the database's size limit) is full; "
            "free space and start again: executions carry on from their last checkpoint"
        )
    elif "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
        text = f"cannot {doing} {path}: it is read-only; give prana a file it can write"
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        text = (
            f"cannot {doing} {path}: it is not a usable SQLite database ({message}); "
            "it may be corrupt: restore it from a backup or point prana at another file"
        )
    elif "locked" in lowered or "busy" in lowered:
        return locked_error(doing, path, busy_timeout)
    elif "unable to open" in lowered:
        text = f"cannot {doing} {path}: {message} (check the path and its permissions)"
    else:
        text = f"cannot {doing} {path}: {message}"
    return StoreError(text)


def locked_error(doing: str, path: Path, busy_timeout: float) -> StoreError:
    """The error for a write lock another process held past ``busy_timeout``."""
    return StoreError(
        f"cannot {doing} {path}: another process kept it locked for longer than "
        f"busy_timeout ({busy_timeout} s)"
    )
