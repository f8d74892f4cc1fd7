"""The pattern language: a subgraph described with Python constructors.

A pattern is a DAG of four kinds of elements, each standing for one value of the graph:

- ``Var("x")``: any value; the name captures it. Every ``Var`` with the same name must bind to the
  same value (``Mul(Var("x"), Op("Sigmoid", Var("x")))`` is SiLU). ``Var()`` matches anything
  without capturing. Optional ``dtype=`` (one type or a collection) and ``where=`` (a predicate on
  the ``ir.Value``).
- ``Const("w", shape=ShapePolicy.PER_CHANNEL)``: a constant (see ``constants``) whose shape obeys
  the stated policy; ``dtype=``, ``value=`` (every element equals it) and ``where=`` (a predicate
  on the numpy array) are optional; the last two read the data.
- ``Op("MatMul", a, b, transB=0)``: the first output of a node with that op type (or any of a set
  of op types) in ``_domain`` (default ONNX), whose inputs match the input patterns in order and
  whose attributes equal the given values or satisfy the given predicates (absent attributes take
  the schema default). ``_name="mm"`` captures the node. ``op.output(i)`` stands for output ``i``;
  using the same ``Op`` object twice means the same node.
- ``Opt(p)``, only as an input of an ``Op``: the input may be absent (missing or empty); if present
  it must match ``p``. When absent, the names inside ``p`` capture ``None``.

A node must not have more inputs than its pattern lists. Commutative ONNX operators
(:data:`COMMUTATIVE_OPS`) match their inputs in any order unless ``_commutative=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from itertools import permutations
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite.shape_policy import ShapePolicy

__all__ = [
    "COMMUTATIVE_OPS",
    "Const",
    "InputPattern",
    "Op",
    "Opt",
    "OutputOf",
    "ValuePattern",
    "Var",
    "pattern_edges",
    "pattern_elements",
    "pattern_height",
    "required_op_types",
    "validate_pattern",
]

#: ONNX operators (default domain) whose result does not depend on the order of their inputs.
COMMUTATIVE_OPS = frozenset({
    "Add", "Mul", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor", "Equal",
    "BitwiseAnd", "BitwiseOr", "BitwiseXor",
})

#: Commutative matching tries every input order; beyond this many inputs that is too costly.
MAX_COMMUTATIVE_INPUTS = 6


def _dtypes(dtype: ir.DataType | Collection[ir.DataType] | None) -> frozenset[ir.DataType] | None:
    if dtype is None:
        return None
    if isinstance(dtype, ir.DataType):
        return frozenset({dtype})
    return frozenset(dtype)


def _predicate_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", repr(fn))


class Var:
    """Any value, captured under ``name`` (see the module docstring)."""

    __slots__ = ("dtypes", "name", "where")

    def __init__(self, name: str | None = None, *, dtype: ir.DataType | Collection[ir.DataType] | None = None,
                 where: Callable[[ir.Value], bool] | None = None) -> None:
        self.name = name
        self.dtypes = _dtypes(dtype)
        self.where = where

    def __repr__(self) -> str:
        return self.name or "_"


class Const:
    """A constant value with an explicit shape policy (see the module docstring)."""

    __slots__ = ("dtypes", "name", "shape", "value", "where")

    def __init__(self, name: str | None = None, *, shape: ShapePolicy,
                 dtype: ir.DataType | Collection[ir.DataType] | None = None,
                 value: float | int | bool | None = None,
                 where: Callable[[np.ndarray], bool] | None = None) -> None:
        if not isinstance(shape, ShapePolicy):
            raise TypeError(f"Const {name!r}: shape must be a ShapePolicy (e.g. ShapePolicy.SCALAR), got {shape!r}")
        self.name = name
        self.shape = shape
        self.dtypes = _dtypes(dtype)
        self.value = value
        self.where = where

    def __repr__(self) -> str:
        return f"{self.name or 'const'}:{self.shape}"


class Op:
    """A node (its first output, or ``.output(i)``) with constrained type, inputs and attributes.

    Args:
        op_type: Op type, or a collection of alternatives.
        *inputs: Input patterns in order; ``Opt(...)`` for inputs that may be absent.
        _domain: Operator domain (``""`` is ONNX; ``"ai.onnx"`` is the same domain).
        _name: Captures the node under this name (``Match.node``).
        _commutative: Match inputs in any order; default: True for :data:`COMMUTATIVE_OPS`.
        **attributes: Expected attribute values, or predicates on the value. An absent attribute
            has its schema default; with no default it equals nothing and predicates get None.
    """

    __slots__ = ("attributes", "commutative", "domain", "inputs", "label", "name", "op_types", "orders")

    def __init__(self, op_type: str | Collection[str], *inputs: InputPattern, _domain: str = "",
                 _name: str | None = None, _commutative: bool | None = None, **attributes: Any) -> None:
        self.op_types = frozenset({op_type} if isinstance(op_type, str) else op_type)
        if not self.op_types:
            raise ValueError("Op needs at least one op type")
        #: The op type(s) as text: ``MatMul`` or ``LeakyRelu|Relu``.
        self.label = "|".join(sorted(self.op_types))
        for p in inputs:
            if not isinstance(p, (Var, Const, Op, OutputOf, Opt)):
                raise TypeError(f"inputs of Op({self.label}) must be patterns, got {p!r}")
        self.inputs: tuple[InputPattern, ...] = inputs
        self.domain = "" if _domain == "ai.onnx" else _domain
        self.name = _name
        self.attributes: dict[str, Any] = dict(attributes)
        if _commutative is None:
            _commutative = self.domain == "" and self.op_types <= COMMUTATIVE_OPS and len(inputs) > 1
        if _commutative and len(inputs) > MAX_COMMUTATIVE_INPUTS:
            raise ValueError(f"commutative Op({self.label}) with {len(inputs)} inputs: at most "
                             f"{MAX_COMMUTATIVE_INPUTS} are matched in any order; pass _commutative=False")
        self.commutative = bool(_commutative)
        #: The input orders the matcher tries: the given one, or every distinct permutation if commutative.
        self.orders = _input_orders(inputs) if self.commutative else (tuple(range(len(inputs))),)

    def output(self, index: int) -> OutputOf:
        """The pattern for output ``index`` of this node."""
        return OutputOf(self, index)

    def __repr__(self) -> str:
        args = [repr(p) for p in self.inputs]
        args += [f"{k}={_predicate_name(v) if callable(v) else v!r}" for k, v in self.attributes.items()]
        prefix = f"{self.domain}::" if self.domain else ""
        return f"{prefix}{self.label}({', '.join(args)})"


def _input_orders(inputs: tuple[InputPattern, ...]) -> tuple[tuple[int, ...], ...]:
    """Every permutation of ``inputs`` that gives a distinct sequence of pattern objects, in
    ``itertools.permutations`` order."""
    seen: set[tuple[int, ...]] = set()
    orders = []
    for order in permutations(range(len(inputs))):
        key = tuple(id(inputs[i]) for i in order)
        if key not in seen:
            seen.add(key)
            orders.append(order)
    return tuple(orders)


class OutputOf:
    """Output ``index`` of the node matched by ``op``."""

    __slots__ = ("index", "op")

    def __init__(self, op: Op, index: int) -> None:
        if index < 0:
            raise ValueError(f"output index must be >= 0, got {index}")
        self.op = op
        self.index = index

    def __repr__(self) -> str:
        return f"{self.op!r}.output({self.index})"


class Opt:
    """An input that may be absent; if present it must match ``pattern``."""

    __slots__ = ("pattern",)

    def __init__(self, pattern: ValuePattern) -> None:
        if not isinstance(pattern, (Var, Const, Op, OutputOf)):
            raise TypeError(f"Opt wraps a value pattern, got {pattern!r}")
        self.pattern = pattern

    def __repr__(self) -> str:
        return f"{self.pattern!r}?"


ValuePattern = Var | Const | Op | OutputOf
InputPattern = ValuePattern | Opt


def pattern_elements(root: ValuePattern) -> Iterator[Var | Const | Op]:
    """Every Var, Const and Op of the pattern once, root first, depth first."""
    seen: set[int] = set()
    stack: list[InputPattern] = [root]
    while stack:
        p = stack.pop()
        while isinstance(p, (Opt, OutputOf)):
            p = p.pattern if isinstance(p, Opt) else p.op
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield p
        if isinstance(p, Op):
            stack.extend(reversed(p.inputs))


def pattern_height(root: ValuePattern) -> int:
    """Number of Op levels on the longest path from the root (a single Op has height 1)."""
    memo: dict[int, int] = {}

    def height(p: InputPattern) -> int:
        while isinstance(p, (Opt, OutputOf)):
            p = p.pattern if isinstance(p, Opt) else p.op
        if not isinstance(p, Op):
            return 0
        if id(p) not in memo:
            memo[id(p)] = 1 + max((height(q) for q in p.inputs), default=0)
        return memo[id(p)]

    return height(root)


def pattern_edges(root: ValuePattern) -> int:
    """Number of Op inputs in the pattern: at most this many uses of a value can be inside a match."""
    return sum(len(p.inputs) for p in pattern_elements(root) if isinstance(p, Op))


def required_op_types(root: ValuePattern) -> tuple[frozenset[tuple[str, str]], ...]:
    """Per ``Op`` that every match binds (all but those inside an ``Opt``), its ``(domain, op_type)``
    alternatives, in ``pattern_elements`` order: a graph without a node of one of them has no match."""
    seen: set[int] = set()
    required: list[frozenset[tuple[str, str]]] = []
    stack: list[InputPattern] = [root]
    while stack:
        p = stack.pop()
        if isinstance(p, Opt):
            continue
        if isinstance(p, OutputOf):
            p = p.op
        if not isinstance(p, Op) or id(p) in seen:
            continue
        seen.add(id(p))
        required.append(frozenset((p.domain, op_type) for op_type in p.op_types))
        stack.extend(reversed(p.inputs))
    return tuple(required)


def validate_pattern(root: ValuePattern) -> None:
    """Raises ValueError for a pattern that cannot be a rule's pattern.

    The root must be an ``Op`` (or one of its outputs); a name captures either values (``Var``,
    ``Const``) or one node (``Op``), never both.
    """
    if not isinstance(root, (Op, OutputOf)):
        raise ValueError(f"a rule's pattern must be rooted at an Op, got {root!r}")
    value_names: dict[str, type] = {}
    node_names: dict[str, Op] = {}
    for p in pattern_elements(root):
        if p.name is None:
            continue
        if isinstance(p, Op):
            if p.name in value_names or node_names.get(p.name, p) is not p:
                raise ValueError(f"pattern name '{p.name}' is used for more than one element")
            node_names[p.name] = p
        else:
            kind = value_names.setdefault(p.name, type(p))
            if p.name in node_names or kind is not type(p):
                raise ValueError(f"pattern name '{p.name}' is used for elements of different kinds")
