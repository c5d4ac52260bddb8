"""The ``prana`` command line.

Executions are kept in a SQLite file (which one: :mod:`._cli_database`); every
command says which it used. A command opens an engine of its own for as long as it
runs, that leaves other executions alone (``recover=False``): it carries on only
the executions it is told to, and those whose engine is gone (a crashed or
interrupted ``prana run``). Interrupted (Ctrl-C), it releases what it runs and says
how to carry it on. ``run``, ``resume`` and ``retry`` keep an execution going
in-process through waits that end within ``--wait-up-to`` (a minute by default).

With ``--url`` (or ``$PRANA_URL``) the commands that read or steer executions go
through a daemon's HTTP API instead (:mod:`._cli_remote`), and ``run`` and
``validate`` send the workflow file to the daemon (:mod:`._cli_serve`).

Exit codes: 0 the execution completed or is waiting (or the command did its job),
1 it failed, the workflow is invalid, or the execution or store could not be used;
2 the command was used wrongly (bad option, unreadable input, actions that cannot be
imported).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import orjson

from prana._compiler import compile_workflow, triggers_of
from prana._errors import ExecutionNotFound, PranaError, WorkflowValidationError
from prana._loading import load_workflow
from prana._mermaid import to_mermaid
from prana._model import Workflow
from prana._records import FINAL_STATUSES, Execution
from prana._registry import ActionRegistry
from prana._rerun import ORIGINAL
from prana.storage import PostgresStore, SQLiteStore, Store, open_store

from ._cli_database import find_database, store_for_reading
from ._cli_options import (
    interrupted,
    load_actions,
    logging_restored,
    parse_json_option,
    reader_gone,
    show_workflow_logs,
)
from ._cli_parser import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, command_parser
from ._cli_remote import REMOTE_COMMANDS, Remote, execution_from, path_of
from ._cli_serve import (
    command_logs,
    command_status,
    run_on_daemon,
    signing_key,
    tokens,
    validate_on_daemon,
    webhook_secrets,
)
from ._engine import DEFAULT_LEASE, Engine
from ._explain import Explanation, explain
from ._follow import follow, through_short_waits
from ._gc import tune_gc
from ._progress import render_list, render_report, use_color

_EXECUTION_ID = re.compile(r"^[0-9a-f]{32}$")
T = TypeVar("T")


def database(args: argparse.Namespace, *, create: bool = True) -> Path | str | None:
    """The SQLite file the command uses, or the store URL it was given
    (``postgresql://...``), said on stderr; ``None``: ``--memory``."""
    if getattr(args, "memory", False):
        return None
    given = args.db or os.environ.get("PRANA_DB")
    if given and "://" in given and not given.startswith("sqlite:"):
        print(f"prana: using {open_store(given)!r}", file=sys.stderr)
        return given
    path = find_database(args.db, create=create).resolve()
    print(f"prana: using {path}", file=sys.stderr)
    return path


def _execution_json(execution: Execution) -> str:
    return orjson.dumps(execution.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"


def _report(execution: Execution, args: argparse.Namespace) -> int:
    if args.json:
        sys.stdout.write(_execution_json(execution))
    else:
        children = _waiting_children(execution, args)
        sys.stdout.write(
            render_report(
                execution,
                color=use_color(sys.stdout),
                children=children,
                every_run=getattr(args, "every_run", False),
                verbose=getattr(args, "verbose", False),
            )
        )
    return EXIT_FAILED if execution.status in FINAL_STATUSES - {"completed"} else EXIT_OK


# How many child executions a report looks into, at most, to say what they wait for.
_CHILDREN_SHOWN = 20


def _waiting_children(execution: Execution, args: argparse.Namespace) -> dict[str, Execution]:
    """The child executions ``execution`` waits for, and theirs, read from the
    database: the report says what each waits for and how to answer it."""
    if not any(suspension.child_execution_id for suspension in execution.suspensions):
        return {}
    if args.remote is not None:  # the daemon's, not a database here
        remote = args.remote

        async def ask(child_id: str) -> Execution | None:
            try:
                return execution_from(remote.get(path_of(child_id)))
            except ExecutionNotFound:
                return None

        return _run(partial(_children_of, execution, ask))
    if database(args, create=False) is None:
        return {}

    async def read(store: Store) -> dict[str, Execution]:
        async def load(child_id: str) -> Execution | None:
            stored = await store.load_execution(child_id)
            return None if stored is None else stored.to_execution()

        return await _children_of(execution, load)

    return _reading(args, read)


async def _children_of(
    execution: Execution, load: Callable[[str], Awaitable[Execution | None]]
) -> dict[str, Execution]:
    found: dict[str, Execution] = {}
    waiting = [execution]
    while waiting and len(found) < _CHILDREN_SHOWN:
        for suspension in waiting.pop().suspensions:
            child_id = suspension.child_execution_id
            if child_id is None or child_id in found:
                continue
            child = await load(child_id)
            if child is not None:
                found[child_id] = child
                waiting.append(child)
    return found


def _with_engine(
    args: argparse.Namespace,
    actions: ActionRegistry,
    work: Callable[[Engine], Awaitable[T]],
    workflows: Sequence[Workflow] = (),
) -> T:
    path = database(args)
    store = "memory://" if path is None else path if isinstance(path, str) else f"sqlite:///{path}"

    async def main() -> T:
        # Schedules are for a long-running engine; a command runs what it is told.
        async with Engine(
            actions=actions,
            store=store,
            recover=False,
            workflows=workflows,
            schedules=False,
        ) as engine:
            done = await work(engine)
            await engine.wait_idle()  # a parent told of its child's end carries on
            return done

    return _run(main, backend=getattr(args, "backend", None) or "asyncio")


def _run(main: Callable[[], Awaitable[T]], backend: str = "asyncio") -> T:
    """``anyio.run(main)``; Ctrl-C comes out as :class:`KeyboardInterrupt`, even
    where task groups (on trio) wrap it in an exception group."""
    try:
        return anyio.run(main, backend=backend)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        raise


def _reading(args: argparse.Namespace, read: Callable[[Store], Awaitable[T]]) -> T:
    """Read the database the command uses; a SQLite file is opened for reading only:
    nothing is created or changed."""
    path = database(args, create=False)
    assert path is not None

    async def main() -> T:
        store = store_for_reading(path)
        await store.open()
        try:
            return await read(store)
        finally:
            await store.aclose()

    return _run(main)


def _command_run(args: argparse.Namespace) -> int:
    input = parse_json_option(args.input, "--input")
    if args.remote is not None:
        return _report(run_on_daemon(args, input), args)
    show_workflow_logs()
    actions = load_actions(args.actions)
    workflow = load_workflow(args.file, actions=actions)
    folder = Path(args.workflows) if args.workflows else Path(args.file).parent
    known = _workflows_in(folder, actions, skip=Path(args.file), strict=bool(args.workflows))

    async def work(engine: Engine) -> Execution:
        return await follow(
            engine,
            lambda: engine.start(workflow, input, trigger=args.trigger),
            quiet=args.json or args.quiet,
            wait_up_to=args.wait_up_to,
            following=args.following,
        )

    return _report(_with_engine(args, actions, work, known), args)


def _workflows_in(
    folder: Path, actions: ActionRegistry, *, skip: Path | None = None, strict: bool = True
) -> list[Workflow]:
    """The workflow files in ``folder``. With ``strict``, a file that does not load
    is an error; otherwise (the folder of the workflow being run) it is passed over."""
    if not folder.is_dir():
        raise UsageError(f"--workflows {folder}: not a folder")
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix not in (".yaml", ".yml", ".json") or (skip and path.samefile(skip)):
            continue
        try:
            found.append(load_workflow(path, actions=actions))
        except WorkflowValidationError as exc:
            if strict:
                raise PranaError(
                    f"invalid workflow: {exc}\n(--workflows {folder} loads every .yaml, .yml "
                    "and .json file in it: keep other files, such as inputs, in a folder "
                    "of their own)"
                ) from None
    return found


def _command_resume(args: argparse.Namespace) -> int:
    if args.remote is not None:
        data = parse_json_option(args.data, "--data")
        if _EXECUTION_ID.match(args.target):
            body = {"data": data, "node": args.node}
            execution = args.remote.execution(path_of(args.target, "resume"), body)
        else:
            execution = args.remote.execution(f"/api/resume/{quote(args.target)}", data)
        return _report(execution, args)
    show_workflow_logs()
    actions = load_actions(args.actions)
    data = parse_json_option(args.data, "--data")
    by_id = bool(_EXECUTION_ID.match(args.target))
    if args.node and not by_id:
        raise UsageError("--node goes with an execution id; a token names its node already")

    known = _workflows_in(Path(args.workflows), actions) if args.workflows else []

    async def work(engine: Engine) -> Execution:
        if by_id:
            args.following.append(args.target)
            execution = await engine.resume(args.target, data, node=args.node)
        else:
            execution = await engine.resume_token(args.target, data)
            args.following.append(execution.id)
        return await through_short_waits(engine, execution, args.wait_up_to)

    return _report(_with_engine(args, actions, work, known), args)


async def _control(engine: Engine, args: argparse.Namespace, action: str) -> Execution:
    """Cancel or pause; if that takes a while (another engine runs the execution and
    must apply it), say so, and give up after ``--timeout``."""
    done: list[Execution] = []
    finished = anyio.Event()

    async def apply() -> None:
        if action == "cancel":
            done.append(await engine.cancel(args.execution, args.reason))
        else:
            done.append(await engine.pause(args.execution))
        finished.set()

    with anyio.move_on_after(args.timeout):
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(apply)
                with anyio.move_on_after(min(1.0, args.timeout / 2)):
                    await finished.wait()
                if not done:
                    print(
                        f"prana: execution {args.execution} is running in another engine; "
                        f"waiting for it to {action} the execution (up to {args.timeout:g} s)",
                        file=sys.stderr,
                    )
        except BaseExceptionGroup as group:
            (error,) = group.exceptions  # the request's own error: the only task that fails
            raise error from None
    if done:
        return done[0]
    raise PranaError(
        f"gave up after {args.timeout:g} s: the engine running execution {args.execution} "
        f"did not {action} it (it may be busy, or frozen); run this again later: once "
        "its lease has run out, this command takes the execution over"
    )


def _remote_control(args: argparse.Namespace, action: str) -> Execution:
    body = {"reason": args.reason} if action == "cancel" else None
    return args.remote.execution(path_of(args.execution, action), body)  # type: ignore[no-any-return]


def _command_cancel(args: argparse.Namespace) -> int:
    if args.remote is not None:
        _report(_remote_control(args, "cancel"), args)
        return EXIT_OK
    actions = load_actions(args.actions)
    known = _workflows_in(Path(args.workflows), actions) if args.workflows else []
    execution = _with_engine(args, actions, lambda engine: _control(engine, args, "cancel"), known)
    _report(execution, args)
    return EXIT_OK  # cancelled as asked: not a failure of the command


def _command_pause(args: argparse.Namespace) -> int:
    if args.remote is not None:
        return _report(_remote_control(args, "pause"), args)
    actions = load_actions(args.actions)
    known = _workflows_in(Path(args.workflows), actions) if args.workflows else []
    execution = _with_engine(args, actions, lambda engine: _control(engine, args, "pause"), known)
    return _report(execution, args)


def _command_retry(args: argparse.Namespace) -> int:
    if args.remote is not None:
        return _report(_remote_control(args, "retry"), args)
    show_workflow_logs()
    actions = load_actions(args.actions)
    known = _workflows_in(Path(args.workflows), actions) if args.workflows else []

    async def work(engine: Engine) -> Execution:
        args.following.append(args.execution)
        execution = await engine.retry(args.execution)
        return await through_short_waits(engine, execution, args.wait_up_to)

    return _report(_with_engine(args, actions, work, known), args)


def _command_rerun(args: argparse.Namespace) -> int:
    if args.remote is not None:
        body: dict[str, Any] = {"from_node": args.from_node}
        if args.input is not None:
            body["input"] = parse_json_option(args.input, "--input")
        return _report(args.remote.execution(path_of(args.execution, "rerun"), body), args)
    show_workflow_logs()
    actions = load_actions(args.actions)
    known = _workflows_in(Path(args.workflows), actions) if args.workflows else []
    input = ORIGINAL if args.input is None else parse_json_option(args.input, "--input")

    async def work(engine: Engine) -> Execution:
        execution = await engine.rerun(args.execution, from_node=args.from_node, input=input)
        args.following.append(execution.id)
        return await through_short_waits(engine, execution, args.wait_up_to)

    return _report(_with_engine(args, actions, work, known), args)


def _command_show(args: argparse.Namespace) -> int:
    if args.remote is not None:
        return _report(execution_from(args.remote.get(path_of(args.execution))), args)

    async def read(store: Store) -> Execution:
        stored = await store.load_execution(args.execution)
        if stored is None:
            raise ExecutionNotFound(
                f"no execution has id {args.execution!r}; list them with 'prana list'"
            )
        return stored.to_execution()

    return _report(_reading(args, read), args)


def _command_explain(args: argparse.Namespace) -> int:
    if args.remote is not None:
        print(args.remote.get(path_of(args.execution, "explain"))["text"])
        return EXIT_OK

    async def read(store: Store) -> Explanation:
        stored = await store.load_execution(args.execution)
        if stored is None:
            raise ExecutionNotFound(f"no execution has id {args.execution!r}; see 'prana list'")
        # As an engine with the default lease would say, without being one.
        return explain(stored, live=None, wall_clock=time.time(), heartbeat=DEFAULT_LEASE / 3)

    print(_reading(args, read))
    return EXIT_OK


def _command_list(args: argparse.Namespace) -> int:
    if args.remote is not None:
        listed = args.remote.get(
            "/api/executions", status=args.status, workflow=args.workflow, limit=args.limit
        )["executions"]
        executions = [execution_from(execution) for execution in listed]
        sys.stdout.write(render_list(executions, color=use_color(sys.stdout)))
        return EXIT_OK

    async def read(store: Store) -> list[Execution]:
        found = await store.list_executions(
            status=args.status, workflow_id=args.workflow, limit=args.limit
        )
        return [execution.to_execution() for execution in found]

    sys.stdout.write(render_list(_reading(args, read), color=use_color(sys.stdout)))
    return EXIT_OK


def _command_validate(args: argparse.Namespace) -> int:
    if args.remote is not None:
        return validate_on_daemon(args)
    actions = load_actions(args.actions)
    workflow = load_workflow(args.file, actions=actions)
    triggers = triggers_of(workflow, actions)
    graphs = [compile_workflow(workflow, actions, trigger=trigger) for trigger in triggers]
    print(
        f"{args.file} is valid: {len(workflow.nodes)} nodes, {len(workflow.connections)} connections, "
        f"trigger{'s' if len(triggers) != 1 else ''} {', '.join(triggers)}"
    )
    for warning in graphs[0].warnings if graphs else ():  # the same in each trigger's graph
        print(f"warning: {warning}")
    return EXIT_OK


def _command_graph(args: argparse.Namespace) -> int:
    actions = load_actions(args.actions)
    workflow = load_workflow(args.file, actions=actions)
    sys.stdout.write(to_mermaid(workflow, actions))
    return EXIT_OK


def _command_serve(args: argparse.Namespace) -> int:
    try:
        from prana.server import (
            ServeConfig,
            configure_logging,
            configure_tracing,
            heartbeat,
            inherited_listener,
            serve,
            serve_in_processes,
            shared_figures,
        )
    except ImportError as exc:
        raise UsageError(
            f"prana serve needs the serve extra ({exc.name} is missing): "
            "pip install 'prana-runtime[serve]'"
        ) from None
    figures = shared_figures()  # one of the daemons of --processes: where, and which
    configure_logging(args.log_format, daemon=None if figures is None else figures.name)
    try:
        endpoint = configure_tracing()
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None
    if endpoint is not None:
        logging.getLogger("prana.server").info("sending spans to %s", endpoint)
    actions = load_actions(args.actions)
    workflows = []
    for given in args.workflows:
        path = Path(given)
        if path.is_dir():
            workflows += _workflows_in(path, actions)
        elif path.is_file():
            workflows.append(load_workflow(path, actions=actions))
        else:
            raise UsageError(f"--workflows {given}: no such file or folder")
    given = args.db or os.environ.get("PRANA_DB")
    if given and "://" in given:  # a store URL: sqlite:///..., postgresql://...
        store = open_store(given)
    else:
        store = SQLiteStore(find_database(args.db, create=True).resolve())
    listener = inherited_listener()  # one of the daemons of --processes
    config = ServeConfig(
        store=store,
        actions=actions,
        workflows=workflows,
        host=args.host,
        port=args.port,
        tokens=tokens(args.token_file),
        max_body=args.max_body,
        max_running=args.max_running,
        grace=args.grace,
        webhook_secrets=webhook_secrets(args.webhook_secrets),
        signing_key=signing_key(args.signing_key_file),
        listener=listener,
        stop_with_parent=listener is not None,
        heartbeat=heartbeat(),
        watchdog=args.watchdog,
        shared_metrics=figures,
    )
    problems = config.problems()
    if problems:
        raise UsageError("; ".join(problems))
    if not isinstance(store, (SQLiteStore, PostgresStore)):
        if args.check or args.processes > 1:
            raise UsageError(f"prana serve keeps executions in SQLite or PostgreSQL, not {given}")
    elif args.check:
        print(f"prana: {store.check()}", file=sys.stderr)  # or StoreError
        print(f"prana: the configuration is valid ({len(workflows)} workflows)", file=sys.stderr)
        return EXIT_OK

    def ready(url: str) -> None:
        if listener is None:  # not one of --processes: their command says it once
            print(f"prana: serving at {url}", file=sys.stderr, flush=True)

    if args.processes > 1 and listener is None:
        return serve_in_processes(args.argv, config, args.processes, ready)

    if not args.default_gc:
        tune_gc()  # the process is the daemon's: what is loaded now lives as long

    _run(partial(serve, config, ready=ready), backend=args.backend)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``prana`` command; return its exit code."""
    parser = command_parser()
    args = parser.parse_args(argv)
    args.following = []  # the executions the command carries on: said if interrupted
    args.argv = list(sys.argv[1:] if argv is None else argv)
    url = args.url or os.environ.get("PRANA_URL")
    args.remote = (
        Remote(url, os.environ.get("PRANA_TOKEN"))
        if url and args.command in REMOTE_COMMANDS
        else None
    )
    handlers = {
        "run": _command_run,
        "validate": _command_validate,
        "graph": _command_graph,
        "list": _command_list,
        "show": _command_show,
        "explain": _command_explain,
        "resume": _command_resume,
        "cancel": _command_cancel,
        "pause": _command_pause,
        "retry": _command_retry,
        "rerun": _command_rerun,
        "serve": _command_serve,
        "status": command_status,
        "logs": command_logs,
    }
    try:
        with logging_restored():
            code = handlers[args.command](args)
        sys.stdout.flush()  # a reader that went away is found here, not at exit
        return code
    except BrokenPipeError:
        return reader_gone()
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"prana: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WorkflowValidationError as exc:
        print(f"prana: invalid workflow: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except PranaError as exc:
        print(f"prana: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return interrupted(args.following)


def entry_point() -> None:
    """The console script: exit with :func:`main`'s code."""
    sys.exit(main())
