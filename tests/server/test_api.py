"""The daemon's HTTP API as a client sees it: starting, reading, answering and
controlling executions, webhooks, tokens, limits and errors."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import anyio
from starlette.routing import Route

import prana
from prana.server import create_app
from tests.helpers import make_workflow
from tests.server.client import ServerEvent, read_events, request
from tests.server.conftest import daemon, example, held_action, start_waiting

PROBLEM = "application/problem+json"


async def test_a_webhook_starts_an_execution_with_the_request_as_its_trigger(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path / "d.db", [example("order_intake.yaml")]) as url:
        started = await request(
            url,
            "POST",
            "/hooks/orders?source=shop&tag=a&tag=b",
            {"amount": 40},
            headers={"X-Shop": "berlin"},
        )
        assert started.status == 202
        execution_id = started.json()["execution_id"]
        done = await request(url, "GET", f"/api/executions/{execution_id}")
    execution = done.json()
    assert execution["workflow_id"] == "order_intake"
    assert execution["trigger"] == "web"
    assert execution["input"]["body"] == {"amount": 40}
    assert execution["input"]["headers"]["x-shop"] == "berlin"
    assert execution["input"]["query"] == {"source": "shop", "tag": ["a", "b"]}


async def test_a_webhook_takes_json_form_fields_and_text_by_their_content_type(
    tmp_path: Path,
) -> None:
    sent = [
        ("application/json; charset=utf-8", b'{"amount": 40}'),
        ("application/x-www-form-urlencoded", b"amount=40&item=a&item=b&note=caf%C3%A9+au+lait"),
        ("application/x-www-form-urlencoded", b'{"amount": 40}'),  # curl -d's default type
        ("text/plain; charset=latin-1", "café".encode("latin-1")),
        ("application/xml", b"<order amount='40'/>"),
        ("", b""),
    ]
    async with daemon(tmp_path / "d.db", [example("order_intake.yaml")]) as url:
        bodies = []
        for content_type, raw in sent:
            headers = {"Content-Type": content_type} if content_type else {}
            started = await request(url, "POST", "/hooks/orders", headers=headers, raw=raw)
            assert started.status == 202, started.json()
            execution_id = started.json()["execution_id"]
            done = await request(url, "GET", f"/api/executions/{execution_id}")
            bodies.append(done.json()["input"]["body"])
        refused = await request(
            url, "POST", "/hooks/orders", headers={"Content-Type": "image/png"}, raw=b"\x89PNG"
        )
        garbled = await request(
            url, "POST", "/hooks/orders", headers={"Content-Type": "text/plain"}, raw=b"\xff\xfe"
        )
        not_json = await request(
            url, "POST", "/hooks/orders", headers={"Content-Type": "application/json"}, raw=b"{"
        )
    assert bodies == [
        {"amount": 40},
        {"amount": "40", "item": ["a", "b"], "note": "café au lait"},
        {"amount": 40},
        "café",
        "<order amount='40'/>",
        None,
    ]
    assert (refused.status, refused.json()["title"]) == (415, "Unsupported body")
    assert (
        "JSON, form fields (application/x-www-form-urlencoded) or text" in refused.json()["detail"]
    )
    assert (garbled.status, garbled.json()["detail"]) == (
        400,
        "the body is not text in utf-8; send it in UTF-8",
    )
    assert not_json.status == 400


async def test_a_webhook_sent_again_with_its_idempotency_key_starts_nothing_new(
    tmp_path: Path,
) -> None:
    key = {"Idempotency-Key": "delivery-17"}
    async with daemon(tmp_path / "d.db", [example("order_intake.yaml")]) as url:
        first = await request(url, "POST", "/hooks/orders", {"amount": 40}, headers=key)
        # A delivery sent again differs in its headers (a date, say), not its body.
        again = await request(
            url, "POST", "/hooks/orders", {"amount": 40}, headers={**key, "X-Sent": "2"}
        )
        reused = await request(url, "POST", "/hooks/orders", {"amount": 41}, headers=key)
        other = await request(url, "POST", "/hooks/orders", {"amount": 40})
        listed = await request(url, "GET", "/api/executions?workflow=order_intake")
    assert (first.status, again.status, other.status) == (202, 200, 202)
    assert reused.status == 422  # the key of another request: refused, not answered
    assert reused.json()["title"] == "Idempotency-Key reused"
    assert reused.json()["execution_id"] == first.json()["execution_id"]
    assert again.json()["execution_id"] == first.json()["execution_id"]
    assert other.json()["execution_id"] != first.json()["execution_id"]
    assert len(listed.json()["executions"]) == 2


async def test_a_webhook_sender_may_wait_for_the_outcome(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("order_intake.yaml")]) as url:
        waited = await request(
            url,
            "POST",
            "/hooks/orders",
            {"amount": 40},
            headers={"X-Shop": "b", "Prefer": "wait=10"},
        )
        unread = await request(
            url,
            "POST",
            "/hooks/orders",
            {"amount": 40},
            headers={"X-Shop": "b", "Prefer": "wait=x"},
        )
    assert waited.status == 200  # it ended within the wait: its execution, whole
    assert waited.json()["status"] == "completed"
    assert waited.json()["trigger"] == "web"
    assert waited.json()["output"] == {"accepted": 40, "shop": "b", "via": "webhook"}
    assert unread.status == 202  # a preference that cannot be read is ignored
    assert set(unread.json()) == {"execution_id", "status"}


async def test_a_request_no_webhook_answers_is_refused_with_the_routes_served(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path / "d.db", [example("order_intake.yaml")]) as url:
        reply = await request(url, "POST", "/hooks/nothing", {})
        wrong_method = await request(url, "GET", "/hooks/orders")
    assert reply.status == 404
    assert reply.headers["content-type"] == PROBLEM
    assert "POST /orders" in reply.json()["detail"]
    # The path is a webhook's, for another method.
    assert (wrong_method.status, wrong_method.headers["allow"]) == (405, "POST")
    assert "/orders answers POST" in wrong_method.json()["detail"]


async def test_start_waits_for_the_result_when_asked(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        reply = await request(
            url, "POST", "/api/workflows/approval/executions?wait=10", {"amount": 40}
        )
    assert reply.status == 201
    execution = reply.json()
    assert execution["status"] == "completed"
    assert execution["order"] == ["start", "large", "auto_pay"]
    assert execution["output"] == {"paid": 40, "approved_by": "automatic"}


async def test_get_waits_for_a_running_execution_to_stop_when_asked(tmp_path: Path) -> None:
    actions, released = held_action({"done": True})
    workflow = make_workflow(
        {"start": "manual.trigger", "slow": "test.slow"}, ["start -> slow"], actions=actions
    )
    async with daemon(tmp_path / "d.db", [workflow], actions=actions) as url:
        started = await request(url, "POST", f"/api/workflows/{workflow.id}/executions", {})
        path = f"/api/executions/{started.json()['id']}"
        now = await request(url, "GET", path)
        bad = await request(url, "GET", f"{path}?wait=soon")
        replies = []

        async def get_waiting() -> None:
            replies.append(await request(url, "GET", f"{path}?wait=10"))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(get_waiting)
                released.set()
    assert now.json()["status"] == "running"  # the action has not returned
    assert (bad.status, bad.headers["content-type"]) == (400, PROBLEM)
    (waited,) = replies
    assert waited.json()["status"] == "completed"
    assert waited.json()["output"] == {"done": True}
    assert waited.json()["order"] == ["start", "slow"]  # the whole trail


async def test_a_customer_s_second_refund_waits_in_the_queue(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("refund.yaml")]) as url:
        path = "/api/workflows/refund/executions?wait=10"
        first = await request(url, "POST", path, {"customer": "ann", "amount": 20})
        second = await request(url, "POST", path, {"customer": "ann", "amount": 35})
        queued = await request(url, "GET", "/api/executions?status=queued")
        explained = await request(url, "GET", f"/api/executions/{second.json()['id']}/explain")
        token = first.json()["suspensions"][0]["token"]
        streamed = []
        listening = anyio.Event()

        def waits(events: list[ServerEvent]) -> bool:
            return any(event.event == "ExecutionSuspended" for event in events)

        async def stream() -> None:
            path = f"/api/executions/{second.json()['id']}/events"
            streamed.append(await read_events(url, path, until=waits, started=listening))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(stream)
                await listening.wait()
                await request(url, "POST", f"/api/resume/{token}", {"approved": True})
        started = await request(url, "GET", f"/api/executions/{second.json()['id']}")
    assert (first.json()["status"], second.json()["status"]) == ("suspended", "queued")
    assert (second.json()["concurrency_key"], second.json()["priority"]) == ("ann", 0)
    assert [e["id"] for e in queued.json()["executions"]] == [second.json()["id"]]
    assert "concurrency key 'ann'" in explained.json()["reasons"][0]
    assert started.json()["status"] == "suspended"
    assert started.json()["order"] == ["start", "review"]
    names = [event.event for event in streamed[0][1]]
    assert names[0] == "snapshot"  # queued, then it ran
    assert "ExecutionStarted" in names


async def test_a_start_gives_its_priority_and_bad_ones_are_refused(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("refund.yaml")]) as url:
        path = "/api/workflows/refund/executions?wait=10"
        await request(url, "POST", path, {"customer": "ann", "amount": 20})
        urgent = await request(url, "POST", f"{path}&priority=-7", {"customer": "ann"})
        bad_priority = await request(url, "POST", f"{path}&priority=-99999999", {"customer": "x"})
        not_a_number = await request(url, "POST", f"{path}&priority=high", {"customer": "x"})
        bad_key = await request(url, "POST", path, {"customer": {"id": 1}, "amount": 1})
    assert (urgent.json()["status"], urgent.json()["priority"]) == ("queued", -7)
    assert bad_priority.status == 400
    assert "priority must be a whole number" in bad_priority.json()["detail"]
    assert not_a_number.status == 400
    assert "priority must be a whole number" in not_a_number.json()["detail"]
    assert bad_key.status == 422
    assert "concurrency_key" in bad_key.json()["detail"]


async def test_an_idempotency_key_starts_one_execution(tmp_path: Path) -> None:
    key = {"Idempotency-Key": "payment-17"}
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        path = "/api/workflows/approval/executions?wait=10"
        first = await request(url, "POST", path, {"amount": 40}, headers=key)
        again = await request(url, "POST", path, {"amount": 40}, headers=key)
        other_body = await request(url, "POST", path, {"amount": 70}, headers=key)
        listed = await request(url, "GET", "/api/executions")
    assert (first.status, again.status) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["output"] == {"paid": 40, "approved_by": "automatic"}
    # The same key with another body is a client's mistake, not a retry.
    assert other_body.status == 422
    assert other_body.json()["execution_id"] == first.json()["id"]
    assert "different body" in other_body.json()["detail"]
    assert [e["id"] for e in listed.json()["executions"]] == [first.json()["id"]]


async def test_a_waiting_node_is_answered_by_its_token(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        waiting = await start_waiting(url)
        (suspension,) = waiting["suspensions"]
        listed = await request(url, "GET", "/api/executions?status=suspended")
        answered = await request(
            url, "POST", f"/api/resume/{suspension['token']}", {"approved": True, "by": "ann"}
        )
        used = await request(url, "POST", f"/api/resume/{suspension['token']}", {})
    assert waiting["status"] == "suspended"
    assert suspension["node_key"] == "approval"
    assert suspension["data"]["prompt"] == "Pay 4000? (limit 1000)"
    assert [e["id"] for e in listed.json()["executions"]] == [waiting["id"]]
    assert answered.status == 200
    assert answered.json()["status"] == "completed"
    assert answered.json()["output"] == {"paid": 4000, "approved_by": "ann"}
    assert used.status == 404
    assert "expired or was used" in used.json()["detail"]


async def test_control_pauses_unpauses_and_cancels(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        execution_id = (await start_waiting(url))["id"]
        base = f"/api/executions/{execution_id}"
        paused = await request(url, "POST", f"{base}/pause")
        unpaused = await request(url, "POST", f"{base}/unpause")
        cancelled = await request(url, "POST", f"{base}/cancel", {"reason": "not needed"})
        again = await request(url, "POST", f"{base}/cancel")
        unknown = await request(url, "POST", f"{base}/explode")
    assert paused.json()["status"] == "paused"
    assert unpaused.json()["status"] == "suspended"
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["message"] == "not needed"
    assert again.status == 409
    assert again.headers["content-type"] == PROBLEM
    assert "cancelled" in again.json()["detail"]
    assert unknown.status == 404


async def test_the_api_needs_a_token_when_the_daemon_has_some(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")], tokens=["s3cret"]) as url:
        without = await request(url, "GET", "/api/workflows")
        wrong = await request(
            url, "GET", "/api/workflows", headers={"Authorization": "Bearer guess"}
        )
        right = await request(
            url, "GET", "/api/workflows", headers={"Authorization": "Bearer s3cret"}
        )
        health = await request(url, "GET", "/healthz")
        ready = await request(url, "GET", "/readyz")
    assert (without.status, wrong.status, right.status) == (401, 401, 200)
    assert without.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer TOKEN" in without.json()["detail"]
    assert [w["id"] for w in right.json()["workflows"]] == ["approval"]
    assert (health.status, ready.status) == (200, 200)
    assert ready.json()["ok"] is True


async def test_bad_requests_are_refused_with_what_to_do(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")], max_body=100) as url:
        start = "/api/workflows/approval/executions"
        large = await request(url, "POST", start, {"note": "x" * 200})
        not_json = await request(url, "POST", start, raw=b"{amount: 4")
        bad_wait = await request(url, "POST", f"{start}?wait=forever", {"amount": 1})
        no_workflow = await request(url, "POST", "/api/workflows/payroll/executions", {})
        no_execution = await request(url, "GET", "/api/executions/" + "0" * 32)
        bad_status = await request(url, "GET", "/api/executions?status=done")
        listed = await request(url, "GET", "/api/executions")
    for reply in (large, not_json, bad_wait, no_workflow, no_execution, bad_status):
        assert reply.headers["content-type"] == PROBLEM
        assert reply.json()["status"] == reply.status
    assert large.status == 413
    assert "100 bytes" in large.json()["detail"]
    assert not_json.status == 400
    assert bad_wait.status == 400
    assert "from 0 to 300" in bad_wait.json()["detail"]
    assert no_workflow.status == 404
    assert "served: approval" in no_workflow.json()["detail"]
    assert no_execution.status == 404
    assert bad_status.status == 400
    assert listed.json()["executions"] == []  # nothing bad was started


async def test_a_misspelt_filter_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    # An unknown field must not read as no filter at all: a bulk cancel would then
    # cancel every execution, and a list would show what the user filtered out.
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        waiting = await start_waiting(url)
        cancel = await request(url, "POST", "/api/bulk/cancel", {"workflw": "approval"})
        not_an_object = await request(url, "POST", "/api/bulk/cancel", ["approval"])
        bad_limit = await request(url, "POST", "/api/bulk/cancel", {"limit": True})
        listed = await request(url, "GET", "/api/executions?stauts=failed")
        control = f"/api/executions/{waiting['id']}"
        resume = await request(url, "POST", f"{control}/resume", {"dta": {"approved": True}})
        cancel_one = await request(url, "POST", f"{control}/cancel", ["closing"])
        waited = await request(url, "GET", f"{control}?wiat=5")
        started = await request(url, "POST", "/api/workflows/approval/executions?priorty=3", {})
        explained = await request(url, "GET", f"{control}/explain?verbose=1")
        still = await request(url, "GET", control)
        listed_all = await request(url, "GET", "/api/executions")
        probed = await request(url, "GET", "/healthz?probe=k8s")  # monitoring's: taken
    replies = (cancel, not_an_object, bad_limit, listed, resume, cancel_one, waited, started)
    for reply in (*replies, explained):
        assert reply.status == 400
        assert reply.headers["content-type"] == PROBLEM
    assert cancel.json()["detail"] == (
        "unknown field 'workflw' (did you mean 'workflow'?); the fields are status, "
        "workflow, limit, reason"
    )
    assert "the body must be an object" in not_an_object.json()["detail"]
    assert "limit must be a whole number" in bad_limit.json()["detail"]
    assert "unknown query parameter 'stauts' (did you mean 'status'?)" in listed.json()["detail"]
    assert "unknown field 'dta' (did you mean 'data'?)" in resume.json()["detail"]
    assert "the body of cancel is an object of reason" in cancel_one.json()["detail"]
    assert "unknown query parameter 'wiat' (did you mean 'wait'?)" in waited.json()["detail"]
    assert "unknown query parameter 'priorty'" in started.json()["detail"]
    assert "unknown query parameter 'verbose'" in explained.json()["detail"]
    # Nothing was cancelled or started, and the wait was not answered with no data.
    assert still.json()["status"] == "suspended"
    assert [e["id"] for e in listed_all.json()["executions"]] == [waiting["id"]]
    assert probed.status == 200


async def test_a_path_or_method_no_route_takes_is_refused_as_a_problem(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        nowhere = await request(url, "GET", "/api/runs")
        wrong_method = await request(url, "PUT", "/api/executions", {})
        static = await request(url, "POST", "/ui/static/prana.css", {})
        root = await request(url, "GET", "/")
        no_page = await request(url, "GET", "/ui/nothing")
    assert (nowhere.status, nowhere.headers["content-type"]) == (404, PROBLEM)
    assert "/api/openapi.json" in nowhere.json()["detail"]
    assert (wrong_method.status, wrong_method.headers["content-type"]) == (405, PROBLEM)
    # Every method the path takes, though two routes take it.
    assert wrong_method.headers["allow"] == "GET, HEAD, POST"
    assert wrong_method.json()["detail"] == "/api/executions takes GET, HEAD, POST, not PUT"
    assert (static.status, static.headers["allow"]) == (405, "GET, HEAD")
    # A browser pointed at the daemon finds its runs; a page that is not there says so.
    assert (root.status, root.headers["location"]) == (303, "/ui/runs")
    assert no_page.status == 404
    assert "there is no page at /ui/nothing" in no_page.body.decode()


async def test_explain_says_in_words_why_an_execution_waits(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        execution = await start_waiting(url)
        explained = await request(url, "GET", f"/api/executions/{execution['id']}/explain")
    (token,) = [s["token"] for s in execution["suspensions"]]
    body = explained.json()
    assert (body["status"], body["moving"]) == ("suspended", False)
    (reason,) = body["reasons"]
    assert reason.startswith("node 'approval' waits for data until ")
    assert f"POST /api/resume/{token}" in reason
    assert body["text"] == reason


async def test_workflows_are_validated_and_served_through_the_api(tmp_path: Path) -> None:
    definition = {
        "id": "greet",
        "version": 1,
        "nodes": [
            {"key": "start", "type": "manual.trigger"},
            {"key": "say", "type": "data.set", "params": {"values": {"hi": "{{ input.name }}"}}},
        ],
        "connections": [{"from": "start", "to": "say"}],
    }
    broken = {
        **definition,
        "nodes": [*definition["nodes"], {"key": "say", "type": "no.such"}],
        "connections": [{"from": "start", "to": "nowhere"}],
    }
    # Two triggers (either may start it) and a node neither leads to.
    triggered_twice = {
        **definition,
        "id": "twice",
        "nodes": [
            *definition["nodes"],
            {"key": "hook", "type": "webhook.trigger", "params": {"path": "twice"}},
            {"key": "lonely", "type": "core.noop"},
        ],
        "connections": [{"from": "start", "to": "say"}, {"from": "hook", "to": "say"}],
    }
    async with daemon(tmp_path / "d.db") as url:
        checked = await request(url, "POST", "/api/workflows/validate", definition)
        twice = await request(url, "POST", "/api/workflows/validate", triggered_twice)
        refused = await request(url, "POST", "/api/workflows/validate", broken)
        not_served = await request(url, "GET", "/api/workflows")
        served = await request(url, "POST", "/api/workflows", definition)
        listed = await request(url, "GET", "/api/workflows")
        shown = await request(url, "GET", "/api/workflows/greet")
        ran = await request(url, "POST", "/api/workflows/greet/executions?wait=10", {"name": "Ada"})
    assert checked.json() == {"valid": True, "id": "greet", "version": 1, "warnings": []}
    assert (twice.status, twice.json()["valid"]) == (200, True)
    assert twice.json()["warnings"] == [
        {"path": "nodes[3]", "message": "node 'lonely' is never run: no trigger leads to it"}
    ]
    assert refused.status == 422
    paths = {problem["path"] for problem in refused.json()["problems"]}
    assert {"nodes[2].key", "nodes[2].type", "connections[0].to"} <= paths
    assert not_served.json()["workflows"] == []
    assert (served.status, served.json()) == (201, {"id": "greet", "version": 1, "served": True})
    assert [w["id"] for w in listed.json()["workflows"]] == ["greet"]
    assert shown.json()["nodes"][1]["key"] == "say"
    assert ran.json()["output"] == {"hi": "Ada"}


async def test_a_definition_runs_once_without_being_served(tmp_path: Path) -> None:
    definition = {
        "id": "greet",
        "version": 1,
        "nodes": [
            {"key": "start", "type": "manual.trigger"},
            {"key": "hook", "type": "webhook.trigger", "params": {"path": "greet"}},
            {"key": "say", "type": "data.set", "params": {"values": {"hi": "{{ input.name }}"}}},
        ],
        "connections": [{"from": "start", "to": "say"}, {"from": "hook", "to": "say"}],
    }
    unknown = {**definition, "nodes": [*definition["nodes"][:2], {"key": "say", "type": "no.x"}]}
    async with daemon(tmp_path / "d.db") as url:
        body = {"workflow": definition, "input": {"name": "Ada"}}
        ran = await request(url, "POST", "/api/executions?wait=10&trigger=start", body)
        again = await request(
            url, "POST", "/api/executions?trigger=start", body, headers={"Idempotency-Key": "k"}
        )
        same = await request(
            url, "POST", "/api/executions?trigger=start", body, headers={"Idempotency-Key": "k"}
        )
        served = await request(url, "GET", "/api/workflows")
        hooked = await request(url, "POST", "/hooks/greet", {})
        refused = await request(url, "POST", "/api/executions", {"workflow": unknown})
        no_workflow = await request(url, "POST", "/api/executions", {"input": 1})
        by_id = await request(url, "POST", "/api/executions", {"workflow_id": "greet"})
        no_trigger = await request(url, "POST", "/api/executions", body)
        wrong_trigger = await request(url, "POST", "/api/executions?trigger=say", body)
        listed = await request(url, "GET", "/api/executions?workflow=greet")
    assert ran.status == 201
    assert (ran.json()["status"], ran.json()["output"]) == ("completed", {"hi": "Ada"})
    assert (again.status, same.status) == (201, 200)
    assert same.json()["id"] == again.json()["id"]
    assert served.json()["workflows"] == []  # run, not served: its webhook starts nothing
    assert hooked.status == 404
    assert refused.status == 422
    assert "no.x" in refused.json()["detail"]
    assert [p["path"] for p in refused.json()["problems"]] == ["nodes[2].type"]
    assert no_workflow.status == 400
    assert '"workflow": DEFINITION' in no_workflow.json()["detail"]
    assert by_id.status == 400  # a served workflow is started at its own route
    assert "POST its input to /api/workflows/greet/executions" in by_id.json()["detail"]
    # Two triggers: the request says which one starts it.
    assert (no_trigger.status, no_trigger.json()["title"]) == (400, "Choose a trigger")
    assert "2 triggers (start, hook)" in no_trigger.json()["detail"]
    assert "?trigger=KEY" in no_trigger.json()["detail"]
    assert (wrong_trigger.status, wrong_trigger.json()["title"]) == (400, "Choose a trigger")
    assert "'say' is not a trigger" in wrong_trigger.json()["detail"]
    assert len(listed.json()["executions"]) == 2


async def test_rerun_from_a_node_and_control_in_bulk(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        start = "/api/workflows/approval/executions?wait=10"
        small = (await request(url, "POST", start, {"amount": 40})).json()
        waiting = [(await request(url, "POST", start, {"amount": a})).json() for a in (2000, 3000)]
        rerun = await request(
            url,
            "POST",
            f"/api/executions/{small['id']}/rerun",
            {"from_node": "large", "input": {"amount": 50}},
        )
        no_node = await request(url, "POST", f"/api/executions/{small['id']}/rerun", {})
        cancelled = await request(
            url, "POST", "/api/bulk/cancel", {"status": "suspended", "reason": "closing"}
        )
        again = await request(url, "POST", "/api/bulk/retry", {"workflow": "approval"})
        listed = await request(url, "GET", "/api/executions?status=cancelled")
    assert rerun.status == 201
    assert rerun.json()["id"] != small["id"]
    assert rerun.json()["output"] == {"paid": 50, "approved_by": "automatic"}
    assert no_node.status == 400
    assert "from_node" in no_node.json()["detail"]
    assert sorted(e["id"] for e in cancelled.json()["executions"]) == sorted(
        w["id"] for w in waiting
    )
    assert all(e["changed"] and e["status"] == "cancelled" for e in cancelled.json()["executions"])
    # Nothing failed: a retry of each is refused, and says why.
    outcomes = again.json()["executions"]
    assert len(outcomes) == 4
    assert not any(outcome["changed"] for outcome in outcomes)
    assert all("only a failed execution can be retried" in o["error"] for o in outcomes)
    assert sorted(e["id"] for e in listed.json()["executions"]) == sorted(w["id"] for w in waiting)


async def test_the_openapi_document_describes_every_route(tmp_path: Path) -> None:
    app = create_app(prana.Engine())  # not opened: only its routes are read
    served = {
        (method.lower(), route.path)
        for route in app.routes
        # Webhooks and the web view's pages (and "/", which leads to them) aside.
        if isinstance(route, Route)
        and route.path != "/"
        and not route.path.startswith(("/hooks", "/ui"))
        for method in (route.methods or ()) - {"HEAD"}
    }
    async with daemon(tmp_path / "d.db", tokens=["t"]) as url:
        reply = await request(url, "GET", "/api/openapi.json")  # no token needed
    document = reply.json()
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    assert document["openapi"].startswith("3.1")
    assert described == served
    start = document["paths"]["/api/workflows/{workflow_id}/executions"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in start["parameters"]]


async def test_metrics_count_executions_by_status_and_requests(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")], tokens=["t"]) as url:
        token = {"Authorization": "Bearer t"}
        start = "/api/workflows/approval/executions?wait=10"
        for amount in (40, 50, 4000):
            await request(url, "POST", start, {"amount": amount}, headers=token)
        await request(url, "GET", "/api/workflows")  # refused: no token
        reply = await request(url, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    lines = set(reply.body.decode().splitlines())
    assert 'prana_executions{status="completed"} 2.0' in lines
    assert 'prana_executions{status="suspended"} 1.0' in lines
    assert "prana_live_executions 0.0" in lines
    # Two paid at once (trigger, if, pay: 3 runs each), one waits (trigger, if, wait).
    assert 'prana_node_runs_total{outcome="completed"} 8.0' in lines
    assert 'prana_node_runs_total{outcome="suspended"} 1.0' in lines
    assert 'prana_node_runs_total{outcome="failed"} 0.0' in lines
    assert "prana_node_run_duration_seconds_count 9.0" in lines
    assert 'prana_node_run_duration_seconds_bucket{le="+Inf"} 9.0' in lines
    commits = next(line for line in lines if line.startswith("prana_store_commits_total"))
    assert f"prana_store_commit_duration_seconds_count {commits.split()[1]}" in lines
    assert 'prana_service_up{service="heartbeat"} 1.0' in lines
    route = 'route="/api/workflows/{workflow_id}/executions"'
    assert f'prana_http_requests_total{{method="POST",{route},status="201"}} 3.0' in lines
    assert 'prana_http_requests_total{method="GET",route="/api/workflows",status="401"} 1.0' in (
        lines
    )


async def test_schedules_are_listed_paused_resumed_and_fired(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("order_intake.yaml")]) as url:
        listed = await request(url, "GET", "/api/schedules")
        base = "/api/schedules/order_intake/nightly"
        paused = await request(url, "POST", f"{base}/pause")
        resumed = await request(url, "POST", f"{base}/resume")
        fired = await request(url, "POST", f"{base}/fire")
        unknown = await request(url, "POST", "/api/schedules/order_intake/web/pause")
        execution_id = fired.json()["execution_id"]
        started = (await request(url, "GET", f"/api/executions/{execution_id}")).json()
    (schedule,) = listed.json()["schedules"]
    assert (schedule["workflow_id"], schedule["trigger"], schedule["paused"]) == (
        "order_intake",
        "nightly",
        False,
    )
    assert schedule["cron"] == "0 2 * * * Europe/Berlin"
    assert schedule["next_at"] > 0
    assert paused.json()["paused"] is True
    assert resumed.json()["paused"] is False
    assert fired.status == 202
    assert started["trigger"] == "nightly"
    assert unknown.status == 400
    assert "no schedule 'web' of workflow 'order_intake'" in unknown.json()["detail"]


async def test_a_webhook_with_a_secret_takes_signed_requests_only(tmp_path: Path) -> None:
    body = b'{"amount": 40}'
    good = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    bad = "sha256=" + hmac.new(b"guess", body, hashlib.sha256).hexdigest()
    shop = {"X-Shop": "berlin", "Content-Type": "application/json"}
    workflows = [example("order_intake.yaml")]
    async with daemon(
        tmp_path / "d.db", workflows, webhook_secrets={"/orders": "hook-secret"}
    ) as url:
        unsigned = await request(url, "POST", "/hooks/orders", raw=body, headers=shop)
        forged = await request(
            url, "POST", "/hooks/orders", raw=body, headers={**shop, "X-Prana-Signature": bad}
        )
        signed = await request(
            url, "POST", "/hooks/orders", raw=body, headers={**shop, "X-Prana-Signature": good}
        )
        listed = await request(url, "GET", "/api/executions")
    assert (unsigned.status, forged.status, signed.status) == (401, 401, 202)
    assert "X-Prana-Signature: sha256=HEX" in unsigned.json()["detail"]
    assert [e["id"] for e in listed.json()["executions"]] == [signed.json()["execution_id"]]


async def test_a_signed_resume_path_answers_a_wait_without_an_api_token(tmp_path: Path) -> None:
    token = {"Authorization": "Bearer t"}
    async with daemon(
        tmp_path / "d.db", [example("approval.yaml")], tokens=["t"], signing_key="k3y"
    ) as url:
        waiting = await start_waiting(url, headers=token)
        (suspension,) = waiting["suspensions"]
        path = suspension["resume_path"]
        tampered = path[:-4] + ("0000" if not path.endswith("0000") else "1111")
        refused = await request(url, "POST", tampered, {"approved": True})
        answered = await request(url, "POST", path, {"approved": True, "by": "ann"})
    assert (
        path
        == f"/resume/{suspension['token']}?signature="
        + hmac.new(b"k3y", suspension["token"].encode(), hashlib.sha256).hexdigest()
    )
    assert refused.status == 403
    assert answered.status == 200
    assert answered.json()["output"] == {"paid": 4000, "approved_by": "ann"}


async def test_executions_are_listed_a_page_at_a_time(tmp_path: Path) -> None:
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        start = "/api/workflows/approval/executions?wait=10"
        started = [
            (await request(url, "POST", start, {"amount": n})).json()["id"] for n in range(6)
        ]
        pages, cursor = [], None
        while True:
            path = "/api/executions?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = (await request(url, "GET", path)).json()
            pages.append([e["id"] for e in page["executions"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        none_yet = await request(url, "GET", "/api/executions?until=2000-01-01T00:00:00Z")
        since = await request(url, "GET", "/api/executions?since=2000-01-01T00:00:00")
        bad = await request(url, "GET", "/api/executions?since=yesterday")
    assert [len(page) for page in pages] == [2, 2, 2]  # no empty page after the last
    assert sorted(id for page in pages for id in page) == sorted(started)
    assert none_yet.json()["executions"] == []
    assert len(since.json()["executions"]) == 6
    assert bad.status == 400
    assert "ISO 8601" in bad.json()["detail"]


async def test_a_workflow_served_through_the_api_is_served_again_after_a_restart(
    tmp_path: Path,
) -> None:
    definition = {
        "id": "greet",
        "version": 2,
        "nodes": [
            {"key": "start", "type": "manual.trigger"},
            {"key": "say", "type": "data.set", "params": {"values": {"hi": "{{ input.name }}"}}},
        ],
        "connections": [{"from": "start", "to": "say"}],
    }
    async with daemon(tmp_path / "d.db") as url:
        assert (await request(url, "POST", "/api/workflows", definition)).status == 201
    async with daemon(tmp_path / "d.db", [example("approval.yaml")]) as url:
        listed = await request(url, "GET", "/api/workflows")
        ran = await request(url, "POST", "/api/workflows/greet/executions?wait=10", {"name": "Bo"})
    assert [(w["id"], w["version"]) for w in listed.json()["workflows"]] == [
        ("approval", 1),
        ("greet", 2),
    ]
    assert ran.json()["output"] == {"hi": "Bo"}


async def test_a_served_schedule_fires_under_the_daemon_s_virtual_clock(tmp_path: Path) -> None:
    from prana.testing import VirtualClock

    clock = VirtualClock(start=1_900_000_000.0)  # 2030-03-17T17:46:40Z
    report = {
        "id": "report",
        "version": 1,
        "nodes": [
            {"key": "tick", "type": "schedule.trigger", "params": {"cron": "*/15 * * * *"}},
            {
                "key": "note",
                "type": "data.set",
                "params": {"values": {"at": "{{ trigger.scheduled_at }}"}},
            },
        ],
        "connections": [{"from": "tick", "to": "note"}],
    }
    async with daemon(tmp_path / "d.db", clock=clock) as url:
        await request(url, "POST", "/api/workflows", report)
        (schedule,) = (await request(url, "GET", "/api/schedules")).json()["schedules"]
        clock.set(schedule["next_at"])
        with anyio.fail_after(10):
            listed: list[dict] = []
            while not listed or listed[0]["status"] != "completed":
                await anyio.wait_all_tasks_blocked()
                listed = (await request(url, "GET", "/api/executions")).json()["executions"]
        done = (await request(url, "GET", f"/api/executions/{listed[0]['id']}")).json()
    assert schedule["next_at"] == 1_900_000_800.0  # 18:00
    assert done["trigger"] == "tick"
    assert done["output"] == {"at": "2030-03-17T18:00:00+00:00"}


async def test_a_workflow_served_no_more_answers_nothing_even_after_a_restart(
    tmp_path: Path,
) -> None:
    intake = prana.workflow_to_dict(example("order_intake.yaml"))
    shop = {"X-Shop": "berlin"}
    async with daemon(tmp_path / "d.db") as url:
        await request(url, "POST", "/api/workflows", intake)
        answered = await request(url, "POST", "/hooks/orders", {"amount": 1}, headers=shop)
        stopped = await request(url, "DELETE", "/api/workflows/order_intake")
        refused = await request(url, "POST", "/hooks/orders", {"amount": 2}, headers=shop)
        again = await request(url, "DELETE", "/api/workflows/order_intake")
        kept_run = await request(url, "GET", f"/api/executions/{answered.json()['execution_id']}")
    async with daemon(tmp_path / "d.db") as url:
        listed = await request(url, "GET", "/api/workflows")
    assert (answered.status, stopped.status, refused.status, again.status) == (202, 204, 404, 404)
    assert kept_run.json()["workflow_id"] == "order_intake"  # its executions stay
    assert listed.json()["workflows"] == []
