"""A long execution holds what its next steps need: once it has made a few thousand
runs, the older saved ones stay in the store (decision 0045). What a user sees of
it stays exact: outputs, a retry, a restart, and the whole audit trail from
``engine.get``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import prana
import prana.actors._live
from prana._records import StoredExecution
from prana._wanted import RunsSelector
from prana.storage import SQLiteStore
from prana.testing import VirtualClock, open_engine
from tests.helpers import make_workflow

ITERATIONS = 1500  # 3 000 runs: past the 2 000 a live execution holds before it lets go


def counting_loop(
    actions: prana.ActionRegistry,
    last: str,
    nodes: dict[str, Any] | None = None,
    connections: tuple[str, ...] = (),
) -> prana.Workflow:
    """start -> count <-> more, ITERATIONS times, then ``last`` and end, with more
    ``nodes`` and ``connections``."""
    return make_workflow(
        {
            "start": "manual.trigger",
            "count": ("workflow.set_variables", {"values": {"i": "{{ vars.i + 1 }}"}}),
            "more": ("logic.if", {"condition": f"{{{{ vars.i < {ITERATIONS} }}}}"}),
            last: "test.last",
            **(nodes or {}),
            "end": ("data.set", {"values": {"i": "{{ vars.i }}"}}),
        },
        [
            "start -> count",
            "count -> more",
            "more.true -> count",
            f"more.false -> {last}",
            f"{last} -> end",
            *connections,
        ],
        actions=actions,
        variables={"i": 0},
        settings={"max_iterations": ITERATIONS + 10},
    )


LOOP_ORDER = ["start", *(["count", "more"] * ITERATIONS)]


async def test_a_long_loop_leaves_old_runs_to_the_store_and_get_reads_the_whole_trail(
    tmp_path: Path,
) -> None:
    actions = prana.ActionRegistry()
    entered, release = anyio.Event(), anyio.Event()

    @actions.action("test.last")
    async def hold(ctx: prana.NodeContext) -> Any:
        entered.set()
        await release.wait()
        return {"held": ctx.input}

    workflow = counting_loop(actions, "hold")
    async with open_engine(path=tmp_path / "prana.db", actions=actions) as engine:
        handle = await engine.start(workflow, {"n": 1})
        await entered.wait()
        live = await engine.get(handle.id)  # live: memory and store together
        assert live.runs_left_out == 0
        assert live.order == [*LOOP_ORDER, "hold"]
        assert [run.run_index for run in live.runs_of("count")] == list(range(ITERATIONS))
        assert [run.execution_index for run in live.node_runs] == list(range(len(live.order)))
        assert live.node_runs[-1].status == "running"
        release.set()
        done = await handle.result()

        # What the run returns leaves the old runs out, and says how many.
        assert done.status == "completed"
        assert done.runs_left_out > 0
        assert len(done.node_runs) + done.runs_left_out == len(LOOP_ORDER) + 2
        assert done.order[-2:] == ["hold", "end"]
        assert done.output == {"i": ITERATIONS}
        assert done.vars == {"i": ITERATIONS}
        assert done.outputs["hold"] == {"held": {"n": 1}}
        assert done.outputs["start"] == {"n": 1}  # the trigger's run, thousands back
        assert "start" in done.order

        whole = await engine.get(done.id)  # from the store
        assert whole.runs_left_out == 0
        assert whole.order == [*LOOP_ORDER, "hold", "end"]
        assert whole.node_runs[-2].output == {"held": {"n": 1}}


async def test_retrying_after_a_long_loop_gives_the_failed_node_its_old_inputs(
    tmp_path: Path,
) -> None:
    # The failed node's inputs come from a node that ran once at the start,
    # thousands of runs back, and from the loop's last run: both are still there
    # for the retry.
    actions = prana.ActionRegistry()
    calls: list[Any] = []

    @actions.action("test.last")
    def flaky(ctx: prana.NodeContext) -> Any:
        calls.append(ctx.input_list())
        if len(calls) == 1:
            raise prana.NodeError("not yet", code="planned")
        return sorted(ctx.input_list(), key=str)

    workflow = counting_loop(
        actions,
        "flaky",
        {"tag": ("data.set", {"values": {"tag": "first"}})},
        ("start -> tag", "tag -> flaky"),
    )
    async with open_engine(path=tmp_path / "prana.db", actions=actions) as engine:
        failed = await engine.run(workflow, {"order": 7})
        assert failed.status == "failed"
        assert failed.runs_left_out > 0
        again = await engine.retry(failed.id)
    assert again.status == "completed"
    assert calls[1] == calls[0]
    assert sorted(calls[0], key=str) == [{"order": 7}, {"tag": "first"}]
    assert again.output == {"i": ITERATIONS}


@pytest.mark.parametrize("restart", [False, True])
async def test_for_each_over_thousands_of_items_collects_every_result(
    tmp_path: Path, restart: bool
) -> None:
    # The last item waits for an answer: with a restart, the engine that carries on
    # holds only the runs it needs and still collects every item's result.
    count = 2500
    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "each": ("core.for_each", {"items": "{{ input }}"}),
            "last": ("logic.if", {"condition": f"{{{{ loop.item == {count - 1} }}}}"}),
            "ask": "wait.webhook",
            "double": ("data.set", {"values": {"twice": "{{ loop.item * 2 }}"}}),
            "after": "core.noop",
        },
        [
            "start -> each",
            "each.loop -> last",
            "last.true -> ask",
            "last.false -> double",
            "ask -> double",
            "double -> each",
            "each.done -> after",
        ],
        settings={"max_iterations": count + 10},
    )
    db = tmp_path / "prana.db"
    # Served: the engine that carries on compiles it first, so even the first wake
    # reads only the runs it needs (the loop's pass among them).
    async with open_engine(path=db, workflows=[workflow]) as engine:
        waiting = await engine.run(workflow, list(range(count)))
        assert waiting.status == "suspended"
        if not restart:
            done = await engine.resume(waiting.id, {"answer": "yes"})
    if restart:
        async with open_engine(path=db, workflows=[workflow]) as engine:
            done = await engine.resume(waiting.id, {"answer": "yes"})
    assert done.status == "completed"
    assert done.output == [{"twice": 2 * item} for item in range(count)]
    assert done.runs_left_out > 0


WAKES = 600  # 1 200 runs of the loop before the wait: past the 1 000 newest


class CountingStore(SQLiteStore):
    """A SQLite store that counts how often it read an execution whole, and how many
    runs it read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.whole_reads = 0
        self.runs_read = 0

    async def load_execution(
        self, execution_id: str, *, wanted: RunsSelector | None = None
    ) -> StoredExecution | None:
        stored = await super().load_execution(execution_id, wanted=wanted)
        self.whole_reads += wanted is None
        self.runs_read += 0 if stored is None else len(stored.runs)
        return stored


def ask_after_a_long_loop() -> prana.Workflow:
    """A setup step, a long loop, then a wait; the answer is merged with the setup's
    output (sent long before, on an edge still open) and the end reads the setup's
    output by name: what the wait's wake needs lies thousands of runs back."""
    return make_workflow(
        {
            "start": "manual.trigger",
            "setup": ("data.set", {"values": {"token": "t-{{ input.n }}"}}),
            "count": ("workflow.set_variables", {"values": {"i": "{{ vars.i + 1 }}"}}),
            "more": ("logic.if", {"condition": f"{{{{ vars.i < {WAKES} }}}}"}),
            "ask": "wait.webhook",
            "join": ("data.merge", {"strategy": "merge", "inputs": ["first", "second"]}),
            "end": (
                "data.set",
                {
                    "values": {
                        "i": "{{ vars.i }}",
                        "token": "{{ nodes.setup.output.token }}",
                        "joined": "{{ input }}",
                    }
                },
            ),
        },
        [
            "start -> setup",
            "setup -> join.first",
            "start -> count",
            "count -> more",
            "more.true -> count",
            "more.false -> ask",
            "ask -> join.second",
            "join -> end",
        ],
        variables={"i": 0},
        settings={"max_iterations": WAKES + 10},
        id="ask_late",
    )


@pytest.mark.parametrize("restart", [False, True])
async def test_a_wait_after_thousands_of_runs_wakes_with_the_runs_it_needs(
    tmp_path: Path, restart: bool
) -> None:
    workflow = ask_after_a_long_loop()
    order = ["start", "setup", *(["count", "more"] * WAKES), "ask", "join", "end"]
    db = tmp_path / "prana.db"
    async with open_engine(path=db, workflows=[workflow]) as engine:
        waiting = await engine.run(workflow, {"n": 7})
        assert waiting.status == "suspended"
        if not restart:
            done = await engine.resume(waiting.id, {"answer": 42})
            trail = await engine.get(waiting.id)
    if restart:
        async with open_engine(path=db, workflows=[workflow]) as engine:
            done = await engine.resume(waiting.id, {"answer": 42})
            trail = await engine.get(waiting.id)
    assert done.status == "completed"
    assert done.output == {"i": WAKES, "token": "t-7", "joined": {"token": "t-7", "answer": 42}}
    # The wake read the newest runs and those named by what goes on, not the whole
    # trail: what it returns leaves the older ones out, and says how many.
    assert done.runs_left_out > 0
    assert len(done.node_runs) + done.runs_left_out == len(order)
    assert trail.order == order  # the whole trail, from the store
    assert trail.runs_left_out == 0


@pytest.mark.parametrize("restart", [False, True])
async def test_a_wake_finds_the_output_of_a_node_whose_latest_run_failed(
    tmp_path: Path, restart: bool
) -> None:
    # In a long loop a check completes, and fails (on to its error port) in the
    # second half; then the execution waits. Once woken, its outputs still have the
    # check's latest completed run, from before the failures; templates its latest.
    actions = prana.ActionRegistry()

    @actions.action("test.check")
    def check(ctx: prana.NodeContext) -> Any:
        if ctx.vars["i"] > ITERATIONS // 2:  # 2 250 runs before the wait
            raise prana.NodeError("too late", code="late")
        return {"checked": ctx.vars["i"]}

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "count": ("workflow.set_variables", {"values": {"i": "{{ vars.i + 1 }}"}}),
            "check": {"type": "test.check", "settings": {"on_error": "error_port"}},
            "more": ("logic.if", {"condition": f"{{{{ vars.i < {ITERATIONS} }}}}"}),
            "ask": "wait.webhook",
            "end": ("data.set", {"values": {"check": "{{ nodes.check.status }}"}}),
        },
        [
            "start -> count",
            "count -> check",
            "check -> more",
            "check.error -> more",
            "more.true -> count",
            "more.false -> ask",
            "ask -> end",
        ],
        actions=actions,
        variables={"i": 0},
        settings={"max_iterations": ITERATIONS + 10},
    )
    db = tmp_path / "prana.db"
    async with open_engine(path=db, actions=actions, workflows=[workflow]) as engine:
        waiting = await engine.run(workflow, {})
        assert waiting.status == "suspended"
        if not restart:
            done = await engine.resume(waiting.id, {"ok": True})
    if restart:
        async with open_engine(path=db, actions=actions, workflows=[workflow]) as engine:
            done = await engine.resume(waiting.id, {"ok": True})
    assert done.status == "completed", done.error
    assert done.runs_left_out > 0  # the wake read what it needed, not the whole trail
    assert [run.status for run in done.runs_of("check")][-2:] == ["failed", "failed"]
    assert done.outputs["check"] == {"checked": ITERATIONS // 2}
    assert done.output == {"check": "failed"}


async def test_a_retry_that_waits_while_thousands_of_runs_go_by_counts_its_attempts(
    tmp_path: Path,
) -> None:
    # The first attempt fails and its retry waits; meanwhile the other branch runs
    # thousands of times. Woken after a restart, the retry still knows its number.
    actions = prana.ActionRegistry()
    calls: list[int] = []

    @actions.action("test.flaky")
    def flaky(ctx: prana.NodeContext) -> Any:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise prana.NodeError("not yet", code="planned")
        return {"attempt": ctx.attempt}

    workflow = make_workflow(
        {
            "start": "manual.trigger",
            "flaky": {
                "type": "test.flaky",
                "settings": {"retry": {"max_attempts": 3, "delay": 60}},
            },
            "count": ("workflow.set_variables", {"values": {"i": "{{ vars.i + 1 }}"}}),
            "more": ("logic.if", {"condition": f"{{{{ vars.i < {ITERATIONS} }}}}"}),
        },
        ["start -> flaky", "start -> count", "count -> more", "more.true -> count"],
        actions=actions,
        variables={"i": 0},
        settings={"max_iterations": ITERATIONS + 10},
    )
    clock = VirtualClock(start=1_000.0)
    db = tmp_path / "prana.db"
    async with open_engine(path=db, actions=actions, clock=clock, workflows=[workflow]) as engine:
        waiting = await engine.run(workflow, {})
        assert waiting.status == "suspended"  # the retry waits its delay, as a wait
        # Its failed attempt is the second run; thousands came after it.
        assert waiting.runs_of("flaky")[-1].execution_index == 2
        assert len(waiting.node_runs) + waiting.runs_left_out > 3000
    async with open_engine(path=db, actions=actions, clock=clock, workflows=[workflow]) as engine:
        with anyio.fail_after(30):
            while not (trail := await engine.get(waiting.id)).finished:
                await anyio.wait_all_tasks_blocked()
                clock.jump()  # to the next attempt's time
    assert trail.status == "completed"
    assert calls == [1, 2, 3]  # each attempt knew its number, however far back the first
    assert [(run.status, run.attempt) for run in trail.runs_of("flaky")] == [
        ("retried", 1),
        ("retried", 2),
        ("completed", 3),
    ]


async def test_a_caller_waiting_on_a_long_execution_reads_its_row_until_it_moves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # engine.wait follows an execution that waits in the store by looking at it now
    # and then. It reads the execution whole (1 200 runs and more here) only when its
    # row shows a change, not at every look.
    monkeypatch.setattr(prana.actors._live, "WATCH_POLL", 0.0)  # look at every turn
    workflow = ask_after_a_long_loop()
    store = CountingStore(tmp_path / "prana.db")
    async with prana.Engine(store=store, clock=VirtualClock(), env={}) as engine:
        waiting = await engine.run(workflow, {"n": 7})
        assert waiting.status == "suspended"
        followed: list[prana.Execution] = []

        async def follow() -> None:
            followed.append(await engine.wait(waiting.id))

        async with anyio.create_task_group() as group:
            store.whole_reads = 0
            group.start_soon(follow)
            for _ in range(50):  # the follower looks at the store each time
                await anyio.lowlevel.checkpoint()
            assert store.whole_reads == 1  # once, when it first saw it waiting
            done = await engine.resume(waiting.id, {"answer": 42})
        assert done.status == "completed"
        assert followed[0].status == "completed"
        assert followed[0].output == done.output
        assert store.whole_reads <= 3


async def test_a_start_with_a_used_key_reads_the_first_execution_without_its_runs(
    tmp_path: Path,
) -> None:
    # Telling a start sent again from one with another input needs what the first was
    # started with, not its trail (thousands of runs here).
    workflow = ask_after_a_long_loop()
    store = CountingStore(tmp_path / "prana.db")
    async with prana.Engine(store=store, env={}) as engine:
        first = await engine.start(workflow, {"n": 7}, idempotency_key="order-7")
        waiting = await first.result()
        assert waiting.status == "suspended"
        store.runs_read = 0
        with pytest.raises(prana.errors.ExecutionExists) as again:
            await engine.start(workflow, {"n": 7}, idempotency_key="order-7")
        assert again.value.execution_id == first.id
        assert again.value.same_input
        with pytest.raises(prana.errors.ExecutionExists) as other:
            await engine.start(workflow, {"n": 8}, idempotency_key="order-7")
        assert not other.value.same_input
        assert store.runs_read == 0
