"""The commands about a daemon: ``prana serve``'s options read from files and the
environment (tokens, webhook secrets, the signing key); ``prana status``, which asks
a daemon how it is; ``prana logs``, which follows an execution's events on a
daemon; and ``prana run`` and ``validate`` with ``--url``, which send a workflow
file to a daemon (it runs there once, with the daemon's actions, without being
served)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from prana import events
from prana._errors import PranaError, WorkflowValidationError
from prana._loading import load_workflow, workflow_to_dict
from prana._model import Workflow
from prana._records import FINAL_STATUSES, Execution

from ._cli_parser import EXIT_FAILED, EXIT_OK, UsageError
from ._cli_remote import Remote, event_from, execution_from, path_of
from ._follow import goes_on
from ._progress import PlainProgress


def _lines(path: str, option: str) -> list[str]:
    """The lines of an option's file, blank lines and ``#`` comments left out."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path!r}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def webhook_secrets(path: str | None) -> dict[str, str]:
    """``--webhook-secrets``: webhook path to secret."""
    secrets = {}
    for line in _lines(path, "--webhook-secrets") if path else []:
        hook, _, secret = line.partition(" ")
        if not secret.strip():
            raise UsageError(
                f"--webhook-secrets: {line!r} should be a webhook path, a space, its secret"
            )
        secrets[hook.strip("/")] = secret.strip()
    return secrets


def signing_key(path: str | None) -> str | None:
    """``--signing-key-file`` (its first line), else ``$PRANA_SIGNING_KEY``."""
    if path is not None:
        lines = _lines(path, "--signing-key-file")
        if not lines:
            raise UsageError(f"--signing-key-file: {path!r} holds no key")
        return lines[0]
    return os.environ.get("PRANA_SIGNING_KEY") or None


def tokens(token_file: str | None) -> list[str]:
    """The API tokens: the lines of ``token_file`` and ``$PRANA_TOKENS`` (comma-separated),
    blank lines and ``#`` comments left out."""
    found = [token.strip() for token in os.environ.get("PRANA_TOKENS", "").split(",")]
    if token_file is not None:
        found += _lines(token_file, "--token-file")
    return [token for token in found if token]


def command_status(args: argparse.Namespace) -> int:
    if args.remote is None:
        raise UsageError("status asks a daemon: give its address with --url (or $PRANA_URL)")
    status = args.remote.get("/api/status")
    counts = ", ".join(f"{count} {name}" for name, count in sorted(status["executions"].items()))
    print(f"daemon at {args.remote.url}: {'ok' if status['ok'] else 'NOT OK'}")
    if "engine" in status:
        print(f"  engine: {status['engine']} (the one that answered)")
    print(f"  live executions: {status['live_executions']}")
    print(f"  leads the daemons on its database: {'yes' if status.get('leader') else 'no'}")
    engines = status.get("engines", [])
    if engines:
        print(f"  engines alive on its database: {len(engines)} ({', '.join(engines)})")
    print(f"  executions: {counts or 'none'}")
    print(f"  workflows served: {status['workflows']}")
    for service in status["services"]:
        error = f" ({service['last_error']})" if service["last_error"] else ""
        print(f"  service {service['name']}: {service['state']}{error}")
    return EXIT_OK if status["ok"] else EXIT_FAILED


def command_logs(args: argparse.Namespace) -> int:
    if args.remote is None:
        raise UsageError("logs follows a daemon's live events: give its address with --url")
    progress = PlainProgress(sys.stdout)
    status = "running"
    for name, data in args.remote.stream(path_of(args.execution, "events")):
        if name == "snapshot":
            status = data["status"]
            print(
                f"execution {data['id']} of {data['workflow_id']} v{data['workflow_version']}: "
                f"{status} (event {data['last_event']})",
                flush=True,
            )
            progress.caught_up(execution_from(data))
            continue
        event = event_from(data)
        if event is None:
            continue
        progress(event)
        if isinstance(event, events.ExecutionSuspended):
            waiting = ", ".join(s.node_key for s in event.suspensions)
            print(f"waiting: {waiting}", flush=True)
        if isinstance(event, events.EXECUTION_ENDED):
            status = event.status
            print(f"ended {status}", flush=True)
    if status not in FINAL_STATUSES:
        raise PranaError(
            f"the daemon at {args.remote.url} ended the stream of events before the "
            f"execution ended (it was {status}): the daemon stopped, or its connection "
            f"broke; the execution carries on where it is kept: follow it again with "
            f"'prana logs {args.execution}'"
        )
    return EXIT_FAILED if status in ("failed", "timed_out") else EXIT_OK


# What a command running a workflow here uses, which a daemon has of its own.
_LOCAL_ONLY = (
    ("actions", "--actions"),
    ("db", "--db"),
    ("memory", "--memory"),
    ("workflows", "--workflows"),
    ("backend", "--backend"),
)


def _checked_here(args: argparse.Namespace) -> tuple[Remote, Workflow]:
    """The daemon, and the workflow file (its shape checked here: the daemon checks
    it against its actions). Raises :class:`UsageError` for an option that chooses
    what the daemon has of its own."""
    for name, option in _LOCAL_ONLY:
        if getattr(args, name, None):
            raise UsageError(
                f"{option} is for running here; with a daemon (--url, $PRANA_URL) the "
                "workflow runs there, with the daemon's own actions, database and "
                f"workflows: leave {option} out, or leave out --url"
            )
    return args.remote, load_workflow(args.file)


def _checked_there(remote: Remote, path: str, body: Any, file: str) -> Any:
    """POST ``body`` to ``path``; a refusal of the workflow names the file."""
    try:
        return remote.post(path, body)
    except WorkflowValidationError as exc:
        where = f"{file} (checked by the daemon at {remote.url}, with its actions)"
        raise WorkflowValidationError(exc.problems, source=where) from None


def validate_on_daemon(args: argparse.Namespace) -> int:
    remote, workflow = _checked_here(args)
    checked = _checked_there(
        remote, "/api/workflows/validate", workflow_to_dict(workflow), args.file
    )
    print(
        f"{args.file} is valid on the daemon at {remote.url}, with its actions: "
        f"workflow {checked['id']} v{checked['version']}"
    )
    for warning in checked.get("warnings", []):
        print(f"warning: {warning['path']}: {warning['message']}")
    return EXIT_OK


def run_on_daemon(args: argparse.Namespace, input: Any) -> Execution:
    """``prana run FILE`` with a daemon: the definition runs there once (it is not
    served: its webhooks and schedules start nothing); its events are shown as they
    come (those before the stream opened are in the report), on through the waits
    that end within ``--wait-up-to``. Returns the execution where it stopped. The
    daemon carries it on whatever becomes of the command."""
    remote, workflow = _checked_here(args)
    query = f"?{urlencode({'trigger': args.trigger})}" if args.trigger else ""
    body = {"workflow": workflow_to_dict(workflow), "input": input}
    started = execution_from(_checked_there(remote, f"/api/executions{query}", body, args.file))
    quiet = args.json or args.quiet
    if not quiet:
        print(f"prana: running {started.id} on the daemon at {remote.url}", file=sys.stderr)
    progress = None if quiet else PlainProgress(sys.stderr)
    for name, data in remote.stream(path_of(started.id, "events"), last_event_id=0):
        if name == "snapshot":
            shown = execution_from(data)
            status, waits = shown.status, shown.suspensions
            if progress is not None:
                progress.caught_up(shown)
        else:
            event = event_from(data)
            if event is None:
                continue
            if progress is not None:
                progress(event)
            queued = isinstance(event, events.ExecutionQueued)
            status = "queued" if queued else getattr(event, "status", "running")
            waits = getattr(event, "suspensions", ())
        if status in (*FINAL_STATUSES, "queued", "paused") or (
            status == "suspended"
            and not goes_on(waits, time.time(), args.wait_up_to, say=not quiet)
        ):
            break
    return execution_from(remote.get(path_of(started.id)))
