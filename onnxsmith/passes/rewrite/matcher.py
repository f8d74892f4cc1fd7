"""Matching a pattern at a root node: backtracking search over commutative input orders.

The search walks the pattern from its root ``Op`` towards the leaves, following each value to its
producer. Bindings (names -> values, ``Op`` patterns -> nodes) are made on the way down and undone on
the way back, so every alternative (each input order of a commutative node) starts clean; a
non-linear pattern (one ``Var`` name in two places, one ``Op`` object in two places) must bind the
same value or node everywhere.

A structural match is then refused when one of its *intermediate* nodes (any matched node but the
root) has an output that is a graph output or is read by anything other than the pattern edges
that matched it, because rewriting would have to keep that node alive (opt in with
``allow_shared_intermediates``). Every way the search stops is recorded as a :class:`Failure`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite.attributes import (
    MISSING,
    attribute_equals,
    attribute_value,
)
from onnxsmith.passes.rewrite.constants import (
    constant_array,
    constant_dtype,
    constant_shape,
    non_constant_reason,
)
from onnxsmith.passes.rewrite.failure import SHARED_PROGRESS, Failure, Reason
from onnxsmith.passes.rewrite.match import Match
from onnxsmith.passes.rewrite.pattern import (
    Const,
    InputPattern,
    Op,
    Opt,
    OutputOf,
    ValuePattern,
    Var,
    pattern_elements,
)

__all__ = ["MatchSearch"]

#: Failures kept per progress level (alternatives failing alike add nothing).
_MAX_FAILURES = 8

#: How far into the checks of one pattern element a failure happened: a failing value check on a
#: constant says more than "not a constant", a failing attribute more than a wrong op type.
_STAGE = {
    Reason.OP_TYPE: 0, Reason.SCOPE: 0, Reason.NOT_CONSTANT: 0, Reason.ABSENT_INPUT: 0,
    Reason.ATTRIBUTE: 1, Reason.CONST_SHAPE: 1,
    Reason.ARITY: 2, Reason.DTYPE: 2,
    Reason.CONST_VALUE: 3, Reason.PREDICATE: 3, Reason.BINDING: 3,
}
_STAGES = 4


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _types(dtypes: frozenset[ir.DataType]) -> str:
    return " or ".join(sorted(str(d) for d in dtypes))


class MatchSearch:
    """One attempt to match ``pattern`` at ``root``; iterate it for the matches, in a fixed order.

    Args:
        pattern: The rule's pattern (rooted at an ``Op``).
        root: The candidate root node.
        rule_name: For error messages and the ``Match``.
        allow_shared: Accept intermediates that are used outside the match.
        opsets: Opset imports where ``root`` lies (for attribute defaults).
    """

    def __init__(self, pattern: ValuePattern, root: ir.Node, *, rule_name: str, allow_shared: bool,
                 opsets: Mapping[str, int]) -> None:
        assert isinstance(pattern, (Op, OutputOf))
        self._root_op = pattern if isinstance(pattern, Op) else pattern.op
        self._root = root
        self._graph = root.graph
        self._rule_name = rule_name
        self._allow_shared = allow_shared
        self._opsets = opsets
        self._values: dict[str, ir.Value | None] = {}
        self._node_names: dict[str, ir.Node | None] = {}
        self._ops: dict[Op, ir.Node] = {}
        self._edges: list[tuple[ir.Node, int]] = []
        self._const_nodes: list[ir.Node] = []
        self._progress = 0
        self._best = -1
        #: The failures that got furthest (see ``failure``), in the order they happened.
        self.failures: list[Failure] = []

    def record(self, failure: Failure) -> None:
        """Keeps ``failure`` if it got at least as far as the best ones so far."""
        if failure.progress > self._best:
            self._best = failure.progress
            self.failures = [failure]
        elif failure.progress == self._best and len(self.failures) < _MAX_FAILURES and failure not in self.failures:
            self.failures.append(failure)

    def _fail(self, reason: Reason, template: str, *args: object) -> None:
        self.record(Failure(self._progress * _STAGES + _STAGE[reason], reason, template, args))

    def __iter__(self) -> Iterator[Match]:
        for _ in self._match_node(self._root_op, self._root, None):
            nodes = tuple(dict.fromkeys(self._ops.values()))
            if not self._allow_shared and self._escapes(nodes):
                continue
            yield Match(self._rule_name, self._root, self._values, self._node_names, nodes,
                        tuple(dict.fromkeys(self._const_nodes)), self._opsets)

    # -- structure -------------------------------------------------------------------------------

    def _match_node(self, p: Op, node: ir.Node, via: tuple[ir.Node, int] | None) -> Iterator[None]:
        bound = self._ops.get(p)
        if bound is not None:
            if bound is node:
                yield
            else:
                self._fail(Reason.BINDING, "{} and {} must be the same node (one pattern node)", bound, node)
            return
        domain = "" if node.domain == "ai.onnx" else node.domain
        if node.op_type not in p.op_types or domain != p.domain:
            expected = f"{p.domain}::{p.label}" if p.domain else p.label
            if via is None:
                self._fail(Reason.OP_TYPE, "{} is not {}", node, expected)
            else:
                self._fail(Reason.OP_TYPE, "input {} of {} is produced by {}, expected {}", via[1], via[0], node,
                           expected)
            return
        if not self._attributes_ok(p, node):
            return
        values: list[ir.Value | None] = list(node.inputs)
        while values and values[-1] is None:
            values.pop()
        if len(values) > len(p.inputs):
            self._fail(Reason.ARITY, "{} has {} inputs, the pattern expects at most {}", node, len(values),
                       len(p.inputs))
            return
        values += [None] * (len(p.inputs) - len(values))
        self._ops[p] = node
        if p.name is not None:
            self._node_names[p.name] = node
        self._progress += 1
        try:
            for order in p.orders:
                yield from self._match_inputs(p, order, node, values, 0)
        finally:
            self._progress -= 1
            del self._ops[p]
            if p.name is not None:
                del self._node_names[p.name]

    def _attributes_ok(self, p: Op, node: ir.Node) -> bool:
        for name, expected in p.attributes.items():
            actual = attribute_value(node, name, self._opsets)
            if callable(expected):
                if not expected(None if actual is MISSING else actual):
                    self._fail(Reason.ATTRIBUTE, "attribute '{}' of {} is {}, which fails {}", name, node,
                               _short(actual), getattr(expected, "__name__", repr(expected)))
                    return False
            elif not attribute_equals(actual, expected):
                self._fail(Reason.ATTRIBUTE, "attribute '{}' of {} is {}, expected {}", name, node, _short(actual),
                           _short(expected))
                return False
        return True

    def _match_inputs(self, p: Op, order: tuple[int, ...], node: ir.Node, values: list[ir.Value | None],
                      j: int) -> Iterator[None]:
        if j == len(order):
            yield
            return
        for _ in self._match_input(p.inputs[order[j]], values[j], node, j):
            yield from self._match_inputs(p, order, node, values, j + 1)

    def _match_input(self, q: InputPattern, value: ir.Value | None, consumer: ir.Node, j: int) -> Iterator[None]:
        if isinstance(q, Opt):
            if value is None:
                yield from self._bind_absent(q.pattern)
            else:
                yield from self._match_input(q.pattern, value, consumer, j)
            return
        if value is None:
            self._fail(Reason.ABSENT_INPUT, "input {} of {} is absent", j, consumer)
        elif isinstance(q, Var):
            yield from self._match_var(q, value)
        elif isinstance(q, Const):
            yield from self._match_const(q, value, consumer, j)
        elif isinstance(q, Op):
            yield from self._match_producer(q, 0, value, consumer, j)
        else:
            yield from self._match_producer(q.op, q.index, value, consumer, j)

    def _match_producer(self, p: Op, index: int, value: ir.Value, consumer: ir.Node, j: int) -> Iterator[None]:
        producer = value.producer()
        if producer is None:
            what = "an initializer" if value.is_initializer() else "a graph input"
            self._fail(Reason.OP_TYPE, "input {} of {} ({}) is {}, expected the output of {}", j, consumer, value,
                       what, p.label)
            return
        if producer.graph is not self._graph:
            self._fail(Reason.SCOPE, "input {} of {} ({}) is computed in an enclosing graph", j, consumer, value)
            return
        if value.index() != index:
            self._fail(Reason.OP_TYPE, "input {} of {} is output {} of {}, expected output {}", j, consumer,
                       value.index(), producer, index)
            return
        self._edges.append((consumer, j))
        try:
            yield from self._match_node(p, producer, (consumer, j))
        finally:
            self._edges.pop()

    # -- leaves ----------------------------------------------------------------------------------

    def _match_var(self, q: Var, value: ir.Value) -> Iterator[None]:
        if q.dtypes is not None and value.dtype not in q.dtypes:
            self._fail(Reason.DTYPE, "{} has type {}, expected {}", value, value.dtype or "unknown", _types(q.dtypes))
            return
        if q.where is not None and not q.where(value):
            self._fail(Reason.PREDICATE, "{} fails {}", value, getattr(q.where, "__name__", repr(q.where)))
            return
        yield from self._bind(q.name, value, informative=False)

    def _match_const(self, q: Const, value: ir.Value, consumer: ir.Node, j: int) -> Iterator[None]:
        reason = non_constant_reason(value)
        if reason is not None:
            self._fail(Reason.NOT_CONSTANT, "input {} of {} ({}) {}", j, consumer, value, reason)
            return
        violation = q.shape.violation(constant_shape(value))
        if violation is not None:
            self._fail(Reason.CONST_SHAPE, "constant {} {}", value, violation)
            return
        if q.dtypes is not None and constant_dtype(value) not in q.dtypes:
            self._fail(Reason.DTYPE, "constant {} has type {}, expected {}", value, constant_dtype(value),
                       _types(q.dtypes))
            return
        if q.value is not None or q.where is not None:
            array = constant_array(value)
            if q.value is not None and not (array.size > 0 and bool(np.all(array == q.value))):
                self._fail(Reason.CONST_VALUE, "constant {} is not {} everywhere", value, q.value)
                return
            if q.where is not None and not q.where(array):
                self._fail(Reason.PREDICATE, "constant {} fails {}", value, getattr(q.where, "__name__", repr(q.where)))
                return
        producer = value.producer()
        if producer is not None:
            self._const_nodes.append(producer)
        try:
            yield from self._bind(q.name, value)
        finally:
            if producer is not None:
                self._const_nodes.pop()

    def _bind(self, name: str | None, value: ir.Value | None, *, informative: bool = True) -> Iterator[None]:
        """Binds ``name`` to ``value`` (or checks an earlier binding) while the caller's match holds.

        Progress counts informative matches only: a plain ``Var`` accepts anything, so a failure
        after it is not "further" than one before it.
        """
        step = 1 if informative else 0
        if name is not None and name in self._values:
            if self._values[name] is value:
                self._progress += step
                yield
                self._progress -= step
            else:
                self._fail(Reason.BINDING, "'{}' is already bound to {}, but here it would be {}", name,
                           self._values[name], value)
            return
        if name is not None:
            self._values[name] = value
        self._progress += step
        try:
            yield
        finally:
            self._progress -= step
            if name is not None:
                del self._values[name]

    def _bind_absent(self, q: ValuePattern) -> Iterator[None]:
        """Binds every name inside an absent optional input to None."""
        names = [p.name for p in pattern_elements(q) if p.name is not None]
        clash = [n for n in names if self._values.get(n) is not None or self._node_names.get(n) is not None]
        if clash:
            self._fail(Reason.BINDING, "'{}' is bound to {} elsewhere, but its optional input is absent here",
                       clash[0], self._values.get(clash[0]) or self._node_names.get(clash[0]))
            return
        new = [n for n in names if n not in self._values and n not in self._node_names]
        for p in pattern_elements(q):
            if p.name in new:
                (self._node_names if isinstance(p, Op) else self._values)[p.name] = None
        self._progress += 1
        try:
            yield
        finally:
            self._progress -= 1
            for n in new:
                self._values.pop(n, None)
                self._node_names.pop(n, None)

    # -- sharing ---------------------------------------------------------------------------------

    def _escapes(self, nodes: tuple[ir.Node, ...]) -> bool:
        """Records and returns True if an intermediate value is used outside the match."""
        edges = set(self._edges)
        for node in nodes:
            if node is self._root:
                continue
            for out in node.outputs:
                if out.is_graph_output():
                    self.record(Failure(SHARED_PROGRESS, Reason.SHARED_INTERMEDIATE,
                                        "value {} of {} is a graph output", (out, node)))
                    return True
                if any((use.node, use.idx) not in edges for use in out.uses()):
                    n = len(out.consumers())
                    self.record(Failure(SHARED_PROGRESS, Reason.SHARED_INTERMEDIATE,
                                        "value {} of {} is used outside the match ({})",
                                        (out, node, f"{n} consumer" if n == 1 else f"{n} consumers")))
                    return True
        return False
