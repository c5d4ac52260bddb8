"""What the ``prana`` command's options name: the actions to load (``--actions``),
and JSON values (``--input``, ``--data``); and how it ends when stopped short."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prana._json import InvalidData, check_json
from prana._registry import ActionRegistry

from ._cli_parser import EXIT_INTERRUPTED, EXIT_PIPE, UsageError


def interrupted(following: list[str]) -> int:
    """Say that the command was interrupted (Ctrl-C), and how to carry on each
    execution it was following; its exit code."""
    print("prana: interrupted", file=sys.stderr)
    for execution_id in dict.fromkeys(following):
        print(
            f"prana: execution {execution_id} stopped where it was, and no engine holds "
            f"it: carry it on with 'prana resume {execution_id}', or cancel it with "
            f"'prana cancel {execution_id}'",
            file=sys.stderr,
        )
    return EXIT_INTERRUPTED


def reader_gone() -> int:
    """The reader of the output went away (``prana list | head``): write nothing more,
    not even at exit, and end as a command a closed pipe stops does."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_PIPE


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


def parse_json_option(text: str | None, option: str) -> Any:
    """An option's JSON value: JSON text, ``@path`` to a JSON file, or ``-`` for stdin."""
    if text is None:
        return None
    source = option
    if text == "-":
        text, source = sys.stdin.read(), "standard input"
    elif text.startswith("@"):
        path = text[1:]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{option}: cannot read {path!r}: {exc.strerror}") from None
        source = path
    try:
        value = json.loads(text)
    except RecursionError:
        raise UsageError(f"{source} nests too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    try:
        return check_json(value, what=source)
    except InvalidData as exc:
        raise UsageError(str(exc)) from None


def show_workflow_logs() -> None:
    """Let ``core.log`` messages reach the terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("log: %(message)s"))
    workflow_logger = logging.getLogger("prana.workflow")
    workflow_logger.addHandler(handler)
    workflow_logger.setLevel(logging.INFO)


@contextmanager
def logging_restored() -> Iterator[None]:
    """Logging as it was, once a command ends: a command run in a process that goes on
    (an app or a test calling ``main``) leaves no handler behind writing to a stream
    that may be closed by then, nor one more each time."""
    loggers = (logging.getLogger(), logging.getLogger("prana.workflow"))
    kept = [(logger, logger.handlers[:], logger.level) for logger in loggers]
    try:
        yield
    finally:
        for logger, handlers, level in kept:
            logger.handlers[:] = handlers
            logger.setLevel(level)
