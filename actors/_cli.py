"""The ``prana`` command line.

Exit codes: 0 the execution completed (or the workflow is valid), 1 it failed or the
workflow is invalid, 2 the command was used wrongly (bad option, unreadable input,
actions that cannot be imported).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import orjson

from prana._compiler import compile_workflow, triggers_of
from prana._errors import PranaError, WorkflowValidationError
from prana._loading import load_workflow
from prana._mermaid import to_mermaid
from prana._model import Workflow
from prana._records import Execution
from prana._registry import ActionRegistry

from ._engine import Engine
from ._progress import LiveProgress, PlainProgress, render_report, use_color

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command was used wrongly; exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prana", description="Run durable workflow graphs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("file", metavar="FILE", help="workflow file (YAML or JSON)")
        sub.add_argument(
            "--actions",
            metavar="MODULE:NAME",
            help="an ActionRegistry with your actions, as module:attribute or path.py:attribute",
        )

    run = commands.add_parser("run", help="run a workflow and show what happens")
    common(run)
    run.add_argument(
        "--input", metavar="JSON|@FILE", help="the execution's input: JSON text or @file.json"
    )
    run.add_argument(
        "--trigger", metavar="KEY", help="which trigger to start from, if there are several"
    )
    run.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="async library to run on"
    )
    run.add_argument(
        "--json", action="store_true", help="print the execution as JSON instead of a report"
    )
    run.add_argument("--quiet", action="store_true", help="no live progress")

    validate = commands.add_parser("validate", help="check a workflow and list every problem")
    common(validate)

    graph = commands.add_parser("graph", help="print a workflow as a Mermaid flowchart")
    common(graph)
    return parser


def load_actions(spec: str | None) -> ActionRegistry:
    """The registry named by ``module:attribute`` or ``path.py:attribute`` (default
    attribute: ``actions``), or the built-ins. Raises :class:`UsageError`."""
    if spec is None:
        return ActionRegistry()
    target, _, attribute = spec.partition(":")
    attribute = attribute or "actions"
    try:
        if target.endswith(".py"):
            path = Path(target)
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or module_spec.loader is None or not path.is_file():
                raise UsageError(f"--actions: no Python file {target!r}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[path.stem] = module
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(target)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(
            f"--actions: cannot import {target!r}: {type(exc).__name__}: {exc}"
        ) from None
    registry = getattr(module, attribute, None)
    if not isinstance(registry, ActionRegistry):
        found = "nothing" if registry is None else type(registry).__name__
        raise UsageError(
            f"--actions: {target}:{attribute} should be an ActionRegistry, found {found}"
        )
    return registry


def parse_input(text: str | None) -> Any:
    """The ``--input`` value: JSON text, ``@path`` to a JSON file, or ``-`` for stdin."""
    if text is None:
        return None
    source = "--input"
    if text == "-":
        text, source = sys.stdin.read(), "standard input"
    elif text.startswith("@"):
        path = text[1:]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--input: cannot read {path!r}: {exc.strerror}") from None
        source = path
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None


def _execution_json(execution: Execution) -> str:
    def encode(value: Any) -> Any:
        if attrs.has(type(value)):
            return attrs.asdict(value)
        raise TypeError

    data = {
        **{
            name: getattr(execution, name)
            for name in ("id", "workflow_id", "workflow_version", "status", "trigger")
        },
        "error": execution.error,
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
        "duration_ms": execution.duration_ms,
        "order": execution.order,
        "skipped": execution.skipped,
        "output": execution.output,
        "node_runs": execution.node_runs,
        "vars": execution.vars,
    }
    return orjson.dumps(data, default=encode, option=orjson.OPT_INDENT_2).decode() + "\n"


async def _run(
    workflow: Workflow, actions: ActionRegistry, args: argparse.Namespace, input: Any
) -> Execution:
    async with Engine(actions=actions) as engine:
        handle = await engine.start(workflow, input, trigger=args.trigger)
        if args.quiet or args.json:
            return await handle.result()
        view: LiveProgress | PlainProgress
        if sys.stderr.isatty() and "NO_COLOR" not in os.environ:
            view = LiveProgress(sys.stderr, f"{workflow.display_name} {handle.id[:8]}")
        else:
            view = PlainProgress(sys.stderr)
        events = handle.events()
        try:
            async with anyio.create_task_group() as ticker:
                if isinstance(view, LiveProgress):
                    ticker.start_soon(view.tick)
                async for event in events:
                    view(event)
                ticker.cancel_scope.cancel()
        finally:
            view.close()
        return await handle.result()


def _show_workflow_logs() -> None:
    """Let ``core.log`` messages reach the terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("log: %(message)s"))
    workflow_logger = logging.getLogger("prana.workflow")
    workflow_logger.addHandler(handler)
    workflow_logger.setLevel(logging.INFO)


def _command_run(args: argparse.Namespace) -> int:
    _show_workflow_logs()
    actions = load_actions(args.actions)
    input = parse_input(args.input)
    workflow = load_workflow(args.file, actions=actions)
    execution = anyio.run(_run, workflow, actions, args, input, backend=args.backend)
    if args.json:
        sys.stdout.write(_execution_json(execution))
    else:
        sys.stdout.write(render_report(execution, color=use_color(sys.stdout)))
    return EXIT_OK if execution.status == "completed" else EXIT_FAILED


def _command_validate(args: argparse.Namespace) -> int:
    actions = load_actions(args.actions)
    workflow = load_workflow(args.file, actions=actions)
    triggers = triggers_of(workflow, actions)
    warnings = [
        warning
        for trigger in triggers
        for warning in compile_workflow(workflow, actions, trigger=trigger).warnings
    ]
    print(
        f"{args.file} is valid: {len(workflow.nodes)} nodes, {len(workflow.connections)} connections, "
        f"trigger{'s' if len(triggers) != 1 else ''} {', '.join(triggers)}"
    )
    for warning in dict.fromkeys(str(warning) for warning in warnings):
        print(f"warning: {warning}")
    return EXIT_OK


def _command_graph(args: argparse.Namespace) -> int:
    actions = load_actions(args.actions)
    workflow = load_workflow(args.file, actions=actions)
    sys.stdout.write(to_mermaid(workflow, actions))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``prana`` command; return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    handlers = {"run": _command_run, "validate": _command_validate, "graph": _command_graph}
    try:
        return handlers[args.command](args)
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
        print("prana: interrupted", file=sys.stderr)
        return 130


def entry_point() -> None:
    """The console script: exit with :func:`main`'s code."""
    sys.exit(main())
