"""The prana command against a daemon (--url): the same reports, through the API."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import pytest

from prana import Engine
from prana.actors._cli import main
from tests.server.client import request
from tests.server.conftest import EXAMPLES, daemon, example, start_waiting


async def prana(*argv: str) -> int:
    """The command, in a thread: it blocks on its requests while the daemon answers."""
    return await anyio.to_thread.run_sync(partial(main, list(argv)))


async def test_list_show_resume_and_status_go_through_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRANA_TOKEN", "s3cret")
    monkeypatch.setenv("PRANA_DB", str(tmp_path / "unused.db"))
    token = {"Authorization": "Bearer s3cret"}
    # Another process's engine on the daemon's database, alive before the daemon is.
    other = Engine(store=tmp_path / "d.db")
    async with (
        other,
        daemon(tmp_path / "d.db", [example("approval.yaml")], tokens=["s3cret"]) as url,
    ):
        waiting = await start_waiting(url, headers=token)
        (suspension,) = waiting["suspensions"]
        listed = await prana("--url", url, "list", "--status", "suspended")
        out_list = capsys.readouterr().out
        shown = await prana("--url", url, "show", waiting["id"])
        out_show = capsys.readouterr().out
        explained = await prana("--url", url, "explain", waiting["id"])
        out_explain = capsys.readouterr().out
        resumed = await prana(
            "--url", url, "resume", suspension["token"], "--data", '{"approved": true, "by": "ann"}'
        )
        out_resume = capsys.readouterr().out
        status = await prana("--url", url, "status")
        out_status = capsys.readouterr().out
        missing = await prana("--url", url, "show", "0" * 32)
        err_missing = capsys.readouterr().err
    assert (listed, shown, explained, resumed, status, missing) == (0, 0, 0, 0, 0, 1)
    assert out_explain.startswith("node 'approval' waits for data until ")
    assert f"answer it with token {suspension['token']}" in out_explain
    assert waiting["id"] in out_list
    assert "suspended" in out_show
    assert suspension["token"] in out_show
    assert "completed" in out_resume
    assert '"approved_by": "ann"' in out_resume
    assert f"daemon at {url}: ok" in out_status
    assert "  engine: " in out_status
    engines = next(line for line in out_status.splitlines() if "engines alive" in line)
    assert "engines alive on its database: 2 (" in engines
    assert other.owner in engines
    assert "executions: 1 completed" in out_status
    assert "no execution has id" in err_missing
    assert not (tmp_path / "unused.db").exists()  # nothing went to a database


async def test_control_through_the_daemon_and_what_a_wrong_url_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        waiting = await start_waiting(url)
        paused = await prana("--url", url, "pause", waiting["id"])
        cancelled = await prana("--url", url, "cancel", waiting["id"], "--reason", "not needed")
        out = capsys.readouterr().out
        again = await prana("--url", url, "cancel", waiting["id"])
        err_again = capsys.readouterr().err
        ended = (await request(url, "GET", f"/api/executions/{waiting['id']}")).json()
    unreachable = await prana("--url", "http://127.0.0.1:9", "list")
    err_unreachable = capsys.readouterr().err
    assert (paused, cancelled, again, unreachable) == (0, 0, 1, 1)
    assert "paused" in out
    assert "cancelled" in out
    assert ended["status"] == "cancelled"
    assert ended["error"]["message"] == "not needed"
    assert "only an execution that has not ended can be cancelled" in err_again
    assert "cannot reach the daemon at http://127.0.0.1:9" in err_unreachable


async def test_logs_follows_an_execution_to_its_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        waiting = await start_waiting(url)
        (suspension,) = waiting["suspensions"]
        printed = ""
        async with anyio.create_task_group() as group:
            codes: list[int] = []

            async def follow() -> None:
                codes.append(await prana("--url", url, "logs", waiting["id"]))

            group.start_soon(follow)
            with anyio.fail_after(10):
                while "(event" not in printed:  # the stream has begun
                    await anyio.sleep(0.01)
                    printed += capsys.readouterr().out
            await request(url, "POST", f"/api/resume/{suspension['token']}", {"approved": True})
        printed += capsys.readouterr().out
        ended = await prana("--url", url, "logs", waiting["id"])
        again = capsys.readouterr().out
    lines = printed.splitlines()
    assert codes == [0]
    assert lines[0] == (
        f"execution {waiting['id']} of approval v1: suspended (event {waiting['last_event']})"
    )
    # The runs before the stream joined come first, timed from the execution's start.
    assert lines[1][15:].startswith("start                completed -> main in ")
    assert lines[2][15:].startswith("large                completed -> true in ")
    assert 0 < float(lines[1][1:10]) <= float(lines[2][1:10]) < 1000
    assert "approval             completed -> main" in printed
    assert "pay                  completed -> main" in printed
    assert lines[-1] == "ended completed"
    assert ended == 0
    assert again.splitlines()[0].startswith(f"execution {waiting['id']} of approval v1: completed")
    assert "pay                  completed -> main" in again  # an ended one's runs


async def test_run_and_validate_send_the_file_to_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRANA_DB", str(tmp_path / "unused.db"))
    monkeypatch.chdir(tmp_path)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        "id: unknown\nnodes:\n  - {key: start, type: manual.trigger}\n"
        "  - {key: work, type: test.only_here}\n"
        "connections:\n  - {from: start, to: work}\n"
    )
    lonely = tmp_path / "lonely.yaml"
    lonely.write_text(
        "id: lonely\nnodes:\n  - {key: start, type: manual.trigger}\n"
        "  - {key: work, type: core.noop}\n  - {key: alone, type: core.noop}\n"
        "connections:\n  - {from: start, to: work}\n"
    )
    parent = str(EXAMPLES / "fulfil_order.yaml")
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        # The parent runs on the daemon; its child (approval, served there) waits.
        ran = await prana("--url", url, "run", parent, "--input", '{"amount": 5000}')
        out_run, err_run = capsys.readouterr()
        parent_id = out_run.split()[1]
        served = (await request(url, "GET", "/api/workflows")).json()["workflows"]
        (child,) = (await request(url, "GET", "/api/executions?workflow=approval")).json()[
            "executions"
        ]
        (suspension,) = child["suspensions"]
        answered = await prana(
            "--url", url, "resume", suspension["token"], "--data", '{"approved": true}'
        )
        with anyio.fail_after(10):
            followed = await prana("--url", url, "logs", parent_id)  # until the parent ends
        capsys.readouterr()
        shown = await prana("--url", url, "show", parent_id)
        out_show = capsys.readouterr().out
        valid = await prana("--url", url, "validate", parent)
        out_valid = capsys.readouterr().out
        warned = await prana("--url", url, "validate", str(lonely))
        out_warned = capsys.readouterr().out
        invalid = await prana("--url", url, "run", str(unknown))
        err_invalid = capsys.readouterr().err
        checked = await prana("--url", url, "validate", str(unknown))
        err_checked = capsys.readouterr().err
        local_only = await prana("--url", url, "run", parent, "--actions", "x:y")
        err_local_only = capsys.readouterr().err
    assert (ran, answered, followed, shown, valid) == (0, 0, 0, 0, 0)
    assert out_run.startswith(f"Execution {parent_id} of fulfil_order v1: suspended")
    assert suspension["token"] in out_run  # what the child waits for, read from the daemon
    assert f"on the daemon at {url}" in err_run
    # Its progress begins with its first node, whenever the stream joined it.
    assert err_run.splitlines()[1][15:].startswith("start                completed -> main")
    assert [w["id"] for w in served] == ["approval"]  # the file ran; it is not served
    assert "completed" in out_show
    assert '"shipped": true' in out_show
    assert out_valid.startswith(f"{parent} is valid on the daemon at {url}")
    assert warned == 0
    warning = "warning: nodes[2]: node 'alone' is never run: no trigger leads to it"
    assert out_warned.splitlines()[1:] == [warning]
    assert await prana("validate", str(lonely)) == 0  # here, the same warning
    assert capsys.readouterr().out.splitlines()[1:] == [warning]
    assert (invalid, checked) == (1, 1)
    for err in (err_invalid, err_checked):
        assert f"checked by the daemon at {url}" in err
        assert "test.only_here" in err
    assert local_only == 2
    assert "--actions is for running here" in err_local_only
    assert not (tmp_path / "unused.db").exists()  # nothing went to a database here
    assert not (tmp_path / ".prana").exists()
