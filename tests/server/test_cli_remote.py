"""The prana command against a daemon (--url): the same reports, through the API."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import pytest

from prana.actors._cli import main
from tests.server.client import request
from tests.server.conftest import daemon, example, start_waiting


async def prana(*argv: str) -> int:
    """The command, in a thread: it blocks on its requests while the daemon answers."""
    return await anyio.to_thread.run_sync(partial(main, list(argv)))


async def test_list_show_resume_and_status_go_through_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRANA_TOKEN", "s3cret")
    monkeypatch.setenv("PRANA_DB", str(tmp_path / "unused.db"))
    token = {"Authorization": "Bearer s3cret"}
    async with daemon(tmp_path / "d.db", [example("approval.yaml")], tokens=["s3cret"]) as url:
        waiting = await start_waiting(url, headers=token)
        (suspension,) = waiting["suspensions"]
        listed = await prana("--url", url, "list", "--status", "suspended")
        out_list = capsys.readouterr().out
        shown = await prana("--url", url, "show", waiting["id"])
        out_show = capsys.readouterr().out
        resumed = await prana(
            "--url", url, "resume", suspension["token"], "--data", '{"approved": true, "by": "ann"}'
        )
        out_resume = capsys.readouterr().out
        status = await prana("--url", url, "status")
        out_status = capsys.readouterr().out
        missing = await prana("--url", url, "show", "0" * 32)
        err_missing = capsys.readouterr().err
    assert (listed, shown, resumed, status, missing) == (0, 0, 0, 0, 1)
    assert waiting["id"] in out_list
    assert "suspended" in out_show
    assert suspension["token"] in out_show
    assert "completed" in out_resume
    assert '"approved_by": "ann"' in out_resume
    assert f"daemon at {url}: ok" in out_status
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
    assert "approval             completed -> main" in printed
    assert "pay                  completed -> main" in printed
    assert lines[-1] == "ended completed"
    assert ended == 0
    assert again.splitlines()[0].startswith(f"execution {waiting['id']} of approval v1: completed")
