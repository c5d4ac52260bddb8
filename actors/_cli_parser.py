"""The ``prana`` command's grammar: its commands, their arguments and options."""

from __future__ import annotations

import argparse

from prana._records import EXECUTION_STATUSES
from prana._time import parse_duration
from prana._version import __version__

from ._cli_database import DEFAULT_DB

# The exit codes of every command (see the README); and those of a command stopped by
# Ctrl-C, or by a reader of its output that went away, as shells give them.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_PIPE = 130, 141


class UsageError(Exception):
    """The command was used wrongly; exit code 2."""


def command_parser() -> argparse.ArgumentParser:
    """The parser of the ``prana`` command: every command and its options."""
    parser = argparse.ArgumentParser(prog="prana", description="Run durable workflow graphs.")
    parser.add_argument("--version", action="version", version=f"prana {__version__}")
    parser.add_argument(
        "--url",
        metavar="URL",
        help="a daemon (prana serve) to send list, show, explain, status, logs, resume, "
        "cancel, pause, retry and rerun to, instead of using the database, and run and validate "
        "(the workflow file runs there, with its actions) (default: $PRANA_URL); "
        "$PRANA_TOKEN is its API token",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def store(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--db",
            metavar="PATH",
            help="the database executions are kept in: a SQLite file, or a sqlite:// or "
            f"postgresql:// URL (default: $PRANA_DB, else the nearest {DEFAULT_DB} from "
            "here upward, else a new one here)",
        )

    def waits(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--wait-up-to",
            metavar="DURATION",
            default="1m",
            type=_duration_option,
            help="keep the execution going here through waits and retries that end "
            "within this long (default 1m; 0 returns at the first wait)",
        )

    def actions(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--actions",
            metavar="MODULE:NAME",
            help="an ActionRegistry with your actions, as module:attribute or path.py:attribute",
        )

    def workflows(sub: argparse.ArgumentParser, default: str) -> None:
        sub.add_argument(
            "--workflows",
            metavar="DIR",
            help="a folder of workflow files that workflow.execute nodes may start by id "
            f"(default: {default})",
        )

    def timeout(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--timeout",
            metavar="DURATION",
            default="30s",
            type=_duration_option,
            help="how long to wait for another engine running the execution to apply it "
            "(default 30s)",
        )

    def output(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--json", action="store_true", help="print the execution as JSON instead of a report"
        )
        sub.add_argument(
            "--all",
            dest="every_run",
            action="store_true",
            help="show every run of a long timeline (it is folded past 40 runs)",
        )
        sub.add_argument(
            "--verbose",
            action="store_true",
            help="show each run's parameters, where its input came from, and its output",
        )

    run = commands.add_parser("run", help="run a workflow and show what happens")
    run.add_argument("file", metavar="FILE", help="workflow file (YAML or JSON)")
    actions(run)
    store(run)
    output(run)
    run.add_argument(
        "--input", metavar="JSON|@FILE", help="the execution's input: JSON text or @file.json"
    )
    run.add_argument(
        "--trigger", metavar="KEY", help="which trigger to start from, if there are several"
    )
    run.add_argument(
        "--backend", choices=("asyncio", "trio"), help="async library to run on (default asyncio)"
    )
    workflows(run, "the folder of FILE")
    waits(run)
    run.add_argument("--memory", action="store_true", help="keep nothing: run in memory only")
    run.add_argument("--quiet", action="store_true", help="no live progress")

    validate = commands.add_parser("validate", help="check a workflow and list every problem")
    validate.add_argument("file", metavar="FILE", help="workflow file (YAML or JSON)")
    actions(validate)

    graph = commands.add_parser("graph", help="print a workflow as a Mermaid flowchart")
    graph.add_argument("file", metavar="FILE", help="workflow file (YAML or JSON)")
    actions(graph)

    listing = commands.add_parser("list", help="list executions, newest first")
    store(listing)
    listing.add_argument(
        "--status",
        choices=EXECUTION_STATUSES,
        help="only executions with this status",
    )
    listing.add_argument("--workflow", metavar="ID", help="only executions of this workflow")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    commands.add_parser(
        "status", help="a daemon's health, live executions and executions by status (--url)"
    )
    logs = commands.add_parser(
        "logs", help="follow an execution's events on a daemon until it ends (--url)"
    )
    logs.add_argument("execution", metavar="ID", help="the execution id")

    show = commands.add_parser("show", help="show one execution: status, timeline, output")
    show.add_argument("execution", metavar="ID", help="the execution id")
    store(show)
    output(show)

    why = commands.add_parser(
        "explain",
        help="why an execution is where it is: what it waits for and until when, "
        "whether it is paused, which engine runs it",
    )
    why.add_argument("execution", metavar="ID", help="the execution id")
    store(why)

    resume = commands.add_parser(
        "resume", help="resume a waiting or paused execution and show what happens"
    )
    resume.add_argument(
        "target",
        metavar="ID|TOKEN",
        help="an execution id (a paused one without --data is unpaused), or a wait.webhook "
        "resume token",
    )
    resume.add_argument(
        "--data", metavar="JSON|@FILE", help="the data to resume with: JSON text or @file.json"
    )
    resume.add_argument(
        "--node", metavar="KEY", help="which waiting node, if several wait (with an id)"
    )
    actions(resume)
    workflows(resume, "none")
    waits(resume)
    store(resume)
    output(resume)

    cancel = commands.add_parser("cancel", help="cancel an execution that has not ended")
    cancel.add_argument("execution", metavar="ID", help="the execution id")
    cancel.add_argument("--reason", help="why (kept as the execution's error message)")
    actions(cancel)
    workflows(cancel, "none")
    timeout(cancel)
    store(cancel)
    output(cancel)

    pause = commands.add_parser(
        "pause", help="pause an execution: running nodes finish, nothing new starts"
    )
    pause.add_argument("execution", metavar="ID", help="the execution id")
    actions(pause)
    workflows(pause, "none")
    timeout(pause)
    store(pause)
    output(pause)

    retry = commands.add_parser(
        "retry", help="run a failed execution again from its failed node and show what happens"
    )
    retry.add_argument("execution", metavar="ID", help="the execution id")
    actions(retry)
    workflows(retry, "none")
    waits(retry)
    store(retry)
    output(retry)

    rerun = commands.add_parser(
        "rerun",
        help="run an execution again from a node, as a new execution that keeps the "
        "outputs of everything before it, and show what happens",
    )
    rerun.add_argument("execution", metavar="ID", help="the execution id")
    rerun.add_argument(
        "--from", dest="from_node", metavar="NODE", required=True, help="the node to run from"
    )
    rerun.add_argument(
        "--input",
        metavar="JSON|@FILE",
        help="a new input for the trigger (default: the original's)",
    )
    actions(rerun)
    workflows(rerun, "none")
    waits(rerun)
    store(rerun)
    output(rerun)

    serve = commands.add_parser(
        "serve",
        help="run the daemon: the engine and its HTTP API, webhooks, timers and schedules",
    )
    serve.add_argument(
        "--workflows",
        metavar="PATH",
        action="append",
        default=[],
        help="a workflow file, or a folder of them (its .yaml, .yml and .json files), to "
        "serve (may be given again)",
    )
    actions(serve)
    store(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8080, help="the port (default 8080; 0: any)")
    serve.add_argument(
        "--token-file",
        metavar="FILE",
        help="API tokens, one per line (also: $PRANA_TOKENS, comma-separated); requests "
        "under /api must carry one as 'Authorization: Bearer TOKEN'",
    )
    serve.add_argument(
        "--max-body",
        metavar="BYTES",
        type=int,
        default=1 << 20,
        help="the largest request body taken (default 1 MiB)",
    )
    serve.add_argument(
        "--max-running",
        metavar="N",
        type=_count_option,
        help="the most executions this process runs at once; past it, new ones are queued "
        "for any process on the database with room (default: no limit)",
    )
    serve.add_argument(
        "--grace",
        metavar="DURATION",
        default="10s",
        type=_duration_option,
        help="on SIGTERM, how long requests in progress may take to finish (default 10s)",
    )
    serve.add_argument(
        "--webhook-secrets",
        metavar="FILE",
        help="webhooks that take signed requests only: lines of 'PATH SECRET'; a request "
        "sends X-Prana-Signature: sha256=HMAC-SHA256(secret, body)",
    )
    serve.add_argument(
        "--signing-key-file",
        metavar="FILE",
        help="a key to sign each wait's resume_path with (also $PRANA_SIGNING_KEY): a "
        "signed path answers the wait without an API token",
    )
    serve.add_argument(
        "--processes",
        metavar="N",
        type=_count_option,
        default=1,
        help="run N daemons on the one port and store, one per core (default 1)",
    )
    serve.add_argument(
        "--watchdog",
        metavar="DURATION",
        default="30s",
        type=_duration_option,
        help="with --processes, a daemon that gives no sign of life for this long "
        "(stopped, or its event loop held) is killed and started again (default 30s)",
    )
    serve.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="async library to run on (default asyncio)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="the logs on stderr: text lines, or one JSON object per line",
    )
    serve.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's garbage-collector settings (by default the daemon, whose "
        "process runs workflows, tunes them for throughput: prana.tune_gc)",
    )
    serve.add_argument("--check", action="store_true", help="check the configuration and exit")
    return parser


def _duration_option(text: str) -> float:
    """A duration option: ``90s``, ``15m``, ``1h30m``, or a number of seconds."""
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count_option(text: str) -> int:
    """A whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"give a whole number of at least 1, not {text!r}")
    return int(text)
