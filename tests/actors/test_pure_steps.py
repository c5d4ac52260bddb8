"""Pure nodes' results are saved together, before anything that is not pure runs
and before anyone hears of them (decision 0069)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import prana
from prana._json import size_past
from prana._records import Checkpoint, NodeResult
from prana.actors._unsaved import UnsavedSteps
from prana.events import Event, NodeCompleted, NodeStarted
from prana.storage import MemoryStore
from prana.testing import open_engine
from tests.helpers import drive, make_workflow


class Recording(MemoryStore):
    """A store that keeps every checkpoint it commits, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[Checkpoint] = []

    async def commit(self, checkpoints: Any, **options: Any) -> set[str]:
        self.saved.extend(checkpoints)
        return await super().commit(checkpoints, **options)

    def runs(self) -> list[tuple[str, str]]:
        """Every run saved so far, as (node, status), in the order saved."""
        return [(run.node_key, run.status) for saved in self.saved for run in saved.runs]


def _saved_runs(checkpoint: Checkpoint) -> set[str]:
    return {run.node_key for run in checkpoint.runs if run.status == "completed"}


@pytest.fixture
def untimed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stretch of pure steps also ends after 1 ms of real time, which a loaded
    machine can reach anywhere: these tests look at where the other bounds put the
    saves, so that one is lifted."""
    monkeypatch.setattr("prana.actors._unsaved.PURE_SECONDS", 60.0)


@pytest.mark.usefixtures("untimed")
async def test_pure_nodes_are_saved_together_before_an_action_runs() -> None:
    store = Recording()
    actions = prana.ActionRegistry()
    seen_by_effect: list[tuple[str, str]] = []

    @actions.action("test.effect")
    def effect(ctx: prana.NodeContext) -> Any:
        seen_by_effect.extend(store.runs())  # what is in the store as it runs
        return {"sent": ctx.input}

    heard: list[tuple[str, str, int]] = []
    saved_when_heard: list[bool] = []

    def listen(event: Event, next_: Callable[[Event], None]) -> None:
        if isinstance(event, (NodeStarted, NodeCompleted)):
            key = event.node_key
            heard.append((type(event).__name__, key, event.sequence))
            if isinstance(event, NodeCompleted):
                saved_when_heard.append((key, "completed") in store.runs())
        next_(event)

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "a": ("data.set", {"values": {"n": "{{ input.n + 1 }}"}}),
            "big": ("logic.if", {"condition": "{{ input.n > 1 }}"}),
            "b": "core.noop",
            "send": "test.effect",
            "c": ("data.set", {"values": {"done": "{{ input.sent.n }}"}}),
            "d": "core.noop",
        },
        [
            "start -> a",
            "a -> big",
            "big.true -> b",
            "b -> send",
            "send -> c",
            "c -> d",
        ],
        actions=actions,
    )
    async with prana.Engine(
        store=store, actions=actions, durability="normal", env={}, middleware=[listen]
    ) as engine:
        done = await engine.run(workflow, {"n": 1})
    assert done.status == "completed"
    assert done.output == {"done": 2}
    assert done.order == ["start", "a", "big", "b", "send", "c", "d"]
    # Everything pure before the action was in the store when it ran; the pure nodes
    # after it were saved with the execution's end.
    before = [("start", "completed"), ("a", "completed"), ("big", "completed")]
    assert [run for run in seen_by_effect if run[1] == "completed"] == [
        *before,
        ("b", "completed"),
    ]
    with_send = [saved for saved in store.saved if "send" in _saved_runs(saved)]
    assert len(with_send) == 1
    with_end = store.saved[-1]
    assert with_end.status == "completed"
    assert _saved_runs(with_end) == {"c", "d"}
    # Every run saved once, and every event heard after its run was saved, in order.
    assert sorted(key for key, status in store.runs() if status == "completed") == sorted(
        done.order
    )
    assert saved_when_heard == [True] * 7
    assert [sequence for _, _, sequence in heard] == sorted(sequence for _, _, sequence in heard)
    assert [(kind, key) for kind, key, _ in heard] == [
        (kind, key) for key in done.order for kind in ("NodeStarted", "NodeCompleted")
    ]


@pytest.mark.usefixtures("untimed")
async def test_a_long_pure_loop_is_saved_in_bounded_stretches_and_goes_on_after_a_restart(
    tmp_path: Path,
) -> None:
    # 300 iterations of two pure nodes, then a wait: the checkpoints carry at most
    # 64 steps each, every run is saved once, and a restart carries on from the
    # variables the loop left.
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "count": ("workflow.set_variables", {"values": {"i": "{{ vars.i + 1 }}"}}),
            "more": ("logic.if", {"condition": "{{ vars.i < 300 }}"}),
            "ask": "wait.webhook",
            "end": ("data.set", {"values": {"i": "{{ vars.i }}", "said": "{{ input.say }}"}}),
        },
        [
            "start -> count",
            "count -> more",
            "more.true -> count",
            "more.false -> ask",
            "ask -> end",
        ],
        variables={"i": 0},
        settings={"max_iterations": 400},
    )
    store = Recording()
    async with prana.Engine(store=store, durability="normal", env={}) as engine:
        waiting = await engine.run(workflow)
    assert waiting.status == "suspended"
    assert waiting.vars == {"i": 300}
    runs = [run for saved in store.saved for run in saved.runs if run.status == "completed"]
    assert len(runs) == 1 + 300 * 2
    assert len({run.execution_index for run in runs}) == len(runs)
    # 64 steps saved with a 65th, at most: the start, 10 stretches, the wait.
    assert max(len(saved.runs) for saved in store.saved) <= 65
    assert len(store.saved) <= 2 + 600 // 64 + 1

    db = tmp_path / "prana.db"
    async with open_engine(path=db) as engine:
        waiting = await engine.run(workflow)
    async with open_engine(path=db) as engine:
        done = await engine.resume(waiting.id, {"say": "hi"})
        whole = await engine.get(done.id)
    assert done.output == {"i": 300, "said": "hi"}
    assert [run.run_index for run in whole.runs_of("count")] == list(range(300))


@pytest.mark.usefixtures("untimed")
async def test_pure_nodes_passing_large_data_are_saved_one_by_one() -> None:
    # A stretch of pure steps carries at most about 32 KB of results: past that,
    # each is saved before the next, as any node's is.
    store = Recording()
    workflow = make_workflow(
        {"start": "manual.trigger", **{f"n{i}": "core.noop" for i in range(4)}},
        ["start -> n0", "n0 -> n1", "n1 -> n2", "n2 -> n3"],
    )
    async with prana.Engine(store=store, durability="normal", env={}) as engine:
        small = await engine.run(workflow, {"text": "x" * 100})
        saved_small = len(store.saved)
        large = await engine.run(workflow, {"text": "x" * 40_000})
    assert small.output == {"text": "x" * 100}
    assert large.output == {"text": "x" * 40_000}
    assert saved_small == 2  # its start, then everything at its end
    assert [sorted(_saved_runs(saved)) for saved in store.saved[saved_small:]] == [
        [],
        ["start"],
        ["n0"],
        ["n1"],
        ["n2"],
        ["n3"],
    ]


async def test_an_async_action_cannot_be_pure() -> None:
    actions = prana.ActionRegistry()
    with pytest.raises(ValueError, match=r"'test\.fetch' is async, so it cannot be pure"):

        @actions.action("test.fetch", pure=True)
        async def fetch(ctx: prana.NodeContext) -> Any:
            return ctx.input


async def test_a_pure_action_that_returns_work_still_to_do_fails_and_the_work_is_not_done() -> None:
    """A plain function registered pure=True that returns an awaitable or a child
    workflow to start broke its promise: its node fails, saying so, and that work
    is not done (not on the first attempt, not on a retry run after a delay)."""
    actions = prana.ActionRegistry()
    done: list[str] = []
    attempts: list[int] = []

    async def fetch() -> str:
        done.append("fetched")
        return "fetched"

    @actions.action("test.awaits", pure=True)
    def awaits(ctx: prana.NodeContext) -> Any:
        return fetch()

    @actions.action("test.starts", pure=True)
    def starts(ctx: prana.NodeContext) -> Any:
        return prana.ExecuteWorkflow(workflow="child", input={})

    @actions.action("test.later", pure=True)
    def later(ctx: prana.NodeContext) -> Any:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("not yet")
        return fetch()

    child = make_workflow({"start": "manual.trigger"}, [], id="child")
    retry = {"retry": {"max_attempts": 3, "backoff": "fixed", "delay": "1s"}}
    async with open_engine(actions=actions) as engine:
        await engine.keep_serving(child)
        for node in ("test.awaits", "test.starts", "test.later"):
            workflow = make_workflow(
                {"start": "manual.trigger", "call": {"type": node, "settings": retry}},
                ["start -> call"],
                actions=actions,
                id=node.replace(".", "_"),
            )
            handle = await engine.start(workflow, {})
            execution = await drive(engine.clock, handle)
            assert execution.status == "failed", node
            failed = execution.node_runs[-1]
            assert failed.error is not None
            assert failed.error.code == "invalid_output"
            what = "a child workflow to start" if node == "test.starts" else "an awaitable"
            assert f"{node!r} is registered pure=True but returned {what}" in failed.error.message
        started = await engine.list_executions(workflow="child")
    assert attempts == [1, 2]  # the retry after the delay ran in a worker, and failed alike
    assert done == []  # neither awaitable was awaited
    assert started == []  # no child was started


class _Clock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _step(steps: UnsavedSteps, clock: _Clock, work: float) -> bool:
    """One pure step offered to ``steps`` (whether it may wait for the next save),
    then its next action, called in place, working ``work`` seconds."""
    taken = steps.take(NodeResult(node_key="n", run_index=0, execution_index=0, data=1))
    clock.now += work
    return taken


def test_a_stretch_of_pure_steps_is_bounded_by_its_own_work_not_by_what_others_do() -> None:
    """With many executions stepping, a stretch lets the loop run and waits its turn
    again for far longer than it works: that time is the others' work, and the
    stretch goes on to its bounds of its own work (1 ms) and steps (64)."""
    clock = _Clock()
    steps = UnsavedSteps(clock)
    assert _step(steps, clock, 0.0)
    taken = 1
    for _ in range(40):  # 0.02 ms of work a step, 50 ms away after each share
        if steps.share_due():
            clock.now += 0.050
        assert _step(steps, clock, 0.00002)
        taken += 1
    assert taken == steps.count == 41  # 0.8 ms of work in 2 s: still one stretch

    # Its own work ends it: 0.3 ms more a step, with as long away after each.
    while _step(steps, clock, 0.0003):
        assert steps.share_due()  # each step held the loop past its share
        clock.now += 0.050
    assert 41 < steps.count < 45
    steps.saved()

    # A new stretch after the save, and the bound on steps.
    for _ in range(64):
        assert _step(steps, clock, 0.000001)
    assert not _step(steps, clock, 0.000001)


def test_a_stretch_lets_the_loop_run_for_each_share_it_held_it() -> None:
    """Back from letting the loop run, a stretch holds it for another share (0.1 ms
    of its own work) before it lets it run again, however long it was away."""
    clock = _Clock()
    steps = UnsavedSteps(clock)
    shares = []
    for _ in range(30):  # 0.03 ms a step: a share every fourth step
        assert _step(steps, clock, 0.00003)
        due = steps.share_due()
        shares.append(due)
        if due:
            clock.now += 0.010
    assert shares.count(True) == 7
    assert not any(a and b for a, b in itertools.pairwise(shares))  # never twice running


def test_results_are_sized_about_as_json_and_only_as_far_as_needed() -> None:
    value = {"name": "ada", "tags": ["a", "b"], "n": 12, "ok": True, "none": None}
    as_json = len(orjson.dumps(value))
    assert as_json / 2 < size_past(value, 10_000) < as_json * 2
    assert size_past([{"x": i} for i in range(100_000)], 1_000) > 1_000  # by its length
    assert 1_000 < size_past({"a": ["x" * 500] * 100}, 1_000) < 2_000  # stopped soon after
