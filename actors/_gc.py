"""An opt-in garbage-collector setting for processes that run many executions at once.

With many executions in flight, most objects the collector's youngest generation
examines are still in use (running nodes, their inputs, pending checkpoints): they
survive, are promoted, and older generations fill with objects that die soon after,
at great scanning cost. Examining the young generation less often lets them die
first. This is a process-wide setting, so prana as a library never changes it by
itself; ``prana serve``, whose process is its own, does (decision 0062).
"""

from __future__ import annotations

import gc

DEFAULT_THRESHOLDS = (50_000, 20, 100)


def tune_gc(thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS, *, freeze: bool = True) -> None:
    """Tune this process's garbage collector for throughput.

    Sets the collection thresholds (CPython's default is ``(700, 10, 10)``) and, with
    ``freeze``, moves every object alive now (modules, compiled workflows) out of the
    collector's sight. Cyclic garbage is collected less often, so peak memory can be
    higher. Call it once, at start-up, in a process whose main job is running
    workflows (a worker, ``prana serve``); not in a library.
    """
    gc.collect()
    if freeze:
        gc.freeze()
    gc.set_threshold(*thresholds)
