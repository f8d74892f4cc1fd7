"""Replacing values while keeping graph output names stable.

When a pass replaces value ``old`` by an equivalent ``new`` (an Identity's output by its input, a
duplicate node's output by the original's), the users of ``old`` simply switch to ``new``. If
``old`` is a graph output, its *name* is part of the model's interface and must survive, so
``new`` takes over that name, which is only possible when ``new`` is an ordinary intermediate
value of the same graph: not an input, output or initializer of any graph, and not defined in
an enclosing scope. Otherwise keeping the name would need an extra Identity node; the helpers
here report that case (``can_replace`` is False) and leave the caller to skip the rewrite.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

__all__ = ["can_replace", "replace_values"]


def _can_take_name(value: ir.Value, graph: ir.Graph | None) -> bool:
    producer = value.producer()
    return (
        producer is not None
        and graph is not None
        and producer.graph is graph
        and not value.is_graph_input()
        and not value.is_graph_output()
        and not value.is_initializer()
    )


def can_replace(olds: Sequence[ir.Value], news: Sequence[ir.Value | None]) -> bool:
    """Whether every ``old`` can be replaced by its ``new`` without an extra node.

    A missing ``new`` (None) is only acceptable for an ``old`` that nothing uses.
    """
    taken: set[int] = set()
    for old, new in zip(olds, news):
        if new is None:
            if old.uses() or old.is_graph_output():
                return False
            continue
        if old.is_graph_output():
            if not _can_take_name(new, old.graph) or id(new) in taken:
                return False
            taken.add(id(new))
    return True


def replace_values(olds: Sequence[ir.Value], news: Sequence[ir.Value | None]) -> None:
    """Points every use of each ``old`` (graph outputs included) at its ``new``.

    Graph outputs keep their names and declared types: ``new`` is renamed to ``old``'s name and
    takes its type and shape annotations. Call :func:`can_replace` first; the producer of the
    ``olds`` is left in place for the caller to remove.
    """
    for old, new in zip(olds, news):
        if new is None or new is old:
            continue
        if old.is_graph_output():
            name = old.name
            old.name = None
            new.name = name
            if old.type is not None:
                new.type = old.type
            if old.shape is not None:
                new.shape = old.shape
            old.replace_all_uses_with(new, replace_graph_outputs=True)
        else:
            if new.producer() is not None:
                # Both name the same tensor; keep whatever the old value knew about it.
                if new.type is None:
                    new.type = old.type
                if new.shape is None and old.shape is not None:
                    new.shape = old.shape
            old.replace_all_uses_with(new)
