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
"""

from ._builtins import FailParams as FailParams
from ._builtins import ForEachParams as ForEachParams
from ._builtins import IfParams as IfParams
from ._builtins import LogParams as LogParams
from ._builtins import MergeParams as MergeParams
from ._builtins import SetParams as SetParams
from ._builtins import SetVariablesParams as SetVariablesParams
from ._builtins import SwitchParams as SwitchParams
from ._compiler import CompiledNode as CompiledNode
from ._compiler import Edge as Edge
from ._compiler import ExecutionGraph as ExecutionGraph
from ._compiler import Loop as Loop
from ._compiler import compile_workflow as compile_workflow
from ._context import NodeContext as NodeContext
from ._context import Output as Output
from ._context import Resume as Resume
from ._context import Suspend as Suspend
from ._errors import ExecutionNotFound as ExecutionNotFound
from ._errors import ExpressionError as ExpressionError
from ._errors import InternalError as InternalError
from ._errors import InvalidTransition as InvalidTransition
from ._errors import NodeError as NodeError
from ._errors import PranaError as PranaError
from ._errors import Problem as Problem
from ._errors import ResumeRefused as ResumeRefused
from ._errors import StoreError as StoreError
from ._errors import WorkflowValidationError as WorkflowValidationError
from ._events import Event as Event
from ._events import EventsDropped as EventsDropped
from ._events import ExecutionCancelled as ExecutionCancelled
from ._events import ExecutionCompleted as ExecutionCompleted
from ._events import ExecutionFailed as ExecutionFailed
from ._events import ExecutionPaused as ExecutionPaused
from ._events import ExecutionResumed as ExecutionResumed
from ._events import ExecutionStarted as ExecutionStarted
from ._events import ExecutionSuspended as ExecutionSuspended
from ._events import ExecutionTimedOut as ExecutionTimedOut
from ._events import NodeCompleted as NodeCompleted
from ._events import NodeFailed as NodeFailed
from ._events import NodeRetrying as NodeRetrying
from ._events import NodeSkipped as NodeSkipped
from ._events import NodeStarted as NodeStarted
from ._events import NodeSuspended as NodeSuspended
from ._expressions import render_template as render_template
from ._json import InvalidData as InvalidData
from ._limits import Limits as Limits
from ._loading import load_workflow as load_workflow
from ._loading import workflow_to_dict as workflow_to_dict
from ._machine import ExecutionMachine as ExecutionMachine
from ._model import Connection as Connection
from ._model import Node as Node
from ._model import NodeSettings as NodeSettings
from ._model import RetrySettings as RetrySettings
from ._model import Workflow as Workflow
from ._model import WorkflowSettings as WorkflowSettings
from ._records import ErrorInfo as ErrorInfo
from ._records import Execution as Execution
from ._records import NodeRun as NodeRun
from ._records import Suspension as Suspension
from ._registry import Action as Action
from ._registry import ActionRegistry as ActionRegistry
from ._subworkflows import ExecuteParams as ExecuteParams
from ._subworkflows import ExecuteWorkflow as ExecuteWorkflow
from ._triggers import TriggerError as TriggerError
from ._validation import check_workflow as check_workflow
from .actors import Engine as Engine
from .actors import EngineHealth as EngineHealth
from .actors import EngineStatistics as EngineStatistics
from .actors import ExecutionHandle as ExecutionHandle
from .actors import ServiceHealth as ServiceHealth
from .actors import Subscription as Subscription
from .actors import tune_gc as tune_gc

__version__ = "0.1.0"

__all__ = (
    "Action",
    "ActionRegistry",
    "CompiledNode",
    "Connection",
    "Edge",
    "Engine",
    "EngineHealth",
    "EngineStatistics",
    "ErrorInfo",
    "Event",
    "EventsDropped",
    "ExecuteParams",
    "ExecuteWorkflow",
    "Execution",
    "ExecutionCancelled",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionGraph",
    "ExecutionHandle",
    "ExecutionMachine",
    "ExecutionNotFound",
    "ExecutionPaused",
    "ExecutionResumed",
    "ExecutionStarted",
    "ExecutionSuspended",
    "ExecutionTimedOut",
    "ExpressionError",
    "FailParams",
    "ForEachParams",
    "IfParams",
    "InternalError",
    "InvalidData",
    "InvalidTransition",
    "Limits",
    "LogParams",
    "Loop",
    "MergeParams",
    "Node",
    "NodeCompleted",
    "NodeContext",
    "NodeError",
    "NodeFailed",
    "NodeRetrying",
    "NodeRun",
    "NodeSettings",
    "NodeSkipped",
    "NodeStarted",
    "NodeSuspended",
    "Output",
    "PranaError",
    "Problem",
    "Resume",
    "ResumeRefused",
    "RetrySettings",
    "ServiceHealth",
    "SetParams",
    "SetVariablesParams",
    "StoreError",
    "Subscription",
    "Suspend",
    "Suspension",
    "SwitchParams",
    "TriggerError",
    "Workflow",
    "WorkflowSettings",
    "WorkflowValidationError",
    "check_workflow",
    "compile_workflow",
    "load_workflow",
    "render_template",
    "tune_gc",
    "workflow_to_dict",
)
