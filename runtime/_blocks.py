"""The routing state of a large workflow, kept in blocks (decision 0040).

Three parts of the routing state have an entry per node or per edge: the nodes'
states (``nodes``, a digit each), the edges (``edges``, the run that sent on each)
and the nodes' run counts (``run_counts``). In a workflow of at most ``BLOCK`` nodes
and ``BLOCK`` edges they stay in the checkpoint's ``active_paths``, rewritten with
every step. In a larger one they are cut into blocks of ``BLOCK`` entries, block
``k`` holding nodes and edges ``k * BLOCK`` to ``(k + 1) * BLOCK - 1``, and a step
saves only the blocks it changed: what a step writes stays the same however large
the workflow is. ``active_paths`` then says ``"format": 3`` and how many blocks
there are; a store keeps the last of each block beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BLOCK_BITS = 6
BLOCK = 1 << BLOCK_BITS  # nodes and edges per block
WHOLE_FORMAT = 2  # the routing state with every entry in ``active_paths``
BLOCKED_FORMAT = 3  # the same, with the per-node and per-edge entries in blocks


def block_count(nodes: int, edges: int) -> int:
    """How many blocks a workflow's routing state takes; 0 if it is small enough to
    stay whole in ``active_paths``."""
    if nodes <= BLOCK and edges <= BLOCK:
        return 0
    return (max(nodes, edges) + BLOCK - 1) >> BLOCK_BITS


def joined(paths: Mapping[str, Any], blocks: Mapping[int, Any]) -> dict[str, Any]:
    """``paths`` with its blocks put back in (as a small workflow's routing state
    holds them); a copy of ``paths`` if it has none. Raises :class:`KeyError` for a
    missing block."""
    if paths.get("format") != BLOCKED_FORMAT:
        return dict(paths)
    whole = {key: value for key, value in paths.items() if key != "blocks"}
    whole["format"] = WHOLE_FORMAT
    parts = [blocks[number] for number in range(paths["blocks"])]
    whole["nodes"] = "".join(part["nodes"] for part in parts)
    whole["edges"] = tuple(edge for part in parts for edge in part["edges"])
    whole["run_counts"] = tuple(count for part in parts for count in part["run_counts"])
    return whole
