"""Who runs an execution: engine identities and dead-owner detection (DESIGN §8).

An engine's owner id is ``host:pid:random``. An engine that finds executions owned
by a process of its own host that no longer exists takes them at once instead of
waiting for their leases to expire; anything else waits for the lease.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable


def new_owner_id() -> str:
    """An owner id for this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def dead_owners(owners: Iterable[str]) -> list[str]:
    """The owners, among ``owners``, that are processes of this host no longer alive."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        owner_host, _, rest = owner.partition(":")
        pid_text = rest.partition(":")[0]
        if owner_host != host or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.append(owner)
        except PermissionError:
            continue  # alive, owned by someone else
    return dead
