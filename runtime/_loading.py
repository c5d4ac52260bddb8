"""Loading workflow definitions from a path, a dict, or JSON/YAML text.

Loading never stops at the first problem: the document is parsed, every node and
connection is structured on its own (with cattrs), and every problem found is
reported with its path in one :class:`WorkflowValidationError`.

YAML is read with a strict loader: duplicate keys are errors, and only
``true``/``false`` are booleans (so a country code ``NO`` stays a string). Dates are
left as strings: a workflow definition holds JSON values only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._convert import make_strict_converter, problems_from, type_name
from ._errors import Problem, WorkflowValidationError, did_you_mean
from ._json import InvalidData, check_json
from ._limits import DEFAULT_LIMITS, Limits
from ._model import (
    BACKOFF_CHOICES,
    DEFAULT_PORT,
    ON_ERROR_CHOICES,
    Connection,
    Node,
    NodeSettings,
    RetrySettings,
    Workflow,
    WorkflowSettings,
)
from ._time import parse_duration

if TYPE_CHECKING:
    from ._registry import ActionRegistry

WorkflowSource = str | bytes | os.PathLike[str] | Mapping[str, Any]

KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


# --------------------------------------------------------------------------- parsing


def _parse_json(text: str) -> tuple[object, list[Problem]]:
    problems: list[Problem] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                problems.append(
                    Problem(
                        path="",
                        message=f"duplicate key {key!r} in a JSON object; remove one of them",
                    )
                )
            result[key] = value
        return result

    try:
        document = json.loads(text, object_pairs_hook=pairs_hook)
    except RecursionError:
        return None, [Problem(path="", message="invalid JSON: it nests too deeply")]
    except json.JSONDecodeError as exc:
        return None, [
            Problem(
                path=f"line {exc.lineno}, column {exc.colno}", message=f"invalid JSON: {exc.msg}"
            )
        ]
    return document, problems


def parse_text(text: str, limits: Limits = DEFAULT_LIMITS) -> tuple[object, list[Problem]]:
    """Parse JSON (text starting with ``{``) or YAML text into plain data."""
    if text.lstrip().startswith("{"):
        return _as_json(*_parse_json(text), limits)
    from ._yaml import parse_yaml  # PyYAML only for YAML

    return _as_json(*parse_yaml(text, limits), limits)


def _as_json(
    document: object, problems: list[Problem], limits: Limits
) -> tuple[object, list[Problem]]:
    """The document, which must be JSON data (no NaN, bounded depth and size)."""
    if problems or document is None:
        return document, problems
    try:
        return check_json(document, what="the workflow", limits=limits), problems
    except InvalidData as exc:
        return None, [*problems, Problem(path=exc.path.lstrip("."), message=exc.reason)]


def read_source(
    source: WorkflowSource, limits: Limits = DEFAULT_LIMITS
) -> tuple[object, list[Problem], str | None]:
    """Turn a workflow source into plain data, the problems found, and a name for messages.

    A string holding a newline or starting with ``{`` is workflow text; any other
    string, and any path object, names a file.
    """
    if isinstance(source, Mapping):
        # A copy: the workflow must not change when the caller's dict does.
        document, problems = _as_json(source, [], limits)
        return document, problems, None
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WorkflowValidationError.single("", f"workflow text is not UTF-8: {exc}") from None
    if isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{")):
        document, problems = parse_text(source, limits)
        return document, problems, None
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"load_workflow() takes a path, a dict, or JSON/YAML text, not {type(source).__name__}"
        )
    path = os.fspath(source)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise WorkflowValidationError.single("", f"workflow file not found: {path!r}") from None
    except IsADirectoryError:
        raise WorkflowValidationError.single(
            "", f"{path!r} is a directory, not a workflow file"
        ) from None
    except UnicodeDecodeError as exc:
        raise WorkflowValidationError.single("", f"{path!r} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise WorkflowValidationError.single("", f"cannot read {path!r}: {exc.strerror}") from None
    if path.endswith(".json"):
        document, problems = _as_json(*_parse_json(text), limits)
    else:
        document, problems = parse_text(text, limits)
    return document, problems, path


# --------------------------------------------------------------------------- structuring


def _node_on_error(value: object, cls: type) -> str | None:
    return None if value is None else _on_error(value, cls)


def _on_error(value: object, _: type) -> str:
    if value not in ON_ERROR_CHOICES:
        choices = ", ".join(ON_ERROR_CHOICES)
        hint = did_you_mean(value, ON_ERROR_CHOICES) if isinstance(value, str) else ""
        raise ValueError(f"must be one of {choices}, got {value!r}{hint}")
    return str(value)


def _duration(value: object, _: type) -> float:
    return parse_duration(value)


def _optional_duration(value: object, _: type) -> float | None:
    return None if value is None else parse_duration(value)


def _backoff(value: object, _: type) -> str:
    if value not in BACKOFF_CHOICES:
        hint = did_you_mean(value, BACKOFF_CHOICES) if isinstance(value, str) else ""
        raise ValueError(f"must be fixed or exponential, got {value!r}{hint}")
    return str(value)


def _jitter(value: object, _: type) -> float:
    if value is True:
        return 0.5
    if value is False:
        return 0.0
    if isinstance(value, (int, float)) and 0 <= value <= 1:
        return float(value)
    raise ValueError(f"must be a number from 0 to 1 (or true for 0.5), got {value!r}")


def _retry_on(value: object, _: type) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"expected a list of error codes or exception class names, got {value!r}")
    return tuple(value)


def _make_converter() -> cattrs.Converter:
    converter = make_strict_converter()
    converter.register_structure_hook(
        NodeSettings,
        make_dict_structure_fn(
            NodeSettings,
            converter,
            on_error=override(struct_hook=_node_on_error),
            timeout=override(struct_hook=_optional_duration),
        ),
    )
    converter.register_structure_hook(
        WorkflowSettings,
        make_dict_structure_fn(
            WorkflowSettings,
            converter,
            on_error=override(struct_hook=_on_error),
            timeout=override(struct_hook=_optional_duration),
        ),
    )
    converter.register_structure_hook(
        RetrySettings,
        make_dict_structure_fn(
            RetrySettings,
            converter,
            backoff=override(struct_hook=_backoff),
            delay=override(struct_hook=_duration),
            max_delay=override(struct_hook=_optional_duration),
            jitter=override(struct_hook=_jitter),
            retry_on=override(struct_hook=_retry_on),
        ),
    )
    converter.register_structure_hook(
        Connection, make_dict_structure_fn(Connection, converter, from_=override(rename="from"))
    )
    converter.register_unstructure_hook(
        Connection, make_dict_unstructure_fn(Connection, converter, from_=override(rename="from"))
    )
    # Settings added later are written only when set, so that a definition saved
    # before them keeps its hash.
    converter.register_unstructure_hook(
        WorkflowSettings,
        make_dict_unstructure_fn(
            WorkflowSettings,
            converter,
            concurrency_key=override(omit_if_default=True),
            concurrency_limit=override(omit_if_default=True),
            priority=override(omit_if_default=True),
        ),
    )
    return converter


_converter = _make_converter()


def _structure_part(
    value: object, cls: type[Any], path: str, problems: list[Problem]
) -> Any | None:
    if not isinstance(value, Mapping):
        problems.append(Problem(path=path, message=f"expected an object, got {type_name(value)}"))
        return None
    try:
        return _converter.structure(value, cls)
    except Exception as exc:  # cattrs reports everything as exception groups
        problems.extend(problems_from(exc, path))
        return None


_TOP_LEVEL = (
    "id",
    "version",
    "name",
    "description",
    "nodes",
    "connections",
    "settings",
    "variables",
)


@attrs.frozen(kw_only=True)
class LoadedDefinition:
    """The outcome of structuring: the usable parts and every problem found."""

    workflow: Workflow | None
    problems: tuple[Problem, ...]
    known_node_keys: frozenset[str]


def structure_workflow(document: object) -> LoadedDefinition:
    """Structure plain data into a :class:`Workflow`, collecting every problem.

    A node or connection that cannot be structured is reported and kept as what can
    be read of it (:func:`_salvaged_node`, :func:`_salvaged_connection`), in its
    place: the later checks then report its other problems (a duplicate key, an
    unknown action) at the right paths. What they find again where a problem was
    reported already is left out (:func:`new_problems`).
    """
    problems: list[Problem] = []
    if not isinstance(document, Mapping):
        problems.append(
            Problem(path="", message=f"a workflow must be an object, got {type_name(document)}")
        )
        return LoadedDefinition(
            workflow=None, problems=tuple(problems), known_node_keys=frozenset()
        )

    for key in document:
        if key not in _TOP_LEVEL:
            problems.append(
                Problem(
                    path=str(key),
                    message=f"unknown field{did_you_mean(str(key), _TOP_LEVEL)}; "
                    f"allowed fields are {', '.join(_TOP_LEVEL)}",
                )
            )

    def scalar(name: str, default: Any) -> Any:
        if name not in document:
            return default
        try:
            return _converter.structure(document[name], type(default))
        except (TypeError, ValueError) as exc:
            problems.append(Problem(path=name, message=str(exc)))
            return default

    workflow_id = scalar("id", "")
    version = scalar("version", 1)
    name = scalar("name", "")
    description = scalar("description", "")

    settings = WorkflowSettings()
    if "settings" in document:
        structured = _structure_part(document["settings"], WorkflowSettings, "settings", problems)
        settings = structured if structured is not None else settings

    variables: dict[str, Any] = {}
    if "variables" in document:
        raw_variables = document["variables"]
        if isinstance(raw_variables, Mapping):
            variables = dict(raw_variables)
        elif raw_variables is not None:
            problems.append(
                Problem(
                    path="variables", message=f"expected an object, got {type_name(raw_variables)}"
                )
            )

    nodes: list[Node] = []
    known_keys: set[str] = set()
    raw_nodes = document.get("nodes", [])
    if "nodes" not in document:
        problems.append(
            Problem(path="nodes", message="required field is missing; a workflow needs nodes")
        )
    elif not isinstance(raw_nodes, list):
        problems.append(
            Problem(path="nodes", message=f"expected a list, got {type_name(raw_nodes)}")
        )
        raw_nodes = []
    for index, raw_node in enumerate(raw_nodes):
        path = f"nodes[{index}]"
        if isinstance(raw_node, Mapping) and isinstance(raw_node.get("key"), str):
            known_keys.add(raw_node["key"])
        node = _structure_part(raw_node, Node, path, problems)
        nodes.append(node if node is not None else _salvaged_node(raw_node))

    connections: list[Connection] = []
    raw_connections = document.get("connections", [])
    if raw_connections is None:
        raw_connections = []
    if not isinstance(raw_connections, list):
        problems.append(
            Problem(
                path="connections", message=f"expected a list, got {type_name(raw_connections)}"
            )
        )
        raw_connections = []
    for index, raw_connection in enumerate(raw_connections):
        connection = _structure_part(raw_connection, Connection, f"connections[{index}]", problems)
        connections.append(
            connection if connection is not None else _salvaged_connection(raw_connection)
        )

    workflow = Workflow(
        id=workflow_id,
        version=version,
        name=name,
        description=description,
        nodes=tuple(nodes),
        connections=tuple(connections),
        settings=settings,
        variables=variables,
    )
    return LoadedDefinition(
        workflow=workflow, problems=tuple(problems), known_node_keys=frozenset(known_keys)
    )


def _text(raw: object, name: str, default: str = "") -> str:
    value = raw.get(name) if isinstance(raw, Mapping) else None
    return value if isinstance(value, str) else default


def _salvaged_node(raw: object) -> Node:
    """What can be read of a node that could not be structured: its key, type and
    parameters where they have the right types, default settings."""
    params = raw.get("params") if isinstance(raw, Mapping) else None
    return Node(
        key=_text(raw, "key"),
        type=_text(raw, "type"),
        name=_text(raw, "name"),
        params=dict(params) if isinstance(params, Mapping) else {},
    )


def _salvaged_connection(raw: object) -> Connection:
    """What can be read of a connection that could not be structured."""
    return Connection(
        from_=_text(raw, "from"),
        to=_text(raw, "to"),
        from_port=_text(raw, "from_port", DEFAULT_PORT),
        to_port=_text(raw, "to_port", DEFAULT_PORT),
    )


def new_problems(found: Iterable[Problem], reported: Iterable[Problem]) -> list[Problem]:
    """The problems of ``found`` not at or under a path of ``reported``: a part that
    could not be structured is reported once, not again by the checks of what was
    salvaged of it."""
    paths = {problem.path for problem in reported}
    if not paths:
        return list(found)

    def known(path: str) -> bool:
        while path:
            if path in paths:
                return True
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return False
            path = path[:cut]
        return False

    return [problem for problem in found if not known(problem.path)]


def workflow_to_dict(workflow: Workflow) -> dict[str, Any]:
    """Unstructure a workflow into the plain data of a workflow file."""
    data: dict[str, Any] = _converter.unstructure(workflow)
    return data


def load_workflow(
    source: WorkflowSource,
    *,
    actions: ActionRegistry | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Workflow:
    """Load and validate a workflow from a path, a dict, or JSON/YAML text.

    Without ``actions`` the definition is checked on its own (shape, types, keys,
    connections, loops, templates); with an :class:`ActionRegistry` it is also checked
    against the actions it uses (types, ports, parameters, triggers). The definition
    must be JSON data within ``limits`` (a YAML file's aliases included).

    Raises :class:`WorkflowValidationError` listing every problem with its path.
    """
    from ._validation import check_workflow

    document, problems, source_name = read_source(source, limits)
    if problems:
        raise WorkflowValidationError(problems, source=source_name)
    loaded = structure_workflow(document)
    problems = list(loaded.problems)
    if loaded.workflow is not None:
        found = check_workflow(loaded.workflow, actions, known_node_keys=loaded.known_node_keys)
        problems.extend(new_problems(found, loaded.problems))
    if problems or loaded.workflow is None:
        raise WorkflowValidationError(problems, source=source_name)
    return loaded.workflow
