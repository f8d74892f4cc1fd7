"""Hypothesis strategies that generate valid random ONNX models.

``models()`` draws a small model from an op vocabulary: it starts from one graph input and
repeatedly applies a drawn op to operands drawn from the values built so far (or to fresh
inputs, weights or Constant nodes), keeping every element type and shape consistent. A third of
the steps injects redundancy instead (duplicate constants, Identity chains, foldable constant
subgraphs, dead branches, repeated subexpressions) so that cleanup passes have work to do.
Graph outputs are the values nothing reads, plus a few drawn intermediate values.

Guarantees, for every drawn model:

- it passes ``onnx.checker.check_model(..., full_check=True)``: declared shapes agree with
  ONNX shape inference;
- onnxruntime runs it on inputs from :func:`onnxsmith.verify.generate_inputs` (floats standard
  normal, integers in [0, 3], the symbolic batch dimension ``N`` of any size);
- its values are numerically tame: interval arithmetic bounds every value by ``LIMIT`` for
  float inputs within +-4 and ``N <= 4``; Log/Sqrt/Reciprocal/Div only see operands bounded
  away from zero; no rounding op (Floor, Round, float-to-integer Cast) appears, and
  comparisons tie only with negligible probability, so outputs are stable under the small float
  differences an equivalence-preserving rewrite may introduce.

Example::

    from hypothesis import given
    from onnxsmith.verify.strategies import models, ELEMENTWISE

    @given(models(ops=ELEMENTWISE | {"MatMul"}, max_nodes=8))
    def test_my_pass(model): ...
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from hypothesis import strategies as st

from onnxsmith.verify import _gen_control, _gen_elementwise, _gen_nn, _gen_shape
from onnxsmith.verify._model_draft import Decline, ModelDraft
from onnxsmith.verify._redundancy import INJECTIONS, Step

__all__ = [
    "ALL_OPS",
    "CONTROL_FLOW",
    "ELEMENTWISE",
    "NN",
    "REDUNDANCY",
    "SHAPE_OPS",
    "SUPPORTED_DTYPES",
    "models",
]

_GENERATORS: dict[str, Step] = {**_gen_elementwise.GENERATORS, **_gen_shape.GENERATORS, **_gen_nn.GENERATORS,
                                **_gen_control.GENERATORS}

#: Elementwise math, comparisons, logic, Where, Clip, Cast, Identity, Dropout and Constant.
ELEMENTWISE: frozenset[str] = frozenset(_gen_elementwise.GENERATORS)
#: Data movement and shape computations (Reshape ... Pad, Shape patterns).
SHAPE_OPS: frozenset[str] = frozenset(_gen_shape.GENERATORS)
#: MatMul, Gemm, reductions, Softmax, Conv, pools and BatchNormalization.
NN: frozenset[str] = frozenset(_gen_nn.GENERATORS)
#: If with small then/else subgraphs that read outer-scope values.
CONTROL_FLOW: frozenset[str] = frozenset(_gen_control.GENERATORS)
#: Every op type the strategy can generate.
ALL_OPS: frozenset[str] = ELEMENTWISE | SHAPE_OPS | NN | CONTROL_FLOW
#: Kinds of injected redundancy.
REDUNDANCY: tuple[str, ...] = tuple(INJECTIONS)
#: Element types that inputs and weights may have.
SUPPORTED_DTYPES: tuple[str, ...] = ("float32", "float64", "int32", "int64")
#: Opsets drawn when none is given (axes as attributes vs inputs, Split forms, ...).
DEFAULT_OPSETS: tuple[int, ...] = (13, 15, 17, 18, 21)
MIN_OPSET = 13

#: Per requested node, how many steps may be tried (steps decline when no operand fits).
_ATTEMPTS_PER_NODE = 20


def models(ops: Iterable[str] | None = None, *, max_nodes: int = 12, min_nodes: int = 1,
           dtypes: Iterable[Any] = ("float32",), opset: int | st.SearchStrategy[int] | None = None,
           redundancy: Iterable[str] = REDUNDANCY, max_inputs: int = 3,
           dynamic: bool | None = None) -> st.SearchStrategy[ir.Model]:
    """A strategy of random valid models (see the module docstring for the guarantees).

    Args:
        ops: Op types to use (``ALL_OPS``, or unions of ``ELEMENTWISE``, ``SHAPE_OPS``, ``NN`` and
            ``CONTROL_FLOW``); all by default.
        max_nodes: Most nodes a model has (a hard bound).
        min_nodes: Fewest nodes a model has.
        dtypes: Element types of inputs and weights (names such as ``"float32"``, numpy dtypes or
            ``onnx_ir.DataType``); booleans and int64 shape tensors appear internally regardless.
        opset: Default-domain opset (>= 13), or a strategy of them; drawn from
            ``DEFAULT_OPSETS`` by default.
        redundancy: Kinds of redundancy to inject (``REDUNDANCY``); empty for none.
        max_inputs: Most graph inputs.
        dynamic: Whether inputs may have the symbolic batch dimension ``N``; drawn by default.

    Raises:
        ValueError: An unknown op, redundancy kind or dtype, or inconsistent sizes.
    """
    vocabulary = frozenset(ALL_OPS if ops is None else ops)
    unknown = sorted(vocabulary - ALL_OPS)
    if unknown or not vocabulary:
        raise ValueError(f"models(): unsupported ops {unknown or '(none given)'}; choose from {sorted(ALL_OPS)}")
    kinds = tuple(redundancy)
    bad_kinds = sorted(set(kinds) - set(REDUNDANCY))
    if bad_kinds:
        raise ValueError(f"models(): unknown redundancy kinds {bad_kinds}; choose from {list(REDUNDANCY)}")
    if not 1 <= min_nodes <= max_nodes or max_inputs < 1:
        raise ValueError("models(): need 1 <= min_nodes <= max_nodes and max_inputs >= 1")
    element_types = tuple(_data_type(t) for t in dtypes)
    if not element_types:
        raise ValueError("models(): give at least one dtype")
    opsets = _opset_strategy(opset)
    return _models(vocabulary, kinds, element_types, opsets, max_nodes, min_nodes, max_inputs, dynamic)


def _data_type(dtype: Any) -> ir.DataType:
    try:
        value = dtype if isinstance(dtype, ir.DataType) else ir.DataType.from_numpy(np.dtype(dtype))
    except (TypeError, ValueError):
        value = None
    if value is None or value.numpy().name not in SUPPORTED_DTYPES:
        raise ValueError(f"models(): unsupported dtype {dtype!r}; choose from {list(SUPPORTED_DTYPES)}")
    return value


def _opset_strategy(opset: int | st.SearchStrategy[int] | None) -> st.SearchStrategy[int]:
    if opset is None:
        return st.sampled_from(DEFAULT_OPSETS)
    if isinstance(opset, st.SearchStrategy):
        return opset
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"models(): opset must be between {MIN_OPSET} and {newest}, got {opset}")
    return st.just(opset)


@st.composite
def _models(draw: Any, ops: frozenset[str], kinds: tuple[str, ...], dtypes: tuple[ir.DataType, ...],
            opsets: st.SearchStrategy[int], max_nodes: int, min_nodes: int, max_inputs: int,
            dynamic: bool | None) -> ir.Model:
    d = ModelDraft(draw, opset=draw(opsets), dtypes=dtypes, ops=ops, max_inputs=max_inputs,
                   dynamic=draw(st.booleans()) if dynamic is None else dynamic)
    d.new_input(d.choice(dtypes), d.shape())
    generators = {op: _GENERATORS[op] for op in sorted(ops)}
    target = draw(st.integers(min_nodes, max_nodes))
    for _ in range(_ATTEMPTS_PER_NODE * target):
        if d.node_count >= target:
            break
        _step(d, generators, kinds, max_nodes)
    while d.node_count < min_nodes:
        x = d.choice(d.pool)
        d.unary("Identity", x, x.lo, x.hi)
    return d.build()


def _step(d: ModelDraft, generators: Mapping[str, Step], kinds: tuple[str, ...], max_nodes: int) -> None:
    """One op or injection; rolled back if it declines or overshoots ``max_nodes``."""
    checkpoint = d.checkpoint()
    try:
        if kinds and d.integer(0, 2) == 2:
            INJECTIONS[d.choice(kinds)](d, generators)
        else:
            op = d.choice(list(generators))
            generators[op](d, op)
    except Decline:
        d.rollback(checkpoint)
        return
    if d.node_count > max_nodes:
        d.rollback(checkpoint)
