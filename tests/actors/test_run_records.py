"""Each node run's record keeps the parameters it was given, templates rendered, within
``Limits.recorded_params``: what ``prana show`` and the audit trail say a node got."""

from __future__ import annotations

from pathlib import Path

import prana
from prana.testing import open_engine
from tests.helpers import make_workflow


def greeting() -> prana.Workflow:
    return make_workflow(
        {
            "start": "manual.trigger",
            "hello": ("data.set", {"values": {"text": "hello {{ input.name }}", "n": 2}}),
            "quiet": "core.noop",
        },
        ["start -> hello", "hello -> quiet"],
    )


async def test_a_run_keeps_its_rendered_parameters_in_memory_and_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "prana.db"
    async with open_engine(path=path) as engine:
        done = await engine.run(greeting(), {"name": "ann"})
    async with open_engine(path=path) as engine:
        stored = await engine.get(done.id)
    for execution in (done, stored):
        hello, quiet = execution.runs_of("hello")[0], execution.runs_of("quiet")[0]
        assert hello.params == {"values": {"text": "hello ann", "n": 2}}
        assert quiet.params is None  # no parameters, nothing kept
        assert execution.runs_of("start")[0].params is None


async def test_parameters_past_the_limit_keep_the_start_of_their_json() -> None:
    limits = prana.Limits(recorded_params=30)
    async with prana.Engine(limits=limits, env={}) as engine:
        done = await engine.run(greeting(), {"name": "a" * 100})
    (hello,) = done.runs_of("hello")
    assert hello.params == '{"values": {"text": "hello aaa...'  # the first 30 characters
    assert done.outputs["hello"] == {"text": "hello " + "a" * 100, "n": 2}


async def test_recording_parameters_can_be_turned_off() -> None:
    async with prana.Engine(limits=prana.Limits(recorded_params=0), env={}) as engine:
        done = await engine.run(greeting(), {"name": "ann"})
    assert all(run.params is None for run in done.node_runs)


async def test_a_run_that_waits_keeps_its_parameters_until_it_ends(tmp_path: Path) -> None:
    # The execution leaves memory while it waits, and a new engine ends the wait.
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "ask": ("wait.webhook", {"timeout": "1h", "data": {"prompt": "ok {{ input.name }}?"}}),
        },
        ["start -> ask"],
    )
    path = tmp_path / "prana.db"
    async with open_engine(path=path) as engine:
        waiting = await engine.run(workflow, {"name": "ann"})
    async with open_engine(path=path) as engine:
        done = await engine.resume(waiting.id, {"yes": True})
    (ask,) = done.runs_of("ask")
    assert ask.status == "completed"
    assert ask.params == {"timeout": "1h", "data": {"prompt": "ok ann?"}}


async def test_constant_parameters_are_recorded_for_every_run() -> None:
    workflow = make_workflow(
        {"start": "manual.trigger", "fixed": ("data.set", {"values": {"n": 1}})},
        ["start -> fixed"],
    )
    async with prana.Engine(env={}) as engine:
        first = await engine.run(workflow)
        second = await engine.run(workflow)
    for done in (first, second):
        assert done.runs_of("fixed")[0].params == {"values": {"n": 1}}
