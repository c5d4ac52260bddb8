"""The concurrent part of prana: the engine, execution supervisors, node workers."""

from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._engine import Engine as Engine
from ._engine import EngineStatistics as EngineStatistics
from ._explain import Explanation as Explanation
from ._gc import tune_gc as tune_gc
from ._handle import ExecutionHandle as ExecutionHandle
from ._schedules import ScheduleInfo as ScheduleInfo
from ._services import EngineHealth as EngineHealth
from ._services import ServiceHealth as ServiceHealth
from ._subscription import Subscription as Subscription
from ._tally import Durations as Durations

__all__ = (
    "Clock",
    "Durations",
    "Engine",
    "EngineHealth",
    "EngineStatistics",
    "ExecutionHandle",
    "Explanation",
    "ScheduleInfo",
    "ServiceHealth",
    "Subscription",
    "SystemClock",
    "tune_gc",
)
