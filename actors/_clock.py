"""Wall-clock time and execution ids."""

from __future__ import annotations

import os
import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time, in seconds since the epoch."""

    def now(self) -> float:
        """The current time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()


def new_execution_id(now: float) -> str:
    """A new execution id: 32 hex digits, sortable by creation time.

    The first 12 digits are milliseconds since the epoch, the other 20 are random,
    as in UUIDv7.
    """
    return f"{int(now * 1000) & 0xFFFFFFFFFFFF:012x}{os.urandom(10).hex()}"
