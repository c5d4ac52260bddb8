"""``prana serve`` as an operator runs it: a real process, stopped with SIGTERM while
executions run, then started again on the same database."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import postgres

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = """
id: held
version: 1
nodes:
  - {key: hook, type: webhook.trigger, params: {path: held}}
  - {key: mark, type: mark.step}
  - {key: hold, type: hold.step}
  - {key: after, type: mark.step}
connections:
  - {from: hook, to: mark}
  - {from: mark, to: hold}
  - {from: hold, to: after}
"""
EXECUTIONS = 4


class Daemon:
    """A ``prana serve`` process: its URL and what it wrote on stderr."""

    def __init__(self, folder: Path, backend: str, *options: str) -> None:
        self.process, self.url = start_daemon(folder, backend, *options)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            self.stderr.extend(self.process.stderr)

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=5)
        return code


def start_daemon(folder: Path, backend: str, *options: str) -> tuple[subprocess.Popen[str], str]:
    """``prana serve`` on ``folder``'s SQLite file, or with ``options`` (``--db URL``,
    say) after the usual ones."""
    env = {
        **os.environ,
        "DAEMON_LOG": str(folder / "log"),
        "DAEMON_HOLD": str(folder / "hold"),
    }
    process = subprocess.Popen(
        [
            sys.executable, "-m", "prana", "serve",
            "--db", str(folder / "d.db"),
            "--workflows", str(folder / "held.yaml"),
            "--actions", "tests.server.daemon_actions:actions",
            "--port", "0", "--grace", "2s", "--backend", backend, *options,
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert process.stderr is not None
    said = []
    for line in process.stderr:
        said.append(line)
        if "serving at " in line:
            return process, line.split("serving at ")[1].strip()
    process.stderr.close()
    raise AssertionError(
        f"the daemon did not start (exit code {process.wait()}):\n{''.join(said)[-3000:]}"
    )


def call(url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def lines(folder: Path, what: str, *, by: int | None = None) -> list[str]:
    """The executions that ran ``what`` (in the process ``by``, if given)."""
    log = folder / "log"
    text = log.read_text() if log.exists() else ""
    found = [line.split() for line in text.splitlines() if line.startswith(what)]
    return [words[1] for words in found if by is None or words[2] == str(by)]


def until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("backend", "processes"), [("asyncio", "1"), ("trio", "1"), ("asyncio", "2")]
)
def test_sigterm_mid_run_then_a_restart_loses_nothing_and_runs_no_completed_node_again(
    tmp_path: Path, backend: str, processes: str
) -> None:
    (tmp_path / "held.yaml").write_text(WORKFLOW)
    (tmp_path / "hold").touch()
    daemon = Daemon(tmp_path, backend, "--processes", processes)
    url = daemon.url
    started = [
        call(url, "POST", "/hooks/held", {"n": n})["execution_id"] for n in range(EXECUTIONS)
    ]
    until(lambda: len(lines(tmp_path, "hold")) == EXECUTIONS, "every execution to be held")
    stopping = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - stopping < 10
    assert "Traceback" not in "".join(daemon.stderr)
    assert any("SIGTERM: stopping" in line for line in daemon.stderr)

    (tmp_path / "hold").unlink()
    daemon = Daemon(tmp_path, backend, "--processes", processes)
    url = daemon.url
    try:

        def all_completed() -> bool:
            listed = call(url, "GET", "/api/executions")["executions"]
            return sorted(e["id"] for e in listed if e["status"] == "completed") == sorted(started)

        until(all_completed, "every execution to complete after the restart")
        executions = [call(url, "GET", f"/api/executions/{id}") for id in started]
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in "".join(daemon.stderr)
    for execution in executions:
        assert execution["order"] == ["hook", "mark", "hold", "after"]
        assert execution["output"] == {"held": {"n": int(execution["input"]["body"]["n"])}}
    # The node that completed before the stop ran once; the one cut short ran again.
    assert sorted(lines(tmp_path, "mark")) == sorted(started * 2)  # mark and after
    assert sorted(lines(tmp_path, "hold")) == sorted(started * 2)


def test_work_posted_to_a_full_daemon_runs_on_another_with_room(tmp_path: Path) -> None:
    postgres.require()
    url = postgres.database()
    (tmp_path / "held.yaml").write_text(WORKFLOW)
    (tmp_path / "hold").touch()
    full = Daemon(tmp_path, "asyncio", "--db", url, "--max-running", "1")
    roomy = Daemon(tmp_path, "trio", "--db", url)
    try:
        first = call(full.url, "POST", "/hooks/held", {"n": 1})["execution_id"]
        until(lambda: lines(tmp_path, "hold") == [first], "the first to be held")
        (tmp_path / "hold").unlink()  # what follows is quick
        second = call(full.url, "POST", "/hooks/held", {"n": 2})["execution_id"]

        def second_completed() -> bool:
            return bool(call(full.url, "GET", f"/api/executions/{second}")["status"] == "completed")

        until(second_completed, "the second to complete")
        first_now = call(roomy.url, "GET", f"/api/executions/{first}")
    finally:
        assert full.stop() == 0
        assert roomy.stop() == 0
    assert lines(tmp_path, "hold", by=full.process.pid) == [first]
    assert lines(tmp_path, "hold", by=roomy.process.pid) == [second]
    assert first_now["status"] == "running"
    assert "Traceback" not in "".join(full.stderr + roomy.stderr)


def test_a_command_following_a_daemon_that_dies_says_so(tmp_path: Path) -> None:
    (tmp_path / "held.yaml").write_text(WORKFLOW)
    (tmp_path / "hold").touch()
    daemon = Daemon(tmp_path, "asyncio")
    (execution_id,) = [call(daemon.url, "POST", "/hooks/held", {"n": 1})["execution_id"]]
    until(lambda: len(lines(tmp_path, "hold")) == 1, "the execution to be held")
    logs = subprocess.Popen(
        [sys.executable, "-m", "prana", "--url", daemon.url, "logs", execution_id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert logs.stdout is not None
    assert logs.stdout.readline().startswith(f"execution {execution_id} of held")
    daemon.process.kill()  # SIGKILL: the stream breaks off
    daemon.process.wait()
    _, err = logs.communicate(timeout=30)
    assert logs.returncode == 1
    assert "ended the stream of events before the execution ended (it was running)" in err
    assert f"prana logs {execution_id}" in err
    assert "Traceback" not in err


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_several_processes_share_the_port_and_the_work_and_one_killed_is_replaced(
    tmp_path: Path,
) -> None:
    (tmp_path / "held.yaml").write_text(WORKFLOW)
    (tmp_path / "hold").touch()
    daemon = Daemon(tmp_path, "asyncio", "--processes", "2")
    started: list[str] = []
    try:
        # Each request comes on a new connection, which either daemon may take.
        while len(lines_by_pid(tmp_path)) < 2 and len(started) < 40:
            started.append(
                call(daemon.url, "POST", "/hooks/held", {"n": len(started)})["execution_id"]
            )
            until(lambda: len(lines(tmp_path, "hold")) == len(started), "the execution to be held")
        pids = sorted(lines_by_pid(tmp_path))
        assert len(pids) == 2, "every execution ran in one daemon"

        def live_in_all() -> bool:  # read through either daemon: each shows both
            found = samples(daemon.url, "prana_live_executions")
            return sorted(found) == ['{process="1"}', '{process="2"}'] and sum(
                found.values()
            ) == len(started)

        until(live_in_all, "the executions held to show in every daemon's figures")
        by_status = samples(daemon.url, "prana_executions")
        assert by_status == {'{status="running"}': len(started)}  # the store's, once
        killed = lines(tmp_path, "hold", by=int(pids[0]))
        (tmp_path / "hold").unlink()  # what runs from now on is quick
        os.kill(int(pids[0]), signal.SIGKILL)

        def carried_on() -> bool:
            try:
                listed = call(daemon.url, "GET", "/api/executions?status=completed")
            except OSError:  # a connection the killed daemon had taken as it died
                return False
            return {e["id"] for e in listed["executions"]} == set(killed)

        until(carried_on, "the killed daemon's executions to be carried on and complete")
    finally:
        code = daemon.stop()
    said = "".join(daemon.stderr)
    assert code == 0
    assert f"(pid {pids[0]}) ended (signal SIGKILL)" in said
    assert said.count("started daemon ") == 1  # the one in place of the killed one
    # Each daemon's lines say which it is (the one started in place takes its number).
    assert "INFO prana.server [daemon 1]: serving" in said
    assert "INFO prana.server [daemon 2]: serving" in said
    assert "Traceback" not in said
    # The killed daemon's held executions ran again elsewhere; no daemon is left.
    assert all(lines(tmp_path, "hold").count(id) == 2 for id in killed)
    assert not any(alive(int(pid)) for pid in lines_by_pid(tmp_path))


def samples(url: str, name: str) -> dict[str, float]:
    """The samples of ``name`` on the daemon's /metrics page, by their labels."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as reply:
        page = reply.read().decode()
    found = {}
    for line in page.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line[len(name) :].rpartition(" ")
            found[labels] = float(value)
    return found


def lines_by_pid(folder: Path) -> set[str]:
    """The processes that ran a ``hold.step``."""
    log = folder / "log"
    text = log.read_text() if log.exists() else ""
    return {line.split()[2] for line in text.splitlines() if line.startswith("hold")}


def test_daemons_that_keep_failing_at_start_stop_the_command(tmp_path: Path) -> None:
    (tmp_path / "held.yaml").write_text(WORKFLOW)
    with sqlite3.connect(tmp_path / "d.db") as connection:  # another program's database
        connection.execute("CREATE TABLE customers (name TEXT)")
    connection.close()
    daemon = Daemon(tmp_path, "asyncio", "--processes", "2")
    code = daemon.process.wait(timeout=60)
    daemon.stop()
    said = "".join(daemon.stderr)
    assert code == 1
    assert "is a SQLite database of another program" in said
    assert "daemons keep ending within 10 s of their start: stopping" in said


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


@pytest.mark.skipif(sys.platform != "linux", reason="reads the processes from /proc")
def test_a_frozen_daemon_is_killed_and_another_started_in_its_place(tmp_path: Path) -> None:
    (tmp_path / "held.yaml").write_text(WORKFLOW)
    daemon = Daemon(tmp_path, "asyncio", "--processes", "2", "--watchdog", "2s")
    try:
        first = children_of(daemon.process.pid)
        assert len(first) == 2
        frozen = first[0]
        os.kill(frozen, signal.SIGSTOP)  # as a debugger, a cgroup freezer or a swap storm does

        def replaced() -> bool:
            now = children_of(daemon.process.pid)
            return len(now) == 2 and frozen not in now

        until(replaced, "the frozen daemon to be replaced")
        started = [call(daemon.url, "POST", "/hooks/held", {"n": n}) for n in range(6)]

        def all_completed() -> bool:
            listed = call(daemon.url, "GET", "/api/executions?status=completed")
            return len(listed["executions"]) == len(started)

        until(all_completed, "the executions started after it to complete")
    finally:
        code = daemon.stop()
    said = "".join(daemon.stderr)
    assert code == 0
    assert f"(pid {frozen}) gave no sign of life for " in said
    assert f"(pid {frozen}) ended (signal SIGKILL)" in said
    assert said.count("started daemon ") == 1
    assert not alive(frozen)


@pytest.mark.skipif(sys.platform != "linux", reason="an abstract Unix socket, as systemd's")
@pytest.mark.parametrize("processes", ["1", "2"])
def test_the_daemon_tells_systemd_it_is_ready_alive_and_stopping(
    tmp_path: Path, processes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "held.yaml").write_text(WORKFLOW)
    name = f"prana-test-{os.getpid()}-{processes}"
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind("\0" + name)
    systemd.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a beat every 0.2 s at least
    heard: list[str] = []

    def hear(state: str, count: int = 1) -> None:
        while sum(state in message.split("\n") for message in heard) < count:
            heard.append(systemd.recv(4096).decode())

    with systemd:
        daemon = Daemon(tmp_path, "asyncio", "--processes", processes)
        try:
            hear("READY=1")
            status = call(daemon.url, "GET", "/api/status")
            hear("WATCHDOG=1", 3)
        finally:
            code = daemon.stop()
        hear("STOPPING=1")
    assert code == 0
    assert status["engine"]
    assert heard[0].split("\n")[0] == "READY=1"
    # Only the process systemd started speaks: one READY, however many daemons.
    assert sum("READY=1" in message.split("\n") for message in heard) == 1
