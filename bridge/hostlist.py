"""Slurm hostlist expressions (``elastic[1-3,7]``) through ClusterShell's NodeSet.

Slurm passes every hook a hostlist expression; we never expand or fold one by hand, and never
shell out to ``scontrol show hostnames`` (a process per call on the hook's critical path).
"""

from __future__ import annotations

from functools import lru_cache

from ClusterShell.NodeSet import NodeSet, NodeSetException

from bridge.errors import UsageError


@lru_cache(maxsize=64)
def _parse(expression: str) -> NodeSet:
    if not expression or not expression.strip():
        raise UsageError("empty hostlist")
    if any(c.isspace() for c in expression.strip()):
        raise UsageError(f"malformed hostlist {expression!r}: whitespace inside")
    try:
        return NodeSet(expression.strip())
    except (NodeSetException, ValueError, IndexError) as e:
        raise UsageError(f"malformed hostlist {expression!r}: {e}") from None


def expand(expression: str) -> list[str]:
    """Node names of a hostlist expression, in Slurm's order.

    Raises:
        UsageError: the expression is empty or malformed.
    """
    return list(_parse(expression))


def fold(nodes: list[str] | set[str]) -> str:
    """The shortest hostlist expression for ``nodes`` (``elastic[1-3]``)."""
    return str(NodeSet.fromlist(sorted(nodes))) if nodes else ""


def check(expression: str) -> None:
    """Raise :class:`UsageError` if ``expression`` is not a hostlist; expands nothing."""
    _parse(expression)


def contains(expression: str, node: str) -> bool:
    """Whether ``node`` is one of the expression's nodes."""
    return node in _parse(expression)
