"""prana: durable workflow graphs for async Python, on asyncio or trio.

A workflow is a graph of nodes (triggers, actions, logic, loops) joined by
connections between named ports. Load one with :func:`load_workflow`, register your
actions on an :class:`ActionRegistry`, and run it with an :class:`Engine`::

    actions = prana.ActionRegistry()

    @actions.action("shop.charge", outputs=("main", "declined"))
    async def charge(ctx: prana.NodeContext) -> object:
        return prana.Output({"charged": True})

    async with prana.Engine(actions=actions) as engine:
        result = await engine.run(prana.load_workflow("flow.yaml"), input={"amount": 5})

The rest is in tiers: :mod:`prana.events` (what subscribers and middleware hear),
:mod:`prana.builtins` (the built-in actions' parameters), :mod:`prana.errors` (every
error), :mod:`prana.lowlevel` (the pure core: graph, state machine, templates), and
:mod:`prana.testing`.
"""

from . import builtins as builtins
from . import errors as errors
from . import events as events
from . import lowlevel as lowlevel
from ._context import NodeContext as NodeContext
from ._context import Output as Output
from ._context import Resume as Resume
from ._context import Suspend as Suspend
from ._errors import ExecutionExists as ExecutionExists
from ._errors import ExecutionNotFound as ExecutionNotFound
from ._errors import ExpressionError as ExpressionError
from ._errors import InvalidTransition as InvalidTransition
from ._errors import NodeError as NodeError
from ._errors import PranaError as PranaError
from ._errors import ResumeRefused as ResumeRefused
from ._errors import StoreError as StoreError
from ._errors import WorkflowValidationError as WorkflowValidationError
from ._json import InvalidData as InvalidData
from ._limits import Limits as Limits
from ._loading import load_workflow as load_workflow
from ._loading import workflow_to_dict as workflow_to_dict
from ._model import Connection as Connection
from ._model import Node as Node
from ._model import NodeSettings as NodeSettings
from ._model import RetrySettings as RetrySettings
from ._model import Workflow as Workflow
from ._model import WorkflowSettings as WorkflowSettings
from ._records import EXECUTION_STATUSES as EXECUTION_STATUSES
from ._records import ErrorInfo as ErrorInfo
from ._records import Execution as Execution
from ._records import NodeRun as NodeRun
from ._records import Suspension as Suspension
from ._registry import ActionRegistry as ActionRegistry
from ._subworkflows import ExecuteWorkflow as ExecuteWorkflow
from ._triggers import TriggerError as TriggerError
from ._version import __version__ as __version__
from ._webhooks import WebhookRoute as WebhookRoute
from .actors import Durations as Durations
from .actors import Engine as Engine
from .actors import EngineHealth as EngineHealth
from .actors import EngineStatistics as EngineStatistics
from .actors import ExecutionHandle as ExecutionHandle
from .actors import Explanation as Explanation
from .actors import ScheduleInfo as ScheduleInfo
from .actors import ServiceHealth as ServiceHealth
from .actors import Subscription as Subscription
from .actors import tune_gc as tune_gc

__all__ = (
    "EXECUTION_STATUSES",
    "ActionRegistry",
    "Connection",
    "Durations",
    "Engine",
    "EngineHealth",
    "EngineStatistics",
    "ErrorInfo",
    "ExecuteWorkflow",
    "Execution",
    "ExecutionExists",
    "ExecutionHandle",
    "ExecutionNotFound",
    "Explanation",
    "ExpressionError",
    "InvalidData",
    "InvalidTransition",
    "Limits",
    "Node",
    "NodeContext",
    "NodeError",
    "NodeRun",
    "NodeSettings",
    "Output",
    "PranaError",
    "Resume",
    "ResumeRefused",
    "RetrySettings",
    "ScheduleInfo",
    "ServiceHealth",
    "StoreError",
    "Subscription",
    "Suspend",
    "Suspension",
    "TriggerError",
    "WebhookRoute",
    "Workflow",
    "WorkflowSettings",
    "WorkflowValidationError",
    "builtins",
    "errors",
    "events",
    "load_workflow",
    "lowlevel",
    "tune_gc",
    "workflow_to_dict",
)
