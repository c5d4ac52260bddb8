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
  names, and references to nodes that do not exist.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from itertools import chain, islice
from types import MappingProxyType
from typing import Any

import attrs
import jinja2
from jinja2 import meta, nodes
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ._errors import ExpressionError, Problem, did_you_mean

NAMES = ("input", "inputs", "nodes", "trigger", "vars", "env", "execution", "node", "loop")

# Results bigger than this from `*` or `**` are refused instead of exhausting memory.
MAX_SEQUENCE_LENGTH = 1_000_000
MAX_POWER_EXPONENT = 1_000


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
    """Keeps a lone constant (``{{ 5 }}``) native instead of folding it to a string."""

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        values = list(group)
        if len(values) == 1:
            return repr(values[0])
        return repr("".join(str(value) for value in values))


class _Environment(ImmutableSandboxedEnvironment):
    """The sandboxed native environment every template runs in."""

    code_generator_class = _CodeGenerator
    concat = staticmethod(_native_concat)
    intercepted_binops = frozenset(["*", "**"])

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and not attribute.startswith("__"):
            try:
                return obj[attribute]
            except KeyError:
                if isinstance(obj, NodesView):
                    return self.undefined(hint=obj.missing_hint(attribute))
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_POWER_EXPONENT:
                raise OverflowError(f"exponent {right} is too large (limit {MAX_POWER_EXPONENT})")
            return operator.pow(left, right)
        for sequence, count in ((left, right), (right, left)):
            if (
                isinstance(sequence, (str, list, tuple))
                and isinstance(count, int)
                and len(sequence) * count > MAX_SEQUENCE_LENGTH
            ):
                raise OverflowError(
                    f"result of '*' would have {len(sequence) * count} items "
                    f"(limit {MAX_SEQUENCE_LENGTH})"
                )
        return operator.mul(left, right)


class _NativeTemplate(jinja2.Template):
    def render(self, *args: Any, **kwargs: Any) -> Any:
        context = self.new_context(dict(*args, **kwargs))
        return self.environment.concat(self.root_render_func(context))


def _make_environment() -> _Environment:
    environment = _Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    environment.template_class = _NativeTemplate
    environment.globals.pop("lipsum", None)
    return environment


_environment = _make_environment()
_GLOBALS = frozenset(_environment.globals)


class NodesView(Mapping[str, Mapping[str, Any]]):
    """``nodes`` in a template: each node that has run, by key, built on access.

    ``nodes.<key>`` is ``{output, status, port, duration_ms, context}`` of the node's
    latest run; ``get`` builds that record from the engine's state.
    """

    __slots__ = ("_get", "_keys", "_known")

    def __init__(
        self,
        get: Callable[[str], Mapping[str, Any] | None],
        keys: Callable[[], Iterable[str]],
        known: Iterable[str] = (),
    ) -> None:
        self._get = get
        self._keys = keys
        self._known = frozenset(known)

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        record = self._get(key)
        if record is None:
            raise KeyError(key)
        return record

    def __iter__(self) -> Any:
        return iter(self._keys())

    def __len__(self) -> int:
        return sum(1 for _ in self._keys())

    def missing_hint(self, key: str) -> str:
        """Why ``nodes.<key>`` has no value: unknown node, or one that has not run."""
        if key in self._known:
            return f"node {key!r} has not run (yet) in this execution"
        return f"there is no node {key!r}{did_you_mean(key, self._known)}"


@attrs.frozen
class Template:
    """A compiled template string and where it sits in the parameters."""

    text: str
    parameter: str
    compiled: jinja2.Template = attrs.field(eq=False, repr=False)

    def render(self, scope: Mapping[str, Any], node_key: str | None = None) -> Any:
        """Evaluate with the names in ``scope``; raises :class:`ExpressionError`."""
        try:
            return self.compiled.render(scope)
        except Exception as exc:
            where = f"node {node_key!r}, " if node_key else ""
            raise ExpressionError(
                f"{where}parameter {self.parameter!r}: template {self.text!r} failed: "
                f"{_describe(exc)}",
                template=self.text,
                node_key=node_key,
                parameter=self.parameter,
            ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"refused by the sandbox ({exc})"
    if isinstance(exc, jinja2.UndefinedError):
        return str(exc.message)
    return f"{type(exc).__name__}: {exc}"


def _node_references(tree: nodes.Template) -> set[str]:
    found: set[str] = set()
    for getattr_node in tree.find_all(nodes.Getattr):
        if isinstance(getattr_node.node, nodes.Name) and getattr_node.node.name == "nodes":
            found.add(getattr_node.attr)
    for getitem_node in tree.find_all(nodes.Getitem):
        if (
            isinstance(getitem_node.node, nodes.Name)
            and getitem_node.node.name == "nodes"
            and isinstance(getitem_node.arg, nodes.Const)
            and isinstance(getitem_node.arg.value, str)
        ):
            found.add(getitem_node.arg.value)
    return found


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
        for key in sorted(_node_references(tree) - keys):
            problems.append(
                Problem(
                    path=path,
                    message=f"template refers to unknown node {key!r}{did_you_mean(key, keys)}",
                )
            )
    if unknown:
        return None
    return Template(text=text, parameter=parameter, compiled=_environment.from_string(tree))


@attrs.frozen
class CompiledParams:
    """A node's parameters with their templates compiled, ready to render per run."""

    value: Mapping[str, Any]
    templates: tuple[Template, ...]

    @property
    def has_templates(self) -> bool:
        """Whether rendering does any work (otherwise ``value`` is the result)."""
        return bool(self.templates)

    def render(self, scope: Mapping[str, Any], node_key: str) -> dict[str, Any]:
        """The parameters with every template evaluated; raises :class:`ExpressionError`."""
        rendered: dict[str, Any] = _render(self.value, scope, node_key)
        return rendered


def _render(value: Any, scope: Mapping[str, Any], node_key: str) -> Any:
    if isinstance(value, Template):
        return value.render(scope, node_key)
    if isinstance(value, Mapping):
        return {key: _render(item, scope, node_key) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, scope, node_key) for item in value]
    return value


def compile_params(
    params: Mapping[str, Any],
    *,
    node_keys: Iterable[str] | None,
    problems: list[Problem],
    path: str,
) -> CompiledParams:
    """Compile every template in a node's parameters, recording problems with paths."""
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


def render_template(text: str, scope: Mapping[str, Any] | None = None) -> Any:
    """Evaluate one template with the given names, as a node parameter would be.

    Useful to try an expression in a test or a shell. Raises :class:`ExpressionError`
    for a syntax error, an unknown name, or anything the sandbox refuses.
    """
    problems: list[Problem] = []
    scope = scope or {}
    template = compile_template(
        text, "template", node_keys=None, problems=problems, path="", names=(*NAMES, *scope)
    )
    if template is None:
        raise ExpressionError("; ".join(problem.message for problem in problems), template=text)
    return template.render(scope)
