"""Tools for testing workflows and the applications that run them.

* :class:`VirtualClock`: time that moves only when the test moves it
  (``clock.jump()`` goes to the next deadline: a three-day wait ends at once).
* :func:`open_engine`: an engine on a throwaway SQLite file, with a virtual clock.
* :func:`kill_at`: run a workflow in a child process and SIGKILL it at a chosen
  node boundary, to test what survives a crash.
"""

from .actors._clock import VirtualClock as VirtualClock
from .actors._testing import KillReport as KillReport
from .actors._testing import kill_at as kill_at
from .actors._testing import open_engine as open_engine

__all__ = ("KillReport", "VirtualClock", "kill_at", "open_engine")
