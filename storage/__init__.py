"""Where prana keeps executions: the :class:`Store` protocol and its backends."""

from prana._records import StoredExecution as StoredExecution

from ._engines import EngineBeat as EngineBeat
from ._memory import MemoryStore as MemoryStore
from ._open import open_store as open_store
from ._postgres import PostgresStore as PostgresStore
from ._protocol import ScheduleRow as ScheduleRow
from ._protocol import ScheduleState as ScheduleState
from ._protocol import Store as Store
from ._protocol import StoredWorkflow as StoredWorkflow
from ._sqlite import SQLiteStore as SQLiteStore

__all__ = (
    "EngineBeat",
    "MemoryStore",
    "PostgresStore",
    "SQLiteStore",
    "ScheduleRow",
    "ScheduleState",
    "Store",
    "StoredExecution",
    "StoredWorkflow",
    "open_store",
)
