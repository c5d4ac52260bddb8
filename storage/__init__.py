"""Where prana keeps executions: the :class:`Store` protocol and its backends."""

from ._memory import MemoryStore as MemoryStore
from ._protocol import Store as Store

__all__ = ("MemoryStore", "Store")
