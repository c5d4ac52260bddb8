"""systemd's readiness and watchdog protocol (``sd_notify``), for ``prana serve`` run
as a ``Type=notify`` service.

When systemd starts a service with ``NotifyAccess`` and ``$NOTIFY_SOCKET`` set, the
process tells it, by one datagram each, ``READY=1`` once it takes connections (so
units ordered after it start only then, and ``systemctl start`` returns only then),
``STOPPING=1`` when it begins to stop, and with ``WatchdogSec=`` (``$WATCHDOG_USEC``)
``WATCHDOG=1`` at least that often, from its event loop: a daemon whose loop stops
turning (frozen, held by a blocking call) is then killed and, with ``Restart=``,
started again. The protocol is a datagram on a Unix socket, so no library is needed.

The variables are taken out of the environment when read: what the daemon starts
(the daemons of ``--processes``, an action's subprocess) does not speak for it.
"""

from __future__ import annotations

import logging
import os
import socket

import anyio

logger = logging.getLogger("prana.server")


class SystemdNotifier:
    """Tells systemd how the service is (see the module's docstring)."""

    def __init__(self, address: str, watchdog: float | None) -> None:
        # A name starting with "@" is in Linux's abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._failed = False
        self.watchdog = watchdog

    @classmethod
    def from_environment(cls) -> SystemdNotifier | None:
        """The notifier systemd asked for, if any (taking its variables out of the
        environment)."""
        address = os.environ.pop("NOTIFY_SOCKET", None)
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        if not address:
            return None
        watchdog = None
        if usec and usec.isdigit() and int(usec) > 0 and pid in (None, str(os.getpid())):
            watchdog = int(usec) / 1e6
        return cls(address, watchdog)

    def notify(self, *states: str) -> None:
        """Send ``states`` (``READY=1``, ``STATUS=...``) in one datagram. A failure is
        logged once, and never stops the daemon."""
        try:
            self._socket.sendto("\n".join(states).encode(), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                logger.warning("cannot tell systemd how the daemon is (%s): %s", self._address, exc)

    def beat_due(self, last: float, now: float) -> bool:
        """Whether a ``WATCHDOG=1`` sent at ``last`` needs another by ``now`` (two per
        watchdog period, as systemd advises)."""
        return self.watchdog is not None and now - last >= self.watchdog / 2

    async def keep_watchdog(self) -> None:
        """Send ``WATCHDOG=1`` twice per watchdog period, from the event loop, for
        ever (nothing to do without a watchdog)."""
        if self.watchdog is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await anyio.sleep(self.watchdog / 2)

    def close(self) -> None:
        self._socket.close()
