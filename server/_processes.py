"""``prana serve --processes N``: N daemons on one listening socket (decision 0064).

One daemon runs its engine and its HTTP server on one core. With ``--processes N``
the command's process takes the port and starts N daemons that listen on it: on
Linux each with a socket of its own (``SO_REUSEPORT``: the kernel spreads new
connections evenly over them; the port is held by a socket of this process that does
not listen, ``$PRANA_LISTEN_PORT``), elsewhere on the one socket this process listens
on, which they inherit (``$PRANA_LISTEN_FD``: each connection goes to whichever
accepts it first, which spreads them less evenly). They are
engines on one store, as several daemons on one database always were: each runs the
executions it starts or resumes and takes over those of one that died; a schedule's
firing, a timer's wake-up and a queued execution's start are claimed once.

The daemons share their figures for ``/metrics`` through a folder this process makes
(and removes; see :class:`SharedFigures`). Otherwise this process only watches them.
A daemon that exits while it should not is started
again (logged), unless daemons keep exiting within seconds of their start: then the
others are stopped and it exits 1. SIGTERM or SIGINT is passed on to every daemon
(each in a session of its own, so that a terminal's Ctrl-C reaches them only through
here), each stops as one daemon does, and this process exits 0 once all have ended
cleanly. A daemon whose parent is gone stops by itself (``ServeConfig.stop_with_parent``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import attrs

from ._daemon import ServeConfig, cannot_listen, listen
from ._metrics import SharedFigures
from ._systemd import SystemdNotifier

logger = logging.getLogger("prana.server")

# In a daemon this module started: the inherited socket, or the address to listen on.
LISTEN_FD = "PRANA_LISTEN_FD"
LISTEN_PORT = "PRANA_LISTEN_PORT"
LISTENING_FD = "PRANA_LISTENING_FD"  # written to once the daemon listens
HEARTBEAT_FD = "PRANA_HEARTBEAT_FD"  # written to each second while the daemon's loop turns
FIGURES = "PRANA_SHARED_FIGURES"  # the folder where the daemons share their figures
NUMBER = "PRANA_DAEMON"  # which daemon of N it is
SPREAD_BY_KERNEL = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
# Daemons that keep exiting sooner than this after their start are a crash loop.
SHORT_LIFE = 10.0
MOST_SHORT_LIVES = 3
# How long after the grace a daemon that does not stop is killed.
STOP_MARGIN = 30.0


def shared_figures() -> SharedFigures | None:
    """Where this process, if it is one of the daemons of ``prana serve
    --processes``, shares its figures (its ``ServeConfig.shared_metrics``)."""
    folder = os.environ.pop(FIGURES, None)
    return None if folder is None else SharedFigures(Path(folder), os.environ.pop(NUMBER))


def heartbeat() -> int | None:
    """The pipe this process tells it is alive through, if it is one of the daemons
    of ``prana serve --processes`` (then its ``ServeConfig.heartbeat``)."""
    fd = os.environ.pop(HEARTBEAT_FD, None)
    return None if fd is None else int(fd)


def inherited_listener() -> socket.socket | None:
    """The listening socket this process was started with, if it is one of the
    daemons of ``prana serve --processes`` (then its ``ServeConfig.listener``)."""
    # Taken out of the environment: what the daemon's actions start does not see them.
    fd = os.environ.pop(LISTEN_FD, None)
    if fd is not None:
        return socket.socket(fileno=int(fd))
    address = os.environ.pop(LISTEN_PORT, None)
    if address is None:
        return None
    host, _, port = address.rpartition(" ")
    listener = socket.create_server((host, int(port)), reuse_port=True)
    told = int(os.environ.pop(LISTENING_FD))
    with contextlib.suppress(BrokenPipeError):  # started again: nobody waits
        os.write(told, b".")
    os.close(told)
    return listener


@attrs.define
class _Daemon:
    """One of the daemons: its process, when it started, the pipe it beats on (see
    :meth:`Daemons._kill_silent`) and when it last did (``None``: not yet, so it is
    not watched: a slow start is not a freeze)."""

    process: subprocess.Popen[bytes]
    started: float
    beats: int
    heard: float | None = None

    def take_beats(self, now: float) -> None:
        """Take the beats sent since the last look."""
        with contextlib.suppress(BlockingIOError):
            if os.read(self.beats, 4096):
                self.heard = now


class Daemons:
    """N daemons started with ``argv`` (a ``prana`` command line), sharing a
    listening socket."""

    def __init__(
        self,
        argv: Sequence[str],
        listener: socket.socket,
        count: int,
        grace: float,
        watchdog: float,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self._argv = list(argv)
        self._notifier = notifier
        self._listener = listener
        self._count = count
        self._grace = grace
        self._watchdog = watchdog
        self._figures = Path(tempfile.mkdtemp(prefix="prana-figures-"))
        self._daemons: list[_Daemon] = []
        self._short_lives = 0
        self.stopping = threading.Event()

    def _start(self, number: int, wait: bool = False) -> _Daemon:
        """Start daemon ``number``; with ``wait``, return once it listens (or ended)."""
        beats, beat = os.pipe()
        os.set_blocking(beats, False)
        env = {FIGURES: str(self._figures), NUMBER: str(number), HEARTBEAT_FD: str(beat)}
        try:
            if not SPREAD_BY_KERNEL:
                fd = self._listener.fileno()
                child = self._spawn(env | {LISTEN_FD: str(fd)}, (fd, beat))
            else:
                host, port = self._listener.getsockname()[:2]
                listening, told = os.pipe()
                env |= {LISTEN_PORT: f"{host} {port}", LISTENING_FD: str(told)}
                try:
                    child = self._spawn(env, (told, beat))
                finally:
                    os.close(told)
                with os.fdopen(listening, "rb", buffering=0) as heard:
                    if wait:
                        self._until_listening(child, heard)
        finally:
            os.close(beat)
        logger.info("started daemon %d (pid %d)", number, child.pid)
        return _Daemon(child, time.monotonic(), beats)

    def _until_listening(self, child: subprocess.Popen[bytes], heard: BinaryIO) -> None:
        """Return once ``child`` listens, has ended, or the daemons are stopping."""
        while not self.stopping.is_set() and child.poll() is None:
            ready, _, _ = select.select([heard], [], [], 0.2)
            if ready:
                heard.read(1)
                return

    def _spawn(self, env: dict[str, str], fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "prana", *self._argv],
            env={**os.environ, **env},
            pass_fds=fds,
            start_new_session=True,
        )

    def run(self, listening: Callable[[], None]) -> int:
        """Start the daemons (``listening()`` once they listen), keep them running
        until SIGTERM or SIGINT, stop them; the exit code."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        for index in range(self._count):
            self._daemons.append(self._start(index + 1, wait=True))
        listening()
        notifier, beaten = self._notifier, time.monotonic()
        if notifier is not None:
            notifier.notify("READY=1", f"STATUS={self._count} daemons serving")
        failed = False
        try:
            while not self.stopping.wait(0.2):
                if not self._restart_ended():
                    failed = True
                    break
                self._kill_silent()
                if notifier is not None and notifier.beat_due(beaten, time.monotonic()):
                    notifier.notify("WATCHDOG=1")
                    beaten = time.monotonic()
            if notifier is not None:
                notifier.notify("STOPPING=1", "STATUS=stopping")
            return self._stop_all() or int(failed)
        finally:
            shutil.rmtree(self._figures, ignore_errors=True)
            for daemon in self._daemons:
                os.close(daemon.beats)

    def _stop(self, signum: int, frame: object) -> None:
        logger.info("%s: stopping %d daemons", signal.Signals(signum).name, self._count)
        self.stopping.set()

    def _restart_ended(self) -> bool:
        """Start again the daemons that ended; ``False`` in a crash loop."""
        for index, daemon in enumerate(self._daemons):
            child = daemon.process
            code = child.poll()
            if code is None:
                continue
            lived = time.monotonic() - daemon.started
            logger.warning(
                "daemon %d (pid %d) ended (%s) after %.0f s; starting another",
                index + 1,
                child.pid,
                _how(code),
                lived,
            )
            self._short_lives = self._short_lives + 1 if lived < SHORT_LIFE else 0
            if self._short_lives >= MOST_SHORT_LIVES:
                logger.error(
                    "daemons keep ending within %.0f s of their start: stopping (see "
                    "their messages above)",
                    SHORT_LIFE,
                )
                return False
            os.close(daemon.beats)
            self._daemons[index] = self._start(index + 1)
        return True

    def _kill_silent(self) -> None:
        """Kill each daemon that has beaten once and then not for ``watchdog`` seconds
        (the loop then starts another in its place). A daemon that does not turn its
        loop serves nobody, and with SQLite one frozen amid a write holds the file's
        lock from every other daemon."""
        now = time.monotonic()
        for index, daemon in enumerate(self._daemons):
            daemon.take_beats(now)
            heard, child = daemon.heard, daemon.process
            if heard is not None and now - heard > self._watchdog and child.poll() is None:
                logger.error(
                    "daemon %d (pid %d) gave no sign of life for %.0f s (stopped, or its "
                    "event loop held): killed",
                    index + 1,
                    child.pid,
                    now - heard,
                )
                child.kill()
                daemon.heard = None

    def _stop_all(self) -> int:
        """Stop every daemon; 0 if each ended cleanly, else 1."""
        children = [daemon.process for daemon in self._daemons]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._grace + STOP_MARGIN
        clean = True
        for index, child in enumerate(children):
            try:
                code = child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("daemon %d (pid %d) did not stop: killed", index + 1, child.pid)
                child.kill()
                code = child.wait()
            # Killed by the SIGTERM it was sent before it could handle one (it was
            # starting): stopped as asked all the same.
            clean = clean and code in (0, -signal.SIGTERM)
        return 0 if clean else 1


def _how(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _port(host: str, port: int) -> socket.socket:
    """The socket that holds the port for the daemons (see the module docstring)."""
    if not SPREAD_BY_KERNEL:
        return listen(host, port)
    # Bound (the port is this command's) but not listening: the daemons' sockets do.
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        held = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise cannot_listen(host, port, exc) from None
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((host, port))
    except OSError as exc:
        held.close()
        raise cannot_listen(host, port, exc) from None
    return held


def serve_in_processes(
    argv: Sequence[str],
    config: ServeConfig,
    count: int,
    ready: Callable[[str], None],
) -> int:
    """Listen where ``config`` says and run ``count`` daemons there, each started
    with the ``prana`` command line ``argv`` (see the module docstring); the exit
    code."""
    # Taken out of the environment before any daemon starts: this process speaks to
    # systemd for them all.
    notifier = SystemdNotifier.from_environment()
    listener = _port(config.host, config.port)
    bound_host, bound_port = listener.getsockname()[:2]
    daemons = Daemons(argv, listener, count, config.grace, config.watchdog, notifier)
    try:
        return daemons.run(lambda: ready(f"http://{bound_host}:{bound_port}"))
    finally:
        listener.close()
