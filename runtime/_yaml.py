"""Workflow definitions written in YAML, parsed strictly: a duplicate key is a
problem, only true and false are booleans (not yes, no, on, off), no timestamps,
and aliases may not expand past ``Limits.yaml_values``.

Imported only when a definition is YAML: PyYAML is not needed to load JSON or data.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from ._errors import Problem
from ._limits import Limits


class _StrictYamlLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys and resolves only true/false as booleans."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems: list[Problem] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys
            line = key_node.start_mark.line + 1
            if key in seen:
                self.problems.append(
                    Problem(
                        path=f"line {line}",
                        message=f"duplicate key {key!r} (first given on line {seen[key]}); "
                        "remove one of them",
                    )
                )
            else:
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _strict_resolvers() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
    dropped = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"}
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = [(tag, regexp) for tag, regexp in entries if tag not in dropped]
        if kept:
            resolvers[first] = kept
    boolean = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
    for first in "tTfF":
        resolvers.setdefault(first, []).append(("tag:yaml.org,2002:bool", boolean))
    return resolvers


_StrictYamlLoader.yaml_implicit_resolvers = _strict_resolvers()


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many values ``root`` stands for once every alias is written out in full;
    stops counting past ``limit``. An alias is the same node met again, so each
    node's size is worked out once."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted_children = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if counted_children:
            sizes[id(node)] = min(limit + 1, 1 + sum(sizes[id(child)] for child in children))
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def parse_yaml(text: str, limits: Limits) -> tuple[object, list[Problem]]:
    loader = _StrictYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        if _expanded_size(node, limits.yaml_values) > limits.yaml_values:
            return None, [
                Problem(
                    path="",
                    message=f"its aliases (&name and *name) expand to more than "
                    f"{limits.yaml_values} values (Limits.yaml_values); write the values "
                    "out, or use fewer nested aliases",
                )
            ]
        document = loader.construct_document(node)
    except RecursionError:
        return None, [Problem(path="", message="invalid YAML: it nests too deeply")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return None, [Problem(path=where, message=f"invalid YAML: {what}")]
    except yaml.YAMLError as exc:
        return None, [Problem(path="", message=f"invalid YAML: {exc}")]
    finally:
        loader.dispose()
    return document, loader.problems
