"""What a webhook's sender is answered, as ``webhook.trigger``'s ``respond`` says: at
once, with the execution's output when it is done, or with what a
``webhook.respond`` node builds while the execution goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import prana
from tests.helpers import make_workflow
from tests.server.client import read_events, request
from tests.server.conftest import daemon, example, held_action

PROBLEM = "application/problem+json"


def signup(**respond: Any) -> prana.Workflow:
    """A sign-up that answers the sender (201, its location, a greeting), then waits
    for an approval that may never come."""
    return make_workflow(
        {
            "hook": ("webhook.trigger", {"path": "signup", "respond": "by_node"}),
            "check": ("logic.if", {"condition": "{{ trigger.body.name != '' }}"}),
            "answer": (
                "webhook.respond",
                respond
                or {
                    "status": 201,
                    "headers": {"Location": "/users/{{ trigger.body.name }}"},
                    "body": {"welcome": "{{ trigger.body.name }}"},
                },
            ),
            "approve": "wait.webhook",
        },
        ["hook -> check", "check.true -> answer", "answer -> approve"],
        id="signup",
    )


async def test_a_respond_node_answers_the_request_while_the_execution_goes_on(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path / "d.db", [signup()]) as url:
        answered = await request(url, "POST", "/hooks/signup", {"name": "ada"})
        listed = await request(url, "GET", "/api/executions?workflow=signup")
        (execution,) = listed.json()["executions"]
        record = await request(url, "GET", f"/api/executions/{execution['id']}")
    assert answered.status == 201
    assert answered.headers["location"] == "/users/ada"
    assert answered.headers["content-type"] == "application/json"
    assert answered.json() == {"welcome": "ada"}
    # The answer is in the audit trail, and the execution went on to its wait.
    assert record.json()["status"] == "suspended"
    (run,) = [run for run in record.json()["node_runs"] if run["node_key"] == "answer"]
    assert run["output"]["status"] == 201


async def test_a_text_body_is_sent_as_text_unless_the_node_names_its_type(
    tmp_path: Path,
) -> None:
    text = signup(body="hello {{ trigger.body.name }}")
    xml = signup(
        status=200,
        headers={"Content-Type": "application/xml"},
        body="<hello name='{{ trigger.body.name }}'/>",
    )
    async with daemon(tmp_path / "t.db", [text]) as url:
        as_text = await request(url, "POST", "/hooks/signup", {"name": "ada"})
    async with daemon(tmp_path / "x.db", [xml]) as url:
        as_xml = await request(url, "POST", "/hooks/signup", {"name": "ada"})
    assert (as_text.status, as_text.headers["content-type"]) == (200, "text/plain; charset=utf-8")
    assert as_text.body == b"hello ada"
    assert (as_xml.status, as_xml.headers["content-type"]) == (200, "application/xml")
    assert as_xml.body == b"<hello name='ada'/>"


async def test_a_request_the_workflow_routes_past_its_respond_node_gets_a_problem(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path / "d.db", [signup()]) as url:
        reply = await request(url, "POST", "/hooks/signup", {"name": ""})
    assert reply.status == 500
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["title"] == "No answer"
    assert "completed without running a webhook.respond node" in reply.json()["detail"]


async def test_a_request_sent_again_gets_the_answer_of_the_first(tmp_path: Path) -> None:
    key = {"Idempotency-Key": "form-7"}
    async with daemon(tmp_path / "d.db", [signup()]) as url:
        first = await request(url, "POST", "/hooks/signup", {"name": "ada"}, headers=key)
        again = await request(url, "POST", "/hooks/signup", {"name": "ada"}, headers=key)
        listed = await request(url, "GET", "/api/executions?workflow=signup")
    assert (first.status, again.status) == (201, 201)
    assert again.json() == first.json() == {"welcome": "ada"}
    assert again.headers["location"] == "/users/ada"
    assert len(listed.json()["executions"]) == 1


def lookup() -> prana.Workflow:
    """Answers with its output once done: found, failed, or waiting for a person."""
    return make_workflow(
        {
            "hook": ("webhook.trigger", {"path": "lookup", "respond": "when_done"}),
            "route": (
                "logic.switch",
                {
                    "value": "{{ trigger.query.kind }}",
                    "cases": [
                        {"port": kind, "equals": kind} for kind in ("found", "broken", "ask")
                    ],
                },
            ),
            "found": ("data.set", {"values": {"sku": "{{ trigger.body.sku }}", "stock": 3}}),
            "broken": ("core.fail", {"message": "the warehouse password is hunter2"}),
            "ask": "wait.webhook",
        },
        ["hook -> route", "route.found -> found", "route.broken -> broken", "route.ask -> ask"],
        id="lookup",
    )


async def test_when_done_answers_with_the_output_or_says_it_failed_or_waits(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path / "d.db", [lookup()]) as url:
        found = await request(url, "POST", "/hooks/lookup?kind=found", {"sku": "a-1"})
        broken = await request(url, "POST", "/hooks/lookup?kind=broken", {})
        asked = await request(url, "POST", "/hooks/lookup?kind=ask", {})
    assert (found.status, found.json()) == (200, {"sku": "a-1", "stock": 3})
    assert (broken.status, broken.headers["content-type"]) == (500, PROBLEM)
    assert broken.json()["title"] == "The workflow did not answer"
    assert "is failed before it answered" in broken.json()["detail"]
    assert "hunter2" not in broken.body.decode()  # a node's error stays in the daemon
    assert asked.status == 202
    assert asked.json()["status"] == "suspended"


@pytest.mark.parametrize("respond", ["when_done", "by_node"])
async def test_a_sender_is_answered_202_once_respond_within_has_passed(
    tmp_path: Path, respond: str
) -> None:
    # The workflow has not answered within respond_within (a fraction of a second
    # here): the sender gets the execution's id and status, and it goes on.
    actions, released = held_action({"ready": True})
    hook = {"path": "slow", "respond": respond, "respond_within": 0.05}
    workflow = make_workflow(
        {
            "hook": ("webhook.trigger", hook),
            "slow": "test.slow",
            "answer": ("webhook.respond", {"status": 201}),
        },
        ["hook -> slow", "slow -> answer"],
        actions=actions,
        id="slow",
    )
    async with daemon(tmp_path / "d.db", [workflow], actions=actions) as url:
        with anyio.fail_after(10):
            reply = await request(url, "POST", "/hooks/slow", {})
        released.set()
        execution_id = reply.json()["execution_id"]
        with anyio.fail_after(10):  # the stream ends once the execution has
            await read_events(url, f"/api/executions/{execution_id}/events")
        done = await request(url, "GET", f"/api/executions/{execution_id}")
    assert reply.status == 202
    assert reply.json()["status"] == "running"
    assert done.json()["status"] == "completed"
    assert done.json()["output"] == {"status": 201, "headers": {}, "body": {"ready": True}}


async def test_a_response_the_node_cannot_send_fails_the_node_not_the_request(
    tmp_path: Path,
) -> None:
    bad = signup(headers={"X-User": "{{ trigger.body.name }}"})
    async with daemon(tmp_path / "d.db", [bad]) as url:
        reply = await request(url, "POST", "/hooks/signup", {"name": "ada\r\nSet-Cookie: x=1"})
        listed = await request(url, "GET", "/api/executions?workflow=signup")
        (execution,) = listed.json()["executions"]
        record = await request(url, "GET", f"/api/executions/{execution['id']}")
    assert reply.status == 500
    assert "set-cookie" not in reply.headers
    assert record.json()["status"] == "failed"
    (run,) = [run for run in record.json()["node_runs"] if run["node_key"] == "answer"]
    assert run["error"]["message"].startswith(
        "the response cannot be sent: the value of X-User must be text on one line"
    )


async def test_a_sender_s_own_delivery_header_starts_each_delivery_once(tmp_path: Path) -> None:
    pushed = make_workflow(
        {
            "hook": ("webhook.trigger", {"path": "push", "idempotency_header": "X-Delivery"}),
            "take": ("data.set", {"values": {"ref": "{{ trigger.body.ref }}"}}),
        },
        ["hook -> take"],
        id="push",
    )
    async with daemon(tmp_path / "d.db", [pushed]) as url:
        first = await request(url, "POST", "/hooks/push", {"ref": "a"}, headers={"X-Delivery": "1"})
        again = await request(
            url,
            "POST",
            "/hooks/push",
            {"ref": "a"},
            headers={"x-delivery": "1", "Prefer": "wait=5"},
        )
        other = await request(url, "POST", "/hooks/push", {"ref": "b"}, headers={"X-Delivery": "2"})
        unnamed = await request(url, "POST", "/hooks/push", {"ref": "c"})
        # The delivery's name on another body: the first body stands, and the sender
        # is told, rather than answered with an execution that is not its request's.
        reused = await request(
            url, "POST", "/hooks/push", {"ref": "z"}, headers={"X-Delivery": "1"}
        )
        listed = await request(url, "GET", "/api/executions?workflow=push")
    assert (first.status, again.status, other.status, unnamed.status) == (202, 200, 202, 202)
    assert reused.status == 422
    assert reused.json()["title"] == "x-delivery reused"  # as the trigger names it
    assert reused.json()["execution_id"] == first.json()["execution_id"]
    assert "with a different body" in reused.json()["detail"]
    # Sent again, asking to wait: the first delivery's execution, once it stopped.
    assert again.json()["id"] == first.json()["execution_id"]
    assert again.json()["output"] == {"ref": "a"}
    assert len(listed.json()["executions"]) == 3


async def test_the_signup_example_answers_the_form_then_waits_for_approval(
    tmp_path: Path,
) -> None:
    once = {"X-Request-Id": "r-1"}
    async with daemon(tmp_path / "d.db", [example("signup.yaml")]) as url:
        created = await request(
            url, "POST", "/hooks/signup", {"name": "ada", "email": "ada@example.com"}, headers=once
        )
        again = await request(
            url, "POST", "/hooks/signup", {"name": "ada", "email": "ada@example.com"}, headers=once
        )
        refused = await request(url, "POST", "/hooks/signup", {"name": "bob"})
        waiting = await request(url, "GET", "/api/executions?workflow=signup&status=suspended")
        (execution,) = waiting.json()["executions"]
        record = await request(url, "GET", f"/api/executions/{execution['id']}")
        (wait,) = record.json()["suspensions"]
        approved = await request(url, "POST", f"/api/resume/{wait['token']}", {"ok": 1})
    assert (created.status, created.headers["location"]) == (201, "/accounts/ada")
    assert created.json() == {"account": "ada", "state": "awaiting approval"}
    assert (again.status, again.json()) == (201, created.json())
    assert (refused.status, refused.json()) == (
        422,
        {"error": "a name and an email address are required"},
    )
    assert wait["data"] == {"prompt": "Approve the account of ada?"}
    assert approved.json()["status"] == "completed"
