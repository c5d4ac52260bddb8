"""``prana serve``'s options read from files and the environment (tokens, webhook
secrets, the signing key); ``prana status``, which asks a daemon how it is; and
``prana logs``, which follows an execution's events on a daemon."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prana import events

from ._cli_parser import EXIT_FAILED, EXIT_OK, UsageError
from ._cli_remote import event_from, path_of
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
    print(f"  live executions: {status['live_executions']}")
    print(f"  leads the daemons on its database: {'yes' if status.get('leader') else 'no'}")
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
    return EXIT_FAILED if status in ("failed", "timed_out") else EXIT_OK
