"""What a template reads, found in its syntax tree when the workflow is loaded: the
nodes it refers to (``nodes.<key>``) and the output fields it reads of them
(``nodes.<key>.output.<field>``), for the checks of :mod:`prana._validation`."""

from __future__ import annotations

from jinja2 import nodes


def node_references(tree: nodes.Template) -> set[str]:
    """The keys of the nodes ``tree`` reads as ``nodes.<key>`` or ``nodes['key']``."""
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


def output_reads(tree: nodes.Template) -> set[tuple[str, str]]:
    """The ``(node, field)`` of each ``nodes.<node>.output.<field>`` in ``tree`` (in
    either spelling, ``.name`` or ``['name']``)."""
    found: set[tuple[str, str]] = set()
    for read in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(read, (nodes.Getattr, nodes.Getitem))
        node = _outputs_node(read.node)
        field = _name_read(read)
        if node is not None and field is not None:
            found.add((node, field))
    return found


def _name_read(expr: nodes.Node) -> str | None:
    """``name`` of ``x.name`` or ``x['name']``."""
    if isinstance(expr, nodes.Getattr):
        return expr.attr
    if (
        isinstance(expr, nodes.Getitem)
        and isinstance(expr.arg, nodes.Const)
        and isinstance(expr.arg.value, str)
    ):
        return expr.arg.value
    return None


def _outputs_node(expr: nodes.Node) -> str | None:
    """``x`` of ``nodes.x.output``."""
    if not isinstance(expr, (nodes.Getattr, nodes.Getitem)) or _name_read(expr) != "output":
        return None
    inner = expr.node
    if (
        isinstance(inner, (nodes.Getattr, nodes.Getitem))
        and isinstance(inner.node, nodes.Name)
        and inner.node.name == "nodes"
    ):
        return _name_read(inner)
    return None
