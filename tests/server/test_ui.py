"""The web view's pages as the server sends them: sign-in, the forms' protection,
each page's HTML, the live part of a run's page (a real daemon, both backends)."""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import prana
from tests.server.client import Reply, read_events, request
from tests.server.conftest import daemon, example, start_waiting

FORM = {"content-type": "application/x-www-form-urlencoded"}


def csrf_of(page: Reply) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.body.decode())
    assert found is not None, "the page has no form token"
    return found.group(1)


async def post_form(
    url: str, path: str, fields: dict[str, str], headers: dict[str, str] | None = None
) -> Reply:
    raw = urllib.parse.urlencode(fields).encode()
    return await request(url, "POST", path, headers={**FORM, **(headers or {})}, raw=raw)


async def sign_in(url: str, token: str) -> dict[str, str]:
    """The session cookie a browser gets for signing in with ``token``."""
    reply = await post_form(url, "/ui/login", {"token": token, "next": "/ui/runs"})
    assert reply.status == 303
    cookie = reply.headers["set-cookie"]
    return {"cookie": cookie.split(";", 1)[0]}


async def execution(url: str, execution_id: str) -> dict[str, Any]:
    return dict((await request(url, "GET", f"/api/executions/{execution_id}")).json())


async def test_pages_need_a_session_that_a_token_opens(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")], tokens=["s3cret"]) as url:
        api = {"Authorization": "Bearer s3cret"}
        waiting = await start_waiting(url, headers=api)
        away = await request(url, "GET", "/ui/runs")
        login = await request(url, "GET", away.headers["location"])
        wrong = await post_form(url, "/ui/login", {"token": "guess", "next": "/ui/runs"})
        right = await post_form(url, "/ui/login", {"token": "s3cret", "next": "/ui/runs"})
        cookie = {"cookie": right.headers["set-cookie"].split(";", 1)[0]}
        runs = await request(url, "GET", "/ui/runs", headers=cookie)
        forged = await request(url, "GET", "/ui/runs", headers={"cookie": "prana_session=abc"})
        elsewhere = await post_form(
            url, "/ui/login", {"token": "s3cret", "next": "https://x.example"}
        )
    assert (away.status, away.headers["location"]) == (303, "/ui/login?next=/ui/runs")
    assert login.status == 200
    assert 'name="token" type="password"' in login.body.decode()
    assert wrong.status == 401
    assert "that is not one of this daemon&#39;s tokens" in wrong.body.decode()
    assert "set-cookie" not in wrong.headers
    assert right.headers["location"] == "/ui/runs"
    flags = right.headers["set-cookie"].lower()
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "s3cret" not in right.headers["set-cookie"]  # a value derived from it
    assert runs.status == 200
    assert waiting["id"] in runs.body.decode()
    assert forged.status == 303
    assert elsewhere.headers["location"] == "/ui"  # never sent off the site


async def test_forms_are_refused_without_their_token_or_from_another_site(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")], tokens=["t"]) as url:
        cookie = await sign_in(url, "t")
        waiting = await start_waiting(url, headers={"Authorization": "Bearer t"})
        cancel = f"/ui/runs/{waiting['id']}/cancel"
        page = await request(url, "GET", f"/ui/runs/{waiting['id']}", headers=cookie)
        token = csrf_of(page)
        bare = await post_form(url, cancel, {}, cookie)
        stale = await post_form(url, cancel, {"csrf": "0" * 64}, cookie)
        other_site = {**cookie, "origin": "https://evil.example"}
        crossed = await post_form(url, cancel, {"csrf": token}, other_site)
        no_session = await post_form(url, cancel, {"csrf": token})
        before = (await request(url, "GET", f"/api/executions/{waiting['id']}",
                                headers={"Authorization": "Bearer t"})).json()  # fmt: skip
        done = await post_form(url, cancel, {"csrf": token}, cookie)
        after = (await request(url, "GET", f"/api/executions/{waiting['id']}",
                               headers={"Authorization": "Bearer t"})).json()  # fmt: skip
    assert (bare.status, stale.status, crossed.status) == (403, 403, 403)
    assert "this form is stale: reload the page" in stale.body.decode()
    assert "sent from another site" in crossed.body.decode()
    assert no_session.status == 401
    assert before["status"] == "suspended"
    assert done.status == 303
    assert after["status"] == "cancelled"


async def test_the_runs_page_filters_and_pages_through_every_run(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        start = "/api/workflows/approval/executions?wait=10"
        started = [
            (await request(url, "POST", start, {"amount": 5000 if n % 10 == 0 else n})).json()
            for n in range(120)
        ]
        seen: list[str] = []
        pages = 0
        path: str | None = "/ui/runs"
        while path is not None:
            page = (await request(url, "GET", path)).body.decode()
            pages += 1
            seen += re.findall(r'<td><a href="/ui/runs/([0-9a-f]+)">', page)
            following = re.search(r'<a href="(/ui/runs\?[^"]+)" rel="next">', page)
            path = following.group(1).replace("&amp;", "&") if following else None
        waiting = (await request(url, "GET", "/ui/runs?status=suspended&workflow=")).body.decode()
        bad = await request(url, "GET", "/ui/runs?status=sleeping")
    assert pages == 3
    assert sorted(seen) == sorted(e["id"] for e in started)  # each once
    assert len(re.findall(r'<td><a href="/ui/runs/', waiting)) == 12
    assert "✓ completed" not in waiting
    assert bad.status == 400
    assert "status must be one of" in bad.body.decode()


async def test_a_queued_run_shows_why_it_waits_and_can_be_cancelled(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("refund.yaml")]) as url:
        start = "/api/workflows/refund/executions?wait=10"
        await request(url, "POST", start, {"customer": "ann", "amount": 20})
        queued = (await request(url, "POST", start, {"customer": "ann", "amount": 35})).json()
        listed = (await request(url, "GET", "/ui/runs?status=queued&workflow=")).body.decode()
        page = (await request(url, "GET", f"/ui/runs/{queued['id']}")).body.decode()
    assert re.findall(r'<td><a href="/ui/runs/([0-9a-f]+)">', listed) == [queued["id"]]
    assert "\u22ef queued" in page  # a state is a word and an icon
    assert "queued until an execution with concurrency key &#39;ann&#39; ends" in page
    assert f'action="/ui/runs/{queued["id"]}/cancel"' in page
    assert f'action="/ui/runs/{queued["id"]}/pause"' not in page


async def test_a_runs_page_shows_its_graph_in_states_and_a_nodes_drawer(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        waiting = await start_waiting(url)
        base = f"/ui/runs/{waiting['id']}"
        page = (await request(url, "GET", f"{base}?node=approval")).body.decode()
        drawer = (await request(url, "GET", f"{base}/nodes/start")).body.decode()
        missing = await request(url, "GET", "/ui/runs/nothing-here")
    states = dict(re.findall(r'data-key="([a-z_]+)" data-state="([a-z]+)"', page))
    assert states == {
        "start": "completed",
        "large": "completed",
        "auto_pay": "skipped",
        "approval": "waiting",
        "decision": "pending",
        "pay": "pending",
        "refused": "pending",
        "expired": "pending",
    }
    assert "✓ completed" in page  # a state is a word and an icon, not a colour alone
    assert "node &#39;approval&#39; waits for data until" in page  # the explanation
    assert "Pay 4000? (limit 1000)" in page  # the wait's data, in the drawer
    assert f'action="/ui/runs/{waiting["id"]}/resume"' in page
    assert "<h4>Output</h4>" in drawer
    assert "<html" not in drawer  # a fragment, for htmx to put in place
    assert missing.status == 404
    assert "no execution has id" in missing.body.decode()


async def test_a_waiting_node_is_answered_from_its_drawer(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        waiting = await start_waiting(url)
        base = f"/ui/runs/{waiting['id']}"
        token = csrf_of(await request(url, "GET", f"{base}?node=approval"))
        bad = await post_form(
            url, f"{base}/resume", {"csrf": token, "node": "approval", "data": "{approved"}
        )
        still = await execution(url, waiting["id"])
        answer = '{"approved": true, "by": "ann"}'
        answered = await post_form(
            url, f"{base}/resume", {"csrf": token, "node": "approval", "data": answer}
        )
        after = await execution(url, waiting["id"])
        shown = (await request(url, "GET", answered.headers["location"])).body.decode()
    assert bad.status == 400
    assert "the data is not JSON" in bad.body.decode()
    assert still["status"] == "suspended"
    assert answered.status == 303
    assert after["status"] == "completed"
    assert after["output"] == {"paid": 4000, "approved_by": "ann"}
    assert 'data-key="pay" data-state="completed"' in shown


async def test_a_run_is_started_from_its_workflows_page(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        listed = (await request(url, "GET", "/ui/workflows")).body.decode()
        page = await request(url, "GET", "/ui/workflows/approval")
        token = csrf_of(page)
        started = await post_form(
            url, "/ui/workflows/approval/start", {"csrf": token, "input": '{"amount": 70}'}
        )
        run_id = started.headers["location"].split("?")[0].rsplit("/", 1)[1]
        ran = await execution(url, run_id)
        history = (await request(url, "GET", "/ui/workflows/approval")).body.decode()
    assert '<a href="/ui/workflows/approval">approval</a>' in listed
    assert 'id="node-approval"' in page.body.decode()
    assert "data-json-form" in page.body.decode()  # checked before it is sent
    assert started.status == 303
    assert (ran["input"], ran["status"]) == ({"amount": 70}, "completed")
    assert "the last 1 runs" in history
    assert "Slowest nodes" in history


async def test_schedules_are_paused_and_resumed_from_the_workflows_page(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("order_intake.yaml")]) as url:
        page = await request(url, "GET", "/ui/workflows/order_intake")
        token = csrf_of(page)
        paused = await post_form(url, "/ui/schedules/order_intake/nightly/pause", {"csrf": token})
        shown = (await request(url, "GET", paused.headers["location"])).body.decode()
        listed = (await request(url, "GET", "/api/schedules")).json()["schedules"]
    assert "<td>active</td>" in page.body.decode()
    assert "<td>paused</td>" in shown
    assert "nightly paused" in shown
    assert [s["paused"] for s in listed] == [True]


async def test_bulk_cancel_changes_what_the_filter_selects(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        waiting = [await start_waiting(url) for _ in range(3)]
        start = "/api/workflows/approval/executions?wait=10"
        done = (await request(url, "POST", start, {"amount": 5})).json()
        token = csrf_of(await request(url, "GET", "/ui/runs?status=suspended"))
        fields = {"csrf": token, "status": "suspended", "workflow": "", "action": "cancel"}
        reply = await post_form(url, "/ui/runs/bulk", fields)
        shown = (await request(url, "GET", reply.headers["location"])).body.decode()
        statuses = [(await execution(url, e["id"]))["status"] for e in [*waiting, done]]
        forged = await request(url, "GET", "/ui/runs?said=Send+your+token+to+x.example")
    assert statuses == ["cancelled", "cancelled", "cancelled", "completed"]
    assert "cancel: 3 changed, 0 refused" in shown
    assert "Send your token" not in forged.body.decode()  # only what the daemon said


@pytest.mark.parametrize("answered_on", ["this daemon", "another daemon on the store"])
async def test_the_live_part_of_a_run_follows_it_to_its_end(
    tmp_path: Path, answered_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where another daemon carries the run on, this one looks in the store.
    monkeypatch.setattr("prana.server._streams.FIRST_LOOK", 0.05)
    db, served = tmp_path / "d.db", [example("approval.yaml")]
    async with contextlib.AsyncExitStack() as daemons:
        url = await daemons.enter_async_context(daemon(db, served))
        answering = url
        if answered_on != "this daemon":
            answering = await daemons.enter_async_context(daemon(db, served))
        waiting = await start_waiting(url)
        listening = anyio.Event()
        streamed: list[Any] = []

        async def follow() -> None:
            _, events = await read_events(url, f"/ui/runs/{waiting['id']}/live", started=listening)
            streamed.extend(events)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(follow)
                await listening.wait()
                (token,) = [s["token"] for s in waiting["suspensions"]]
                await request(answering, "POST", f"/api/resume/{token}", {"approved": False})
    names = [event.event for event in streamed]
    assert names[0] == "state"
    assert names[-1] == "end"
    first, last = streamed[0].data, streamed[-2].data
    assert 'data-key="approval" data-state="waiting"' in first
    assert 'data-key="approval" data-state="completed"' in last
    assert 'data-key="refused" data-state="completed"' in last
    assert "✓ completed" in last


def test_the_graph_is_laid_out_in_columns_with_loops_drawn_back() -> None:
    from prana.server._layout import layout

    workflow = prana.load_workflow(
        {
            "id": "loop",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "step", "type": "core.noop"},
                {"key": "check", "type": "logic.if", "params": {"condition": "{{ true }}"}},
                {"key": "done", "type": "core.noop"},
            ],
            "connections": [
                {"from": "start", "to": "step"},
                {"from": "step", "to": "check"},
                {"from": "check", "to": "step", "from_port": "false"},
                {"from": "check", "to": "done", "from_port": "true"},
            ],
        }
    )
    drawn = layout(workflow)
    columns = {key: box.column for key, box in drawn.boxes.items()}
    back = [(e.connection.from_, e.connection.to) for e in drawn.edges if e.back]
    assert columns == {"start": 0, "step": 1, "check": 2, "done": 3}
    assert back == [("check", "step")]
    assert set(drawn.boxes["check"].outputs) == {"true", "false"}


async def test_a_failed_nodes_drawer_shows_its_input_error_and_traceback(
    tmp_path: Path,
) -> None:
    actions = prana.ActionRegistry()

    @actions.action("test.reserve")
    def reserve(ctx: Any) -> Any:
        raise ValueError(f"no stock for {ctx.input['sku']}")

    workflow = prana.load_workflow(
        {
            "id": "shop",
            "nodes": [
                {"key": "start", "type": "manual.trigger"},
                {"key": "order", "type": "data.set", "params": {"values": {"sku": "A-1"}}},
                {"key": "reserve", "type": "test.reserve"},
            ],
            "connections": [{"from": "start", "to": "order"}, {"from": "order", "to": "reserve"}],
        },
        actions=actions,
    )
    async with daemon(tmp_path / "d.db", [workflow], actions=actions) as url:
        start = "/api/workflows/shop/executions?wait=10"
        failed = (await request(url, "POST", start, {})).json()
        page = (await request(url, "GET", f"/ui/runs/{failed['id']}?node=reserve")).body.decode()
    assert failed["status"] == "failed"
    assert 'data-key="reserve" data-state="failed"' in page
    assert "✗ failed" in page
    assert "<h4>Input, from order</h4>" in page
    assert "&#34;sku&#34;: &#34;A-1&#34;" in page
    assert "action_error: ValueError: no stock for A-1" in page
    assert "<h4>Traceback</h4>" in page
    assert "in reserve" in page  # the action's own frame
    assert f'action="/ui/runs/{failed["id"]}/retry"' in page  # offered: it failed
    assert f'action="/ui/runs/{failed["id"]}/pause"' not in page


async def test_a_run_is_rerun_from_a_chosen_node(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        start = "/api/workflows/approval/executions?wait=10"
        first = (await request(url, "POST", start, {"amount": 30})).json()
        page = await request(url, "GET", f"/ui/runs/{first['id']}")
        token = csrf_of(page)
        reply = await post_form(
            url, f"/ui/runs/{first['id']}/rerun", {"csrf": token, "node": "auto_pay"}
        )
        rerun_id = reply.headers["location"].split("?")[0].rsplit("/", 1)[1]
        with anyio.fail_after(10):
            while (again := await execution(url, rerun_id))["status"] == "running":
                await anyio.lowlevel.checkpoint()  # the daemon is in this loop
        shown = (await request(url, "GET", reply.headers["location"])).body.decode()
    assert 'data-key="auto_pay"' in page.body.decode()
    assert rerun_id != first["id"]
    assert again["status"] == "completed"
    assert again["output"] == first["output"]
    ran = [run["node_key"] for run in again["node_runs"] if run.get("status") == "completed"]
    assert "auto_pay" in ran
    assert f"a rerun of {first['id']}" in shown
