"""The engine's pure core, for tools and tests that drive it by hand: the compiled
graph, the state machine of one execution and what it asks its supervisor to do,
template rendering and the workflow checks. An application needs none of it."""

from ._commands import CancelChildren as CancelChildren
from ._commands import CancelRuns as CancelRuns
from ._commands import Dispatch as Dispatch
from ._compiler import CompiledNode as CompiledNode
from ._compiler import Edge as Edge
from ._compiler import ExecutionGraph as ExecutionGraph
from ._compiler import Loop as Loop
from ._compiler import compile_workflow as compile_workflow
from ._expressions import render_template as render_template
from ._machine import ExecutionMachine as ExecutionMachine
from ._records import NodeResult as NodeResult
from ._registry import Action as Action
from ._validation import check_workflow as check_workflow

__all__ = (
    "Action",
    "CancelChildren",
    "CancelRuns",
    "CompiledNode",
    "Dispatch",
    "Edge",
    "ExecutionGraph",
    "ExecutionMachine",
    "Loop",
    "NodeResult",
    "check_workflow",
    "compile_workflow",
    "render_template",
)
