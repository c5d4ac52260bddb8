"""The exception hierarchy of prana.

Every error a user can meet derives from :class:`PranaError`. A message says what
happened and, where there is one, what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import attrs


class PranaError(Exception):
    """Base class of every error raised by prana."""


@attrs.frozen(kw_only=True)
class Problem:
    """One problem found in a workflow definition.

    ``path`` locates it in the definition (``nodes[2].type``); ``message`` says what is
    wrong and, where it can, how to fix it.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class WorkflowValidationError(PranaError):
    """A workflow definition has problems; :attr:`problems` lists every one of them."""

    def __init__(self, problems: Sequence[Problem], *, source: str | None = None) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        count = len(self.problems)
        where = f" in {source}" if source else ""
        header = f"{count} problem{'s' if count != 1 else ''}{where}:"
        super().__init__("\n".join([header, *(f"  {problem}" for problem in self.problems)]))

    @classmethod
    def single(
        cls, path: str, message: str, *, source: str | None = None
    ) -> WorkflowValidationError:
        """Build the error for one problem."""
        return cls([Problem(path=path, message=message)], source=source)


class ExpressionError(PranaError):
    """A template could not be compiled or evaluated.

    At run time the message names the node, the parameter and the template.
    """

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        node_key: str | None = None,
        parameter: str | None = None,
    ) -> None:
        self.template = template
        self.node_key = node_key
        self.parameter = parameter
        super().__init__(message)


class NodeError(PranaError):
    """An action failed.

    Actions may raise it to choose the error ``code`` and ``details`` recorded for the
    node; any other exception is recorded with code ``action_error``. What is recorded
    is an :class:`ErrorInfo` on the node's run, which says the node and run; the
    ``node_key``, ``run_index`` and ``attempt`` given here are for the action's own
    use. The original exception, if any, is the ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "action_error",
        details: object = None,
        node_key: str | None = None,
        run_index: int | None = None,
        attempt: int | None = None,
    ) -> None:
        self.code = code
        self.details = details
        self.node_key = node_key
        self.run_index = run_index
        self.attempt = attempt
        super().__init__(message)


class ExecutionNotFound(PranaError):
    """No execution has the given id (or resume token)."""


class ExecutionExists(PranaError):
    """An execution with this idempotency key was started already: nothing new
    started; :attr:`execution_id` is the one that was. :attr:`same_input` says
    whether it was started with the same input (else the key was used twice for
    different things: the daemon refuses such a request)."""

    def __init__(self, message: str, *, execution_id: str, same_input: bool = True) -> None:
        super().__init__(message)
        self.execution_id = execution_id
        self.same_input = same_input


class InvalidTransition(PranaError):
    """An operation does not apply to an execution in its current status; nothing changed."""


class ResumeRefused(InvalidTransition):
    """An action's resume step (``on_resume``) refused the data it was resumed with:
    nothing changed, and the node still waits. Raise it from ``on_resume`` with a
    message saying what is wrong and what to send instead."""


class StoreError(PranaError):
    """The store could not read or write; the message says which file and why."""


class InternalError(PranaError):
    """A bug in prana itself; please report it with the message and traceback."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""
