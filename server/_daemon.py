"""``prana serve``: one engine and its HTTP API in one long-running process (DESIGN §12).

The process opens an :class:`prana.Engine` (taking over executions whose engine
died, arming timers and schedules), serves :func:`create_app` with Hypercorn in the
same task group, on asyncio or trio, and runs until SIGTERM or SIGINT. Then it stops
accepting connections, lets requests in progress finish (up to ``grace`` seconds),
and leaves the engine: every execution stops at its last checkpoint and its lease is
released, so the next daemon on the same store carries it on at once. It exits 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import anyio
import attrs
import orjson
import sniffio
from hypercorn.config import Config
from opentelemetry.trace import TracerProvider

import prana

from ._app import DEFAULT_MAX_BODY, DEFAULT_MAX_STREAMS, close_streams, create_app
from ._metrics import SharedFigures
from ._systemd import SystemdNotifier

logger = logging.getLogger("prana.server")


@attrs.frozen(kw_only=True)
class ServeConfig:
    """What ``prana serve`` runs: the store, the actions and workflows, where it
    listens, its tokens and limits."""

    store: Any  # a store URL or a prana.storage.Store, as Engine(store=...) takes it
    actions: prana.ActionRegistry = attrs.field(factory=prana.ActionRegistry)
    workflows: Sequence[prana.Workflow] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: Collection[str] = ()
    max_body: int = DEFAULT_MAX_BODY
    max_streams: int = DEFAULT_MAX_STREAMS
    grace: float = 10.0
    max_running: int | None = None  # as Engine(max_running=...) takes it
    webhook_secrets: Mapping[str, str] = attrs.field(factory=dict)
    signing_key: str | None = None
    tracer_provider: TracerProvider | None = None  # default: OpenTelemetry's global one
    # The workflows' clock, as Engine(clock=...) takes it (tests: a VirtualClock).
    clock: Any = None
    # A listening socket to serve on instead of host and port (prana serve --processes
    # hands one to each daemon it starts), and whether to stop once the process that
    # started this one is gone.
    listener: socket.socket | None = None
    stop_with_parent: bool = False
    # A pipe's end to write to each second while the event loop turns: the command of
    # --processes kills a daemon silent for ``watchdog`` seconds (frozen, or its loop
    # held), which with SQLite could hold the file's lock from every other daemon.
    heartbeat: int | None = None
    watchdog: float = 30.0
    shared_metrics: SharedFigures | None = None  # where the daemons share their figures

    def problems(self) -> list[str]:
        """What is wrong with the configuration, each with what to do."""
        found = []
        if not self.tokens and not _is_loopback(self.host):
            found.append(
                f"--host {self.host} serves the API beyond this machine without a token: give "
                "tokens with --token-file (or PRANA_TOKENS), or listen on 127.0.0.1"
            )
        if not 0 <= self.port <= 65535:
            found.append(f"--port {self.port} is not a port number (0 to 65535)")
        return found


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``; raises :class:`prana.PranaError` saying
    why it cannot be had (the port is taken, say)."""
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None


def cannot_listen(host: str, port: int, exc: OSError) -> prana.PranaError:
    """The error of a daemon that cannot listen on ``host:port``."""
    return prana.PranaError(
        f"cannot listen on {host}:{port}: {exc.strerror or exc}; give another port "
        "(--port), or stop what listens there"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(
    config: ServeConfig,
    *,
    ready: Callable[[str], Any] | None = None,
    stop: anyio.Event | None = None,
) -> None:
    """Run the daemon until SIGTERM or SIGINT (when run in the main thread), or until
    ``stop`` is set; ``ready`` is called with the URL it answers at once it accepts
    connections. Run by systemd as a ``Type=notify`` service, it says when it is
    ready and, with ``WatchdogSec=``, that its loop turns (:mod:`._systemd`)."""
    notifier = SystemdNotifier.from_environment()
    async with prana.Engine(
        store=config.store,
        actions=config.actions,
        clock=config.clock,
        max_running=config.max_running,
    ) as engine:
        for workflow in config.workflows:
            engine.register(workflow)
        app = create_app(
            engine,
            tokens=config.tokens,
            max_body=config.max_body,
            max_streams=config.max_streams,
            webhook_secrets=config.webhook_secrets,
            signing_key=config.signing_key,
            tracer_provider=config.tracer_provider,
            shared_metrics=config.shared_metrics,
        )
        listener = config.listener or listen(config.host, config.port)
        host, port = listener.getsockname()[:2]
        url = f"http://{host}:{port}"
        hypercorn = Config()
        # The server takes the socket over (and closes it when it stops).
        hypercorn.bind = [f"fd://{listener.detach()}"]
        hypercorn.graceful_timeout = config.grace
        hypercorn.accesslog = None
        # Hypercorn's messages go through the process's logging setup, as prana's do.
        hypercorn.errorlog = logging.getLogger("hypercorn.error")
        stop = stop or anyio.Event()
        async with anyio.create_task_group() as group:
            if threading.current_thread() is threading.main_thread():
                group.start_soon(_stop_on_signals, stop)  # only that thread gets them
            if config.stop_with_parent:
                group.start_soon(_watch_parent, stop, config.heartbeat)
            logger.info("serving %s at %s", config.store, url)
            if ready is not None:
                ready(url)  # the socket listens: connections wait for the server
            if notifier is not None:
                notifier.notify("READY=1", f"STATUS=serving at {url}")
                group.start_soon(notifier.keep_watchdog)
            await _serve_app(app, hypercorn, stop, notifier)
            group.cancel_scope.cancel()  # the signal watcher, if the server ended by itself
        logger.info("stopped serving; releasing the executions in flight")


# What a record may say besides its message: a ``core.log`` node's run, say.
CONTEXT = ("execution_id", "workflow_id", "node_key")


class TextLines(logging.Formatter):
    """Log records as text lines; one about a node's run (``core.log``) ends with the
    execution, workflow and node it is about."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        about = [f"{name}={getattr(record, name)}" for name in CONTEXT if hasattr(record, name)]
        return f"{line} ({' '.join(about)})" if about else line


class JSONLines(logging.Formatter):
    """Log records as one JSON object per line: time, level, logger, message, the
    execution, workflow and node a record is about (``core.log``), the traceback of an
    error, and which daemon of ``--processes`` logged it."""

    def __init__(self, daemon: str | None = None) -> None:
        super().__init__()
        self.daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {name: getattr(record, name) for name in CONTEXT if hasattr(record, name)}
        if self.daemon is not None:
            entry["daemon"] = self.daemon
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(log_format: str = "text", daemon: str | None = None) -> None:
    """Send the daemon's logs (prana's, Hypercorn's) to stderr, as text lines or as
    ``json`` lines; ``daemon``: its name among the daemons of ``--processes``, which
    each line then carries."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JSONLines(daemon))
    else:
        who = "" if daemon is None else f" [daemon {daemon}]"
        handler.setFormatter(TextLines(f"%(asctime)s %(levelname)s %(name)s{who}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def configure_tracing() -> str | None:
    """With ``$OTEL_EXPORTER_OTLP_ENDPOINT`` set and the ``otel`` extra installed,
    send spans there (OTLP over HTTP, the SDK's ``OTEL_*`` settings apply); the
    endpoint, or ``None`` if spans go nowhere. Raises :class:`RuntimeError` saying
    what to install when the endpoint is set but the SDK is missing."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set, but {exc.name} is missing: "
            "pip install 'prana-runtime[otel]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": "prana"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return endpoint


async def _stop_on_signals(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for received in signals:
            logger.info("%s: stopping", signal.Signals(received).name)
            stop.set()
            return


async def _watch_parent(stop: anyio.Event, heartbeat: int | None) -> None:
    """Set ``stop`` once the process that started this one is gone; meanwhile tell
    it through ``heartbeat`` (a pipe), each second, that this daemon's loop turns."""
    parent = os.getppid()
    if heartbeat is not None:
        os.set_blocking(heartbeat, False)
    while True:  # nothing but a look tells that a parent has gone
        if heartbeat is not None:
            # Full (the parent is not reading: it is stopping) or gone: no matter.
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(heartbeat, b".")
        await anyio.sleep(1.0)
        if os.getppid() != parent:
            break
    logger.warning("the process that started this daemon is gone: stopping")
    stop.set()


async def _serve_app(
    app: Any, config: Config, stop: anyio.Event, notifier: SystemdNotifier | None
) -> None:
    """Serve ``app`` until ``stop`` is set, then end its event streams and let the
    other requests in progress finish."""

    async def shutdown() -> None:
        await stop.wait()
        if notifier is not None:
            notifier.notify("STOPPING=1", "STATUS=stopping")
        close_streams(app)

    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as serve_on_trio

        await serve_on_trio(app, config, shutdown_trigger=shutdown)
    else:
        import asyncio

        from hypercorn.asyncio import serve as serve_on_asyncio

        # In a task of its own: Hypercorn stops through an asyncio.TaskGroup, whose
        # cancelling and uncancelling of its host task would reach the cancel scopes
        # of this one.
        server = asyncio.create_task(serve_on_asyncio(app, config, shutdown_trigger=shutdown))
        await server
