"""The concurrent part of prana: the engine, execution supervisors, node workers."""

from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._engine import Engine as Engine
from ._gc import tune_gc as tune_gc
from ._handle import ExecutionHandle as ExecutionHandle
from ._subscription import Subscription as Subscription

__all__ = (
    "Clock",
    "Engine",
    "ExecutionHandle",
    "Subscription",
    "SystemClock",
    "tune_gc",
)
