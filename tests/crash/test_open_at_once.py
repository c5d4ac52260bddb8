"""Many processes opening one SQLite file at once all start: the first creates (or
migrates) the schema, in one transaction, and the others find it done (DESIGN §8)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prana.storage._schema import LATEST, MIGRATIONS

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 8


def open_at_once(db: Path, go: Path) -> list[subprocess.CompletedProcess[str]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.crash.open_at_once", str(db), str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    time.sleep(1.0)  # the interpreters start and wait for the signal
    go.touch()
    finished = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        finished.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return finished


@pytest.mark.parametrize("start_from", ["no file", "version 1"])
def test_many_processes_open_one_file_at_once_and_all_start(
    tmp_path: Path, start_from: str
) -> None:
    db, go = tmp_path / "prana.db", tmp_path / "go"
    if start_from == "version 1":
        with sqlite3.connect(db, isolation_level=None) as connection:
            connection.executescript(MIGRATIONS[0])
            connection.execute(f"PRAGMA application_id = {0x7072616E}")
            connection.execute("PRAGMA user_version = 1")
        connection.close()
    finished = open_at_once(db, go)
    assert [(p.returncode, p.stdout.strip(), p.stderr) for p in finished] == [
        (0, "completed", "")
    ] * PROCESSES
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert connection.execute("SELECT count(*) FROM executions").fetchone()[0] == PROCESSES
    connection.close()
