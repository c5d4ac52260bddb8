"""Every error prana raises, in one place. The ones an application catches are also
at the top of the package (``prana.NodeError``, ...)."""

from ._errors import ExecutionExists as ExecutionExists
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
from ._json import InvalidData as InvalidData
from ._triggers import TriggerError as TriggerError

__all__ = (
    "ExecutionExists",
    "ExecutionNotFound",
    "ExpressionError",
    "InternalError",
    "InvalidData",
    "InvalidTransition",
    "NodeError",
    "PranaError",
    "Problem",
    "ResumeRefused",
    "StoreError",
    "TriggerError",
    "WorkflowValidationError",
)
