"""The parameters classes of the built-in actions: what a node of each is given as
``ctx.params`` (see docs/workflows.md, Built-in actions)."""

from ._builtins import FailParams as FailParams
from ._builtins import ForEachParams as ForEachParams
from ._builtins import IfParams as IfParams
from ._builtins import LogParams as LogParams
from ._builtins import MergeParams as MergeParams
from ._builtins import SetParams as SetParams
from ._builtins import SetVariablesParams as SetVariablesParams
from ._builtins import SwitchParams as SwitchParams
from ._subworkflows import ExecuteParams as ExecuteParams
from ._triggers import EventTriggerParams as EventTriggerParams
from ._triggers import FunctionTriggerParams as FunctionTriggerParams
from ._triggers import ScheduleTriggerParams as ScheduleTriggerParams
from ._triggers import WebhookTriggerParams as WebhookTriggerParams
from ._waits import IntervalParams as IntervalParams
from ._waits import UntilParams as UntilParams
from ._waits import WebhookParams as WebhookParams

__all__ = (
    "EventTriggerParams",
    "ExecuteParams",
    "FailParams",
    "ForEachParams",
    "FunctionTriggerParams",
    "IfParams",
    "IntervalParams",
    "LogParams",
    "MergeParams",
    "ScheduleTriggerParams",
    "SetParams",
    "SetVariablesParams",
    "SwitchParams",
    "UntilParams",
    "WebhookParams",
    "WebhookTriggerParams",
)
