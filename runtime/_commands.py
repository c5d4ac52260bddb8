"""What the state machine asks of its supervisor, and tells it (DESIGN §7).

Commands (:class:`Dispatch`, :class:`CancelRuns`, :class:`CancelChildren`) are to be
carried out in order; the public events among them (:mod:`prana.events`, made by the
machine's :mod:`journal <prana._journal>`) say what happened, and are published in
that order.
"""

from __future__ import annotations

import attrs

from ._context import NodeContext
from ._events import Event
from ._limits import DEFAULT_LIMITS, Limits
from ._records import NodeRun
from ._registry import Action


@attrs.define(kw_only=True, eq=False)
class Dispatch:
    """Command: run ``action`` for ``run`` with ``context``, then report a NodeResult.

    ``not_before`` (a time) delays the start: a retry's backoff. ``timeout`` (seconds)
    cancels the action if it runs longer; the run then fails with code ``timeout``.
    What the action gives must be JSON data within ``limits``.
    """

    run: NodeRun
    action: Action
    context: NodeContext
    not_before: float | None = None
    timeout: float | None = None
    limits: Limits = DEFAULT_LIMITS


@attrs.frozen(kw_only=True)
class CancelRuns:
    """Command: cancel the workers of these runs (by execution index); the execution
    has ended and their results no longer matter (``reason`` says how, for children
    a run started)."""

    execution_indexes: tuple[int, ...]
    reason: str


@attrs.frozen(kw_only=True)
class CancelChildren:
    """Command: cancel these child executions (``sync`` children of nodes that
    stopped waiting because the execution ended), with ``reason``."""

    execution_ids: tuple[str, ...]
    reason: str


Command = Dispatch | CancelRuns | CancelChildren | Event
