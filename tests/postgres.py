"""A throwaway PostgreSQL cluster for the tests: ``initdb`` and ``pg_ctl`` (Debian's
``postgresql`` package; ``.ci/run`` installs it) on a temporary folder, reached over
a Unix socket, with trust authentication; ``fsync`` off (a killed process loses no
committed write without it; only a machine crash would). Run as root, the server
runs as the ``postgres`` user, which the package creates.

Without the server's programs, PostgreSQL tests are skipped, unless
``PRANA_POSTGRES_TESTS=required`` (as in CI), when their absence fails them.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def missing() -> str | None:
    """Why PostgreSQL tests cannot run here, or ``None``."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev,serve,postgres]')"
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        return "PostgreSQL's server is not installed (Debian: apt-get install postgresql)"
    return None


def require() -> None:
    """Skip (or, where required, fail) a test that cannot reach PostgreSQL."""
    why = missing()
    if why is not None:
        if os.environ.get("PRANA_POSTGRES_TESTS") == "required":
            pytest.fail(f"the PostgreSQL tests cannot run: {why}")
        pytest.skip(why)


@contextmanager
def cluster(folder: Path, *, fsync: bool = False) -> Iterator[str]:
    """A running cluster in ``folder``; the URL of its ``postgres`` database. With
    ``fsync`` (benchmarks), commits reach the disk as on a production server."""
    folder.mkdir(parents=True, exist_ok=True)
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    subprocess.run(
        [*as_user, _bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
         "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    durable = "on" if fsync else "off"
    options = f"-k {folder} -c listen_addresses='' -c fsync={durable} -c max_connections=200"
    subprocess.run(
        [*as_user, _bin("pg_ctl"), "-D", str(data), "-o", options, "-l",
         str(folder / "server.log"), "-w", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql://postgres@/postgres?host={folder}"
    finally:
        subprocess.run(
            [*as_user, _bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )


_numbers = itertools.count(1)


def fresh_database(url: str) -> str:
    """A new, empty database on the cluster at ``url``; its URL."""
    import psycopg

    name = f"test_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return url.replace("/postgres?", f"/{name}?")


_shared: list[str] = []


def database() -> str:
    """A new, empty database on the test session's cluster (started on first use,
    stopped when the tests end); its URL. Skips the test when PostgreSQL cannot run."""
    require()
    if not _shared:
        import atexit
        import contextlib
        import tempfile

        stack = contextlib.ExitStack()
        folder = Path(tempfile.mkdtemp(prefix="prana-pg-"))
        _shared.append(stack.enter_context(cluster(folder)))
        atexit.register(stack.close)
        atexit.register(shutil.rmtree, folder, True)
    return fresh_database(_shared[0])
