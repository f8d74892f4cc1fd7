"""A model under construction by the random-model strategies.

The draft keeps a pool of *operands*: values with their element type, concrete shape (ints, or
the symbolic batch dimension ``"N"``), an interval ``[lo, hi]`` bounding every element for inputs
in the generated range, and whether the value is computed from constants only. Op generators pick
operands from the pool (or create fresh inputs, weights or Constant nodes), append nodes and add
their outputs to the pool. Intervals follow interval arithmetic, so a generator can refuse an op
that could overflow or that needs a positive or non-zero operand.

A step that turns out too large is rolled back (:meth:`ModelDraft.checkpoint` /
:meth:`ModelDraft.rollback`), so ``max_nodes`` is a hard bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
import onnx
import onnx_ir as ir
from hypothesis import strategies as st

from onnxsmith.ir.builder import GraphBuilder

__all__ = ["BATCH", "Decline", "Dim", "Draw", "ModelDraft", "Operand", "broadcast", "span"]

T = TypeVar("T")
#: The ``draw`` function of a hypothesis composite strategy.
Draw = Callable[[st.SearchStrategy[T]], T]
#: A dimension: a concrete size or the symbolic batch dimension.
Dim = int | str

#: Name of the one symbolic dimension generated models use.
BATCH = "N"
#: Generated float inputs are standard normal: |x| stays below this in practice.
INPUT_BOUND = 4.0
#: Integer inputs are drawn from ``[0, INT_INPUT_HIGH]`` (matches ``generate_inputs``).
INT_INPUT_HIGH = 3
#: No value may be bounded by more than this in magnitude (keeps float error meaningful).
LIMIT = 100.0

FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE})
INT_TYPES = frozenset({ir.DataType.INT32, ir.DataType.INT64})


class Decline(Exception):
    """Raised by an op generator that cannot apply here; the step is rolled back."""


@dataclass(frozen=True)
class Operand:
    """A value in the pool and what the generator knows about it."""

    value: ir.Value
    dtype: ir.DataType
    shape: tuple[Dim, ...]
    lo: float
    hi: float
    constant: bool

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def bound(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    @property
    def static(self) -> bool:
        """True when every dimension is concrete."""
        return all(isinstance(d, int) for d in self.shape)


def broadcast(a: Sequence[Dim], b: Sequence[Dim]) -> tuple[Dim, ...] | None:
    """Numpy-style broadcast of two shapes; None when they are incompatible.

    A symbolic dimension only matches itself or 1 (its runtime size is unknown).
    """
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(reversed(out))


@dataclass
class _Checkpoint:
    nodes: int
    inputs: int
    initializers: int
    pool: int
    dead: int


class ModelDraft:
    """Accumulates inputs, weights and nodes; builds the final ``ir.Model``.

    Args:
        draw: The hypothesis draw function (all choices go through it, so examples shrink).
        opset: Default-domain opset version.
        dtypes: Element types inputs and weights may have.
        ops: The op vocabulary (used to decide whether Constant nodes may appear).
        max_inputs: Most graph inputs the model may have.
        dynamic: Whether new inputs may have the symbolic batch dimension.
    """

    def __init__(self, draw: Draw, *, opset: int, dtypes: Sequence[ir.DataType], ops: frozenset[str],
                 max_inputs: int, dynamic: bool) -> None:
        self.draw = draw
        self.opset = opset
        self.dtypes = tuple(dtypes)
        self.ops = ops
        self.max_inputs = max_inputs
        self.dynamic = dynamic
        ir_version = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
        self.builder = GraphBuilder(opset=opset, ir_version=max(ir_version, 7))
        self.pool: list[Operand] = []
        self.dead: list[Operand] = []
        self.constant_only = False
        self._rng = np.random.default_rng(draw(st.integers(0, 255)))
        self._names = 0

    # -- steps and rollback ------------------------------------------------------------------
    @property
    def node_count(self) -> int:
        return len(self.builder.nodes)

    def checkpoint(self) -> _Checkpoint:
        b = self.builder
        return _Checkpoint(len(b.nodes), len(b.inputs), len(b.initializers), len(self.pool), len(self.dead))

    def rollback(self, cp: _Checkpoint) -> None:
        """Forgets everything added since ``cp`` (detaching the nodes from their inputs)."""
        b = self.builder
        for node in b.nodes[cp.nodes:]:
            _detach(node)
        del b.nodes[cp.nodes:], b.inputs[cp.inputs:], b.initializers[cp.initializers:]
        del self.pool[cp.pool:], self.dead[cp.dead:]

    # -- choices -----------------------------------------------------------------------------
    def choice(self, options: Sequence[T]) -> T:
        """One of ``options`` (shrinks towards the first)."""
        return self.draw(st.sampled_from(list(options)))

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def flag(self) -> bool:
        return self.draw(st.booleans())

    def dims(self, rank: int, *, lo: int = 1, hi: int = 4) -> tuple[int, ...]:
        return tuple(self.integer(lo, hi) for _ in range(rank))

    def shape(self, *, min_rank: int = 1, max_rank: int = 4) -> tuple[Dim, ...]:
        """A fresh shape; the first dimension may be the symbolic batch dimension."""
        shape: tuple[Dim, ...] = self.dims(self.integer(min_rank, max_rank))
        if shape and self.dynamic and self.flag():
            shape = (BATCH, *shape[1:])
        return shape

    # -- operands ----------------------------------------------------------------------------
    def pick(self, accept: Callable[[Operand], bool], make: Callable[[], Operand] | None = None) -> Operand:
        """An operand from the pool that ``accept``s, or a new one from ``make``.

        Raises:
            Decline: Nothing in the pool fits and ``make`` is None.
        """
        found = [o for o in self.pool if accept(o) and (o.constant or not self.constant_only)]
        found.sort(key=lambda o: o.constant)  # values computed from inputs first: shrinks towards them
        if make is not None and (not found or self.integer(0, len(found)) == len(found)):
            return make()
        if not found:
            raise Decline
        return self.choice(found)

    def fresh(self, dtype: ir.DataType, shape: Sequence[Dim], *, lo: float | None = None,
              hi: float | None = None, broadcasting: bool = False) -> Operand:
        """A new graph input, weight or Constant node of this type and shape.

        Args:
            dtype: Element type.
            shape: Shape; a symbolic dimension needs a graph input.
            lo: With ``hi``, ask for a weight with values in ``[lo, hi]`` (never an input).
            hi: See ``lo``.
            broadcasting: The caller only needs a shape that broadcasts like ``shape``, so
                symbolic dimensions may become 1 when no input can be added.

        Raises:
            Decline: The shape needs a new input and none may be added.
        """
        shape = tuple(shape)
        ranged = lo is not None or hi is not None
        may_input = not ranged and not self.constant_only and len(self.builder.inputs) < self.max_inputs
        symbolic = any(isinstance(d, str) for d in shape)
        if may_input and (symbolic or self.flag()):
            return self.new_input(dtype, shape)
        if symbolic:
            if not broadcasting:
                raise Decline
            shape = tuple(1 if isinstance(d, str) else d for d in shape)
        array = self.random_array(dtype, shape, lo, hi)
        if "Constant" in self.ops and self.integer(0, 3) == 0:
            return self.constant_node(array)
        return self.weight(array)

    def new_input(self, dtype: ir.DataType, shape: Sequence[Dim]) -> Operand:
        value = self.builder.input(f"x{len(self.builder.inputs)}", dtype, list(shape))
        if dtype in FLOAT_TYPES:
            lo, hi = -INPUT_BOUND, INPUT_BOUND
        elif dtype == ir.DataType.BOOL:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = 0.0, float(INT_INPUT_HIGH)
        return self.add(Operand(value, dtype, tuple(shape), lo, hi, constant=False))

    def random_array(self, dtype: ir.DataType, shape: Sequence[int], lo: float | None = None,
                     hi: float | None = None) -> np.ndarray:
        """Weight data: floats uniform in ``[lo, hi]`` (default [-1, 1]), integers in [0, 3]."""
        np_dtype = dtype.numpy()
        if dtype == ir.DataType.BOOL:
            return self._rng.integers(0, 2, shape).astype(bool)
        if dtype in FLOAT_TYPES:
            low, high = (-1.0 if lo is None else lo), (1.0 if hi is None else hi)
            return self._rng.uniform(low, high, shape).astype(np_dtype)
        low, high = (0 if lo is None else int(lo)), (INT_INPUT_HIGH if hi is None else int(hi))
        return self._rng.integers(low, high + 1, shape).astype(np_dtype)

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def weight(self, array: np.ndarray) -> Operand:
        """Adds an initializer holding ``array`` to the graph and the pool."""
        value = self.builder.initializer(self.name("w"), array)
        return self.add(self._describe(value, array))

    def constant_node(self, array: np.ndarray) -> Operand:
        """Adds a Constant node producing ``array`` to the graph and the pool."""
        value = self.builder.op("Constant", value=ir.tensor(array))
        return self.add(self._describe(value, array))

    def _describe(self, value: ir.Value, array: np.ndarray) -> Operand:
        dtype = ir.DataType.from_numpy(array.dtype)
        value.type, value.shape = ir.TensorType(dtype), ir.Shape(array.shape)
        lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        return Operand(value, dtype, tuple(array.shape), lo, hi, constant=True)

    def const_ints(self, values: Sequence[int] | int) -> ir.Value:
        """An int64 initializer for shapes, axes, pads and indices (not added to the pool)."""
        return self.builder.initializer(self.name("c"), np.array(values, dtype=np.int64))

    def add(self, operand: Operand) -> Operand:
        self.pool.append(operand)
        return operand

    # -- nodes -------------------------------------------------------------------------------
    def node(self, op_type: str, inputs: Sequence[Operand | ir.Value | None], *,
             outputs: Sequence[tuple[ir.DataType, Sequence[Dim], float, float]], constant: bool | None = None,
             **attributes: Any) -> list[Operand]:
        """Appends a node and adds its outputs to the pool.

        Args:
            op_type: ONNX op type (default domain).
            inputs: Operands, plain values (shape constants) or None for omitted optional inputs.
            outputs: ``(dtype, shape, lo, hi)`` of each output.
            constant: Whether the outputs depend on constants only; by default, whether all
                operand inputs do.
            **attributes: Node attributes.
        """
        values = [i.value if isinstance(i, Operand) else i for i in inputs]
        if constant is None:
            constant = all(i.constant for i in inputs if isinstance(i, Operand))
        result = self.builder.op(op_type, *values, _outputs=len(outputs), **attributes)
        produced = [result] if len(outputs) == 1 else list(result)
        operands = []
        for value, (dtype, shape, lo, hi) in zip(produced, outputs):
            value.type, value.shape = ir.TensorType(dtype), ir.Shape(list(shape))
            operands.append(self.add(Operand(value, dtype, tuple(shape), float(lo), float(hi), constant)))
        return operands

    def unary(self, op_type: str, x: Operand, lo: float, hi: float, *, dtype: ir.DataType | None = None,
              shape: Sequence[Dim] | None = None, extra: Sequence[ir.Value] = (), **attributes: Any) -> Operand:
        """Appends a single-output node reading ``x`` and then ``extra`` (shape/axes constants).

        The output has ``dtype`` and ``shape`` (``x``'s by default) and the interval ``[lo, hi]``.
        """
        out = (dtype or x.dtype, x.shape if shape is None else shape, lo, hi)
        return self.node(op_type, [x, *extra], outputs=[out], **attributes)[0]

    def retire(self, operand: Operand) -> None:
        """Removes an operand from the pool and keeps it from becoming a graph output."""
        self.pool.remove(operand)
        self.dead.append(operand)

    def reuse(self, operand: Operand, **changes: Any) -> Operand:
        """Adds another pool entry for the same kind of value (e.g. a duplicated node's output)."""
        return self.add(replace(operand, **changes))

    # -- finishing ---------------------------------------------------------------------------
    def build(self) -> ir.Model:
        """Chooses graph outputs and returns the model.

        Outputs are every node output nothing reads (except retired dead branches), plus a few
        drawn values that are also read by other nodes; intermediate shapes are kept or dropped
        by a draw, since real models come both ways.
        """
        dead = {id(o.value) for o in self.dead}
        produced = [o for o in self.pool if o.value.producer() is not None and id(o.value) not in dead]
        outputs = [o for o in produced if not o.value.uses()]
        for extra in (o for o in produced if o.value.uses() and o.value.producer().op_type != "Constant"):
            if self.integer(0, 4) == 0:
                outputs.append(extra)
        if not outputs:
            outputs = self.dead[-1:]
        if not outputs:
            x = next(o for o in self.pool if o.value is self.builder.inputs[0])
            outputs.append(self.unary("Identity", x, x.lo, x.hi))
        ordered = list({id(o.value): o for o in outputs}.values())
        keep_shapes = self.flag()
        out_ids = {id(o.value) for o in ordered}
        if not keep_shapes:
            for node in self.builder.nodes:
                for value in node.outputs:
                    if id(value) not in out_ids:
                        value.type, value.shape = None, None
        for o in sorted(ordered, key=lambda o: self.builder.nodes.index(o.value.producer())):
            self.builder.output(o.value)
        return self.builder.build(infer_types=False)


def _detach(node: ir.Node) -> None:
    """Drops the node's (and its subgraphs' nodes') uses of their inputs."""
    for i in range(len(node.inputs)):
        node.replace_input_with(i, None)
    for attr in node.attributes.values():
        graphs = [attr.value] if attr.type == ir.AttributeType.GRAPH else (
            attr.value if attr.type == ir.AttributeType.GRAPHS else [])
        for graph in graphs:
            for inner in graph:
                _detach(inner)


def span(*values: float) -> tuple[float, float]:
    """The interval spanned by ``values``.

    Raises:
        Decline: The interval is not finite or leaves ``[-LIMIT, LIMIT]``.
    """
    lo, hi = min(values), max(values)
    if not (math.isfinite(lo) and math.isfinite(hi)) or max(abs(lo), abs(hi)) > LIMIT:
        raise Decline
    return lo, hi


def axis_arg(d: ModelDraft, axis: int, rank: int) -> int:
    """``axis`` written either way ONNX allows (non-negative or counted from the end)."""
    return axis - rank if d.flag() else axis


def broadcastable_to(d: ModelDraft, shape: Sequence[Dim]) -> tuple[Dim, ...]:
    """A shape that broadcasts against ``shape`` without growing it: a suffix, some dims set to 1."""
    start = d.integer(0, len(shape))
    return tuple(1 if d.integer(0, 3) == 0 else dim for dim in shape[start:])


def static_size(dim: Dim, assumed: int = 4) -> int:
    """A dimension's size for bounding purposes (symbolic dimensions are assumed small)."""
    return dim if isinstance(dim, int) else assumed
