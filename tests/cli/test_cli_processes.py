"""The prana command as a user meets it in a terminal: interrupted, killed, frozen,
and run from other folders. Real processes, real time (short)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLOW = """
id: slow
nodes:
  - {key: start, type: manual.trigger}
  - {key: work, type: slow.step}
  - {key: after, type: core.noop}
connections:
  - {from: start, to: work}
  - {from: work, to: after}
"""


def prana(
    *arguments: str, cwd: Path, env: dict[str, str], background: bool = False
) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "prana", *arguments]
    if background:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def setting(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "slow.yaml").write_text(SLOW)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SLOW_LOG": str(tmp_path / "slow.log"),
        "PRANA_DB": str(tmp_path / "prana.db"),
    }
    return tmp_path, env


def started(log: Path, count: int = 1) -> None:
    deadline = time.monotonic() + 30
    while not (log.exists() and len(log.read_text().splitlines()) >= count):
        assert time.monotonic() < deadline, "the action did not start"
        time.sleep(0.02)


def execution_id(log: Path) -> str:
    return log.read_text().split()[1].split(":")[0]


ACTIONS = ("--actions", "tests.cli.slow_actions:actions")


@pytest.mark.parametrize(
    ("signal_name", "backend"),
    [("SIGINT", "asyncio"), ("SIGINT", "trio"), ("SIGKILL", "asyncio")],
)
def test_an_interrupted_or_killed_run_is_carried_on_by_resume(
    setting: tuple[Path, dict[str, str]], signal_name: str, backend: str
) -> None:
    folder, env = setting
    log = folder / "slow.log"
    running = prana(
        "run", "slow.yaml", *ACTIONS, "--quiet", "--backend", backend,
        cwd=folder, env=env, background=True,
    )  # fmt: skip
    assert isinstance(running, subprocess.Popen)
    started(log)
    running.send_signal(getattr(signal, signal_name))
    _, err = running.communicate(timeout=30)
    identifier = execution_id(log)
    if signal_name == "SIGINT":
        assert "Traceback" not in err, err  # all of it, to say where
        assert running.returncode == 130
        assert f"execution {identifier} stopped where it was" in err
        assert f"'prana resume {identifier}'" in err
        assert f"'prana cancel {identifier}'" in err
    # Released (Ctrl-C), or its process is gone (killed): no lease to wait out.
    done = prana("resume", identifier, *ACTIONS, "--json", cwd=folder, env=env)
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["status"] == "completed"
    assert shown["order"] == ["start", "work", "after"]
    assert log.read_text().count(f"start {identifier}:work:0") == 2  # cut short, run again


def test_a_command_never_waits_silently_for_a_frozen_engine(
    setting: tuple[Path, dict[str, str]],
) -> None:
    folder, env = setting
    log = folder / "slow.log"
    running = prana("run", "slow.yaml", *ACTIONS, "--quiet", cwd=folder, env=env, background=True)
    assert isinstance(running, subprocess.Popen)
    try:
        started(log)
        running.send_signal(signal.SIGSTOP)  # frozen, holding its lease
        identifier = execution_id(log)
        asked = prana("cancel", identifier, "--timeout", "1s", cwd=folder, env=env)
        assert isinstance(asked, subprocess.CompletedProcess)
        assert asked.returncode == 1
        assert f"execution {identifier} is running in another engine; waiting" in asked.stderr
        assert "gave up after 1 s" in asked.stderr
    finally:
        running.send_signal(signal.SIGCONT)
        running.send_signal(signal.SIGINT)
        running.communicate(timeout=30)


def test_run_waits_through_a_short_wait_and_returns_at_a_long_one(
    setting: tuple[Path, dict[str, str]],
) -> None:
    folder, env = setting
    (folder / "pause.yaml").write_text(
        "id: pause\nnodes:\n  - {key: start, type: manual.trigger}\n"
        "  - {key: pause, type: wait.interval, params: {duration: 300ms}}\n"
        "  - {key: after, type: core.noop}\n"
        "connections:\n  - {from: start, to: pause}\n  - {from: pause, to: after}\n"
    )
    done = prana("run", "pause.yaml", "--input", '{"n": 1}', "--json", cwd=folder, env=env)
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    assert json.loads(done.stdout)["output"] == {"n": 1}
    waiting = prana("run", "pause.yaml", "--wait-up-to", "0", "--json", cwd=folder, env=env)
    assert isinstance(waiting, subprocess.CompletedProcess)
    assert json.loads(waiting.stdout)["status"] == "suspended"


def test_commands_find_the_nearest_database_upward_and_say_which(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PRANA_DB"}
    env["PYTHONPATH"] = str(ROOT)
    project = tmp_path / "project"
    deeper = project / "src" / "flows"
    deeper.mkdir(parents=True)
    (project / "hello.yaml").write_text(
        "id: hello\nnodes:\n  - {key: start, type: manual.trigger}\n"
    )
    made = prana("run", "hello.yaml", "--quiet", cwd=project, env=env)
    assert isinstance(made, subprocess.CompletedProcess)
    database = project / ".prana" / "prana.db"
    assert made.returncode == 0, made.stderr
    assert f"prana: using {database}" in made.stderr
    listed = prana("list", cwd=deeper, env=env)
    assert isinstance(listed, subprocess.CompletedProcess)
    assert listed.returncode == 0, listed.stderr
    assert f"prana: using {database}" in listed.stderr
    assert "hello v1" in listed.stdout
    assert not (deeper / ".prana").exists()
    elsewhere = prana("list", cwd=tmp_path, env=env)
    assert isinstance(elsewhere, subprocess.CompletedProcess)
    assert elsewhere.returncode == 1
    assert "no .prana/prana.db here or in any folder above" in elsewhere.stderr
    assert not (tmp_path / ".prana").exists()


@pytest.mark.parametrize("command", ["cancel", "pause"])
def test_a_killed_run_s_execution_can_be_cancelled_or_paused_at_once(
    setting: tuple[Path, dict[str, str]], command: str
) -> None:
    folder, env = setting
    log = folder / "slow.log"
    running = prana("run", "slow.yaml", *ACTIONS, "--quiet", cwd=folder, env=env, background=True)
    assert isinstance(running, subprocess.Popen)
    started(log)
    running.kill()  # its lease would run for another 30 s: its process is gone, though
    running.communicate(timeout=30)
    identifier = execution_id(log)
    done = prana(command, identifier, *ACTIONS, "--json", "--timeout", "10s", cwd=folder, env=env)
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["status"] == ("cancelled" if command == "cancel" else "paused")
    # Not started again only to be stopped.
    assert log.read_text().count(f"start {identifier}:work:0") == 1
    if command == "pause":  # unpaused, the node that was cut short runs again
        carried = prana("resume", identifier, *ACTIONS, "--json", cwd=folder, env=env)
        assert isinstance(carried, subprocess.CompletedProcess)
        assert carried.returncode == 0, carried.stderr
        assert json.loads(carried.stdout)["status"] == "completed"
        assert log.read_text().count(f"start {identifier}:work:0") == 2


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    # prana list | head: once head has read enough, prana's writes fail. It stops
    # there, without a traceback, with the exit code a closed pipe gives.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PRANA_DB": str(tmp_path / "prana.db")}
    (tmp_path / "hello.yaml").write_text(
        "id: hello\nnodes:\n  - {key: start, type: manual.trigger}\n"
    )
    made = prana("run", "hello.yaml", "--quiet", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "prana", "list"],
            cwd=tmp_path,
            env=env,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert listed.returncode == 141
    assert "Traceback" not in listed.stderr
    assert "BrokenPipeError" not in listed.stderr
