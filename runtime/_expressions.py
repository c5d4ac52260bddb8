"""Templates in node parameters: sandboxed, native Jinja2 (DESIGN §6).

Rules of this module:

* A parameter value that is a string holding ``{{`` or ``{%`` is a template. A
  template that is one ``{{ ... }}`` and nothing else gives the native value (a
  number, a list, an object); a template mixing text renders to a string. Strings
  are never re-parsed, so ``"123"`` in the data stays a string.
* Templates run in Jinja's immutable sandbox: no dunder attributes, no mutation of
  data, no ``__import__``, no format-string tricks. Undefined names and missing keys
  are errors, never a silent empty string.
* On an object, ``a.b`` looks up the key ``b`` first, so ``input.items`` is the
  ``items`` of the data, not ``dict.items``, and ``input._id`` is the key ``_id``.
* Templates are parsed and checked once, when the workflow is compiled: syntax,
  names, and references to nodes that do not exist. Nothing of a template runs then
  (Jinja's folding of constants is off), so no template can hold up loading.
* Rendering has a budget of work (:class:`prana.Limits`): loop iterations, the size
  of every string, list or object an operation builds (checked before the operations
  that take a size, such as padding, and charged after the others), and the digits
  of integers. A template past it fails with an :class:`ExpressionError` that names
  the limit. What a template gives is JSON data (:mod:`prana._json`).
"""

from __future__ import annotations

import contextvars
import functools
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from itertools import chain, islice
from types import MappingProxyType
from typing import Any

import attrs
import jinja2
from jinja2 import meta, nodes
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from ._errors import ExpressionError, Problem, did_you_mean
from ._json import InvalidData, check_json
from ._limits import DEFAULT_LIMITS, Limits
from ._reads import node_references, output_reads

NAMES = (
    "input",
    "inputs",
    "nodes",
    "trigger",
    "vars",
    "env",
    "execution",
    "node",
    "loop",
    "run",
)
_LOG2_10 = 3.3219280948873626  # bits per decimal digit


class _OverBudget(Exception):
    """A template went past one of its limits; the message names it."""


class _Budget:
    """What one rendering may still do (see :class:`prana.Limits`)."""

    __slots__ = ("iterations", "max_bits", "max_value", "work")

    def __init__(self, limits: Limits) -> None:
        self.iterations = limits.template_iterations
        self.work = limits.template_work
        self.max_value = limits.template_value
        self.max_bits = int(limits.integer_digits * _LOG2_10)

    def iterate(self) -> None:
        self.iterations -= 1
        if self.iterations < 0:
            raise _OverBudget(
                "it ran past its limit of loop iterations (Limits.template_iterations)"
            )

    def size(self, planned: int) -> None:
        """Refuse a value of ``planned`` characters or items, or charge it."""
        if planned > self.max_value:
            raise _OverBudget(
                f"it would build a value of {planned} characters or items, past its limit "
                f"of {self.max_value} (Limits.template_value)"
            )
        self.work -= planned
        if self.work < 0:
            raise _OverBudget(
                "it built more than its limit of characters and items in all (Limits.template_work)"
            )

    def made(self, value: Any) -> Any:
        """Charge ``value`` (just built) and return it."""
        if (isinstance(value, Sized) and not isinstance(value, Mapping | range)) or isinstance(
            value, Mapping
        ):
            self.size(len(value))
        elif type(value) is int and value.bit_length() > self.max_bits:
            raise self.too_many_digits()
        return value

    def bits(self, planned: int) -> None:
        if planned > self.max_bits:
            raise self.too_many_digits()

    def too_many_digits(self) -> _OverBudget:
        digits = int(self.max_bits / _LOG2_10)
        return _OverBudget(
            f"it would compute an integer of more than {digits} digits (Limits.integer_digits)"
        )


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("prana_template_budget")


def _budget() -> _Budget:
    try:
        return _BUDGET.get()
    except LookupError:  # rendered outside Template.render (by Jinja itself)
        budget = _Budget(DEFAULT_LIMITS)
        _BUDGET.set(budget)
        return budget


def _iterate(values: Any) -> Iterator[Any]:
    """What every ``{% for %}`` iterates over: ``values``, each item charged."""
    budget = _budget()
    for value in values:
        budget.iterate()
        yield value


def _made(value: Any) -> Any:
    """What every ``~`` gives: charged."""
    return _budget().made(value)


class _Charged(NodeTransformer):
    """Rewrites a parsed template so that its loops and concatenations are charged."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)  # type: ignore[assignment]
        node.iter = nodes.Call(
            nodes.Name("_prana_iterate", "load"), [node.iter], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)  # type: ignore[assignment]
        return nodes.Call(
            nodes.Name("_prana_made", "load"), [node], [], None, None, lineno=node.lineno
        )


# A number in a format spec or a printf-style conversion: a width or a precision.
_FORMAT_NUMBERS = re.compile(
    r"%[-#0 +]*(\d+)?(?:\.(\d+))?|[:<>^=]\s*[-+ #0]*(\d+)?(?:[,_])?(?:\.(\d+))?"
)
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _widths(text: str) -> int:
    """The largest width or precision a format string asks for (0 if none)."""
    largest = 0
    for match in _FORMAT_NUMBERS.finditer(text):
        for number in match.groups():
            if number:
                largest = max(largest, int(number))
    return largest


def is_template(value: object) -> bool:
    """Whether a parameter value is a template string."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def contains_template(value: object) -> bool:
    """Whether a parameter value is, or holds anywhere inside it, a template string."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(contains_template(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_template(item) for item in value)
    return False


def _native_concat(values: Iterable[Any]) -> Any:
    head = list(islice(values, 2))
    if not head:
        return None
    if len(head) == 1:
        value = head[0]
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined raises the error it stands for
        if isinstance(value, str) and type(value) is not str:
            return str(value)  # Markup from filters like tojson is plain text here
        return value
    return "".join(str(value) for value in chain(head, values))


class _CodeGenerator(NativeCodeGenerator):
    """Keeps a lone constant (``{{ 5 }}``) native instead of folding it to a string,
    and computes nothing while compiling: an expression of constants (``{{ 'x' *
    9 }}``, a filter on a literal) is worked out when rendered, within the budget."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Any, finalize: Any) -> str:
        if isinstance(node, nodes.TemplateData):
            return str(super()._output_child_to_const(node, frame, finalize))
        raise nodes.Impossible()

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        values = list(group)
        if len(values) == 1:
            return repr(values[0])
        return repr("".join(str(value) for value in values))


class _Environment(ImmutableSandboxedEnvironment):
    """The sandboxed native environment every template runs in: every operation that
    can build something big is charged to the rendering's budget."""

    code_generator_class = _CodeGenerator
    concat = staticmethod(_native_concat)
    intercepted_binops = frozenset(["*", "**", "%", "+", "//"])

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and not attribute.startswith("__"):
            try:
                return obj[attribute]
            except KeyError:
                if isinstance(obj, NodesView):
                    return obj.missing(attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        budget = _budget()
        if operator_name == "**":
            if type(left) is int and type(right) is int and right > 0:
                budget.bits(max(left.bit_length(), 1) * right)
            return budget.made(operator.pow(left, right))
        if operator_name == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and type(count) is int:
                    budget.size(len(sequence) * max(count, 0))
                    return sequence * count
            if type(left) is int and type(right) is int:
                budget.bits(left.bit_length() + right.bit_length())
            return operator.mul(left, right)
        if operator_name == "%":
            if isinstance(left, str):
                budget.size(len(left) + _widths(left))
                return budget.made(left % right)
            return operator.mod(left, right)
        if operator_name == "+":
            return budget.made(operator.add(left, right))
        return operator.floordiv(left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _PADDING_METHODS:
                numbers = [value for value in args if type(value) is int]
                budget.size(len(owner) * (max(numbers, default=8) if name == "expandtabs" else 1))
                budget.size(max(numbers, default=0))
            elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
                old, new = args[0], args[1]
                count = owner.count(old) if old else len(owner) + 1
                budget.size(len(owner) + count * max(len(str(new)) - len(old), 0))
        return budget.made(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _budget().size(len(text) + _widths(text))
            return wrapped(*args, **kwargs)

        return checked


class _NativeTemplate(jinja2.Template):
    def render(self, *args: Any, **kwargs: Any) -> Any:
        context = self.new_context(dict(*args, **kwargs))
        return self.environment.concat(self.root_render_func(context))


def _charged_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a filter) with what it builds charged to the budget, and, for
    the filters that take a size (a width for ``center``, ``indent``, ``wordwrap``;
    the format string of ``format``), that size refused before it is built."""

    @functools.wraps(function)
    def charged(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        values = [value for value in (*args, *kwargs.values()) if type(value) is int]
        if name in ("center", "indent", "wordwrap") and values:
            budget.size(max(values))
        elif name == "format":
            text = next((value for value in args if isinstance(value, str)), "")
            budget.size(len(text) + _widths(text))
        return budget.made(function(*args, **kwargs))

    return charged


def _make_environment() -> _Environment:
    environment = _Environment(undefined=jinja2.StrictUndefined, autoescape=False, optimized=False)
    environment.template_class = _NativeTemplate
    environment.globals.pop("lipsum", None)
    environment.filters = {
        name: _charged_filter(name, function) for name, function in environment.filters.items()
    }
    environment.globals["_prana_iterate"] = _iterate
    environment.globals["_prana_made"] = _made
    return environment


_environment = _make_environment()
_GLOBALS = frozenset(name for name in _environment.globals if not name.startswith("_prana"))


class NodesView(Mapping[str, Mapping[str, Any]]):
    """``nodes`` in a template: each node that has run, by key, built on access.

    ``nodes.<key>`` is ``{output, status, port, duration_ms, context}`` of the node's
    latest run; ``get`` builds that record from the engine's state. Of a node of the
    workflow that has no run, it is undefined (:class:`_NotRun`), saying why:
    ``skipped(key)`` tells whether every path to it died.
    """

    __slots__ = ("_get", "_keys", "_known", "_skipped")

    def __init__(
        self,
        get: Callable[[str], Mapping[str, Any] | None],
        keys: Callable[[], Iterable[str]],
        known: Iterable[str] = (),
        skipped: Callable[[str], bool] = lambda key: False,
    ) -> None:
        self._get = get
        self._keys = keys
        self._known = frozenset(known)
        self._skipped = skipped

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        record = self._get(key)
        if record is None:
            raise KeyError(key)
        return record

    def __iter__(self) -> Any:
        return iter(self._keys())

    def __len__(self) -> int:
        return sum(1 for _ in self._keys())

    def missing(self, key: str) -> jinja2.Undefined:
        """``nodes.<key>`` of a node without a run, or of no node at all."""
        if key not in self._known:
            return jinja2.StrictUndefined(
                hint=f"there is no node {key!r}{did_you_mean(key, self._known)}"
            )
        why = (
            "was skipped in this execution (every path to it died)"
            if self._skipped(key)
            else "has not run (yet) in this execution"
        )
        return _NotRun(
            hint=f"node {key!r} {why}; where that can be, write "
            f"nodes.{key}.output | default(...) or test nodes.{key} is defined"
        )


class _NotRun(jinja2.ChainableUndefined, jinja2.StrictUndefined):
    """``nodes.<key>`` of a node that has no run: ``| default(...)`` and ``is
    defined`` see an undefined value, through any ``.output.field`` after it; any
    other use fails, saying why the node has no run."""

    __slots__ = ()


@attrs.frozen
class Template:
    """A compiled template string and where it sits in the parameters."""

    text: str
    parameter: str
    compiled: jinja2.Template = attrs.field(eq=False, repr=False)
    # The output fields it reads of other nodes: (node, field) of nodes.<node>.output.<field>
    output_reads: tuple[tuple[str, str], ...] = ()

    def render(
        self,
        scope: Mapping[str, Any],
        node_key: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Any:
        """Evaluate with the names in ``scope``, within ``limits``; raises
        :class:`ExpressionError` (naming the limit, if it went past one)."""
        token = _BUDGET.set(_Budget(limits))
        try:
            value = self.compiled.render(scope)
            return check_json(value, what="its value", limits=limits)
        except Exception as exc:
            where = f"node {node_key!r}, " if node_key else ""
            raise ExpressionError(
                f"{where}parameter {self.parameter!r}: template {_shown(self.text)} failed: "
                f"{_describe(exc)}",
                template=self.text,
                node_key=node_key,
                parameter=self.parameter,
            ) from exc
        finally:
            _BUDGET.reset(token)


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 200 else repr(text[:200]) + "..."


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (_OverBudget, InvalidData)):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "it nests too deeply"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"refused by the sandbox ({exc})"
    if isinstance(exc, jinja2.UndefinedError):
        return str(exc.message)
    return f"{type(exc).__name__}: {exc}"


def compile_template(
    text: str,
    parameter: str,
    *,
    node_keys: Iterable[str] | None,
    problems: list[Problem],
    path: str,
    names: Iterable[str] = NAMES,
) -> Template | None:
    """Parse and check one template; record problems (with ``path``) instead of raising."""
    try:
        tree = _environment.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        problems.append(Problem(path=path, message=f"template syntax error: {exc.message}"))
        return None
    names = tuple(names)
    unknown = sorted(meta.find_undeclared_variables(tree) - set(names) - _GLOBALS)
    for name in unknown:
        problems.append(
            Problem(
                path=path,
                message=f"unknown name {name!r} in template{did_you_mean(name, names)}; "
                f"templates can use {', '.join(names)}",
            )
        )
    if node_keys is not None:
        keys = set(node_keys)
        for key in sorted(node_references(tree) - keys):
            problems.append(
                Problem(
                    path=path,
                    message=f"template refers to unknown node {key!r}{did_you_mean(key, keys)}",
                )
            )
    if unknown:
        return None
    reads = tuple(sorted(output_reads(tree)))
    charged = _Charged().visit(tree)
    return Template(
        text=text,
        parameter=parameter,
        compiled=_environment.from_string(charged),
        output_reads=reads,
    )


@attrs.frozen
class CompiledParams:
    """A node's parameters with their templates compiled, ready to render per run."""

    value: Mapping[str, Any]
    templates: tuple[Template, ...]
    # Without templates, what a run's record keeps of ``value`` is the same for every
    # run: kept here by the limit it was made for, once per compiled workflow.
    constant_records: dict[int, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @property
    def has_templates(self) -> bool:
        """Whether rendering does any work (otherwise ``value`` is the result)."""
        return bool(self.templates)

    def render(
        self, scope: Mapping[str, Any], node_key: str, limits: Limits = DEFAULT_LIMITS
    ) -> dict[str, Any]:
        """The parameters with every template evaluated; raises :class:`ExpressionError`."""
        rendered: dict[str, Any] = _render(self.value, scope, node_key, limits)
        return rendered


def _render(value: Any, scope: Mapping[str, Any], node_key: str, limits: Limits) -> Any:
    if isinstance(value, Template):
        return value.render(scope, node_key, limits)
    if isinstance(value, Mapping):
        return {key: _render(item, scope, node_key, limits) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, scope, node_key, limits) for item in value]
    return value


_NO_PARAMS = CompiledParams(value=MappingProxyType({}), templates=())


def compile_params(
    params: Mapping[str, Any],
    *,
    node_keys: Iterable[str] | None,
    problems: list[Problem],
    path: str,
) -> CompiledParams:
    """Compile every template in a node's parameters, recording problems with paths."""
    if not params:
        return _NO_PARAMS
    templates: list[Template] = []

    def walk(value: Any, parameter: str, value_path: str) -> Any:
        if isinstance(value, str) and is_template(value):
            template = compile_template(
                value, parameter, node_keys=node_keys, problems=problems, path=value_path
            )
            if template is None:
                return value
            templates.append(template)
            return template
        if isinstance(value, dict):
            return {
                key: walk(item, f"{parameter}.{key}", f"{value_path}.{key}")
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [
                walk(item, f"{parameter}[{index}]", f"{value_path}[{index}]")
                for index, item in enumerate(value)
            ]
        return value

    compiled = {key: walk(item, key, f"{path}.{key}") for key, item in params.items()}
    if not templates:
        return CompiledParams(value=MappingProxyType(dict(params)), templates=())
    return CompiledParams(value=compiled, templates=tuple(templates))


def render_template(
    text: str, scope: Mapping[str, Any] | None = None, *, limits: Limits = DEFAULT_LIMITS
) -> Any:
    """Evaluate one template with the given names, as a node parameter would be.

    Useful to try an expression in a test or a shell. Raises :class:`ExpressionError`
    for a syntax error, an unknown name, anything the sandbox refuses, or a template
    past ``limits``.
    """
    problems: list[Problem] = []
    scope = scope or {}
    template = compile_template(
        text, "template", node_keys=None, problems=problems, path="", names=(*NAMES, *scope)
    )
    if template is None:
        raise ExpressionError("; ".join(problem.message for problem in problems), template=text)
    return template.render(scope, limits=limits)
