"""An engine frozen past its lease (SIGSTOP) while another takes over: when it wakes
(SIGCONT), it starts no action of the executions the other took (fencing, DESIGN §7)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import prana
from tests import postgres

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parents[2]
JOBS = 10


def workload(db: Path | str, log: Path, backend: str, *, freeze: bool) -> subprocess.Popen[str]:
    env = {**os.environ, "PRANA_FREEZE": "1" if freeze else "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash.freeze", str(db), str(log), str(JOBS), backend],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc)."""
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


def wait_until(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_frozen_engine_wakes_and_starts_nothing_another_took_over(
    tmp_path: Path, backend: str, store: str
) -> None:
    log = tmp_path / "actions.log"
    db = postgres.database() if store == "postgres" else tmp_path / "prana.db"
    frozen = workload(db, log, backend, freeze=True)
    try:
        wait_until(lambda: log.exists() and "frozen" in log.read_text(), "the freeze")
        wait_until(lambda: stopped(frozen.pid), "the process to stop")
        # Every `call` failed its first attempt and waits to try again, in memory, in
        # the frozen process; another engine takes them over once its lease is over.
        other = workload(db, log, backend, freeze=False)
        out, err = other.communicate(timeout=60)
        assert other.returncode == 0, err
        assert out.strip().endswith("DONE")
        before_waking = len(log.read_text().splitlines())
        frozen.send_signal(signal.SIGCONT)
        out, err = frozen.communicate(timeout=60)
        assert frozen.returncode == 0, err
    finally:
        if frozen.poll() is None:
            frozen.kill()
    lines = [line.split() for line in log.read_text().splitlines()]
    woken_starts = [line for line in lines[before_waking:] if line[0] == "start"]
    assert woken_starts == []  # the frozen engine started nothing once awake
    first = {line[-1] for line in lines[:3]}
    assert first == {str(frozen.pid)}

    async def outcomes() -> list[prana.Execution]:
        url = db if isinstance(db, str) else f"sqlite:///{db}"
        async with prana.Engine(store=url, recover=False) as engine:
            return [await engine.get(e.id) for e in await engine.list_executions(limit=100)]

    executions = anyio.run(outcomes)
    assert len(executions) == JOBS + 1
    assert all(execution.status == "completed" for execution in executions)
    for execution in executions:
        if execution.workflow_id == "retrying":
            calls = [(run.status, run.attempt) for run in execution.runs_of("call")]
            assert calls == [("retried", 1), ("completed", 2)]
    # Each second attempt ran once, in the engine that took over.
    second_attempts = [line for line in lines if line[0] == "start" and line[2] == "2"]
    assert len(second_attempts) == JOBS
    assert {line[3] for line in second_attempts} == {str(other.pid)}
