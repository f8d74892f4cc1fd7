"""Family ``embed-layer-norm``: BERT embeddings + LayerNormalization as com.microsoft EmbedLayerNormalization.

onnxruntime's ``EmbedLayerNormalization(input_ids, segment_ids?, word_embedding,
position_embedding, segment_embedding?, gamma, beta)`` (version 1, float32 on CPU; ``int32``
ids of shape ``[B, S]``) computes, for ``b < B`` and ``s < S``::

    e[b, s] = word_embedding[input_ids[b, s]] + position_embedding[s] (+ segment_embedding[segment_ids[b, s]])
    output[b, s] = (e - mean(e)) / sqrt(var(e) + epsilon) * gamma + beta       (over the hidden axis)

(its ``mask``/``mask_index`` are left out: the attention families take the raw mask). Both
torch exporters write a BERT embedding layer as three axis-0 Gathers, two Adds (in either
order) and a LayerNormalization over the last axis, with the position ids the first ``S``
columns of a constant ``arange`` buffer::

    LayerNormalization(Gather(W, ids) + Gather(T, seg) + Gather(P, Slice(arange, 0, S, axis=1)), g, beta?)
        -> EmbedLayerNormalization(int32(ids), int32(seg), W, P, T, g, beta or 0)

``S`` must provably be the sequence length: ``Shape(y)[1]`` (``Unsqueeze(Gather(Shape(y), 1))``
or ``Shape(y, start=1, end=2)``) of a ``y`` whose dim 1 is ``ids``' (same size or named symbol);
position ids may also be a constant ``[[0, 1, ..., S-1]]`` for a static ``S``. The larger of the
other two tables is the word table (the kernel treats the two alike). Without a segment Gather,
``embed-layer-norm-no-segment`` drops ``segment_ids``/``segment_embedding``. Int64 ids get a
Cast to int32 (an existing one is reused).

Exact for every valid token id (``0 <= id < rows``): the sum is the same, added in another order,
and the normalisation is two-pass like LayerNormalization's (float32 re-association only).
Outside that range the operators differ: ``Gather`` reads a negative id ``-k`` as row
``rows - k`` and fails on ids ``>= rows``; the kernel fails on both, and an int64 id ``>= 2^31``
wraps in the Cast. Tokenizers only produce valid ids.

Declined when an Add or Gather result is read elsewhere, the LayerNormalization does not normalise
the last axis or its Mean/InvStdDev outputs are used, the tables are not float32 ``[rows, H]``
constants with ``gamma``/``beta`` constant ``[H]`` vectors, the ids are not ``[B, S]`` integer
tensors of one provable shape, or no Gather reads position ids (e.g. a ``position_ids`` graph input).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.fusion._attention_shapes import _dim_ref, _same
from onnxsmith.passes.fusion._gelu_forms import FLOAT32
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Opt, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_array, constant_shape, non_constant_reason

__all__ = ["FAMILY", "RULES"]

FAMILY = "embed-layer-norm"

MS_DOMAIN = "com.microsoft"

_INT_IDS = frozenset({ir.DataType.INT32, ir.DataType.INT64})
_DEFAULT_EPSILON = 1e-5


def _lookup(name: str) -> Op:
    return Op("Gather", Const(f"{name}_table", shape=S.ANY, dtype=FLOAT32), Var(f"{name}_ids", dtype=_INT_IDS),
              axis=0, _name=name)


def _normalised(total: Op) -> Op:
    return Op("LayerNormalization", total, Const("gamma", shape=S.PER_CHANNEL), Opt(Const("beta", shape=S.PER_CHANNEL)),
              _name="ln")


def _dims(value: ir.Value) -> tuple[object, ...] | None:
    return None if value.shape is None else tuple(value.shape.dims)


def _is_sequence_length(part: ir.Value, ids: ir.Value) -> bool:
    """True if the 1-element ``part`` provably holds dim 1 of ``ids``."""
    ref = _dim_ref(part)
    if ref is None:
        return False
    source, k = ref
    a, b = _dims(source), _dims(ids)
    return k == 1 and a is not None and b is not None and len(a) > 1 and len(b) == 2 and _same(a[1], b[1])


def _position_reason(positions: ir.Value, ids: ir.Value) -> str | None:
    """Why ``positions`` is not ``[[0, 1, ..., S-1]]`` for ``ids: [B, S]`` (None if it is)."""
    if non_constant_reason(positions) is None:
        array, dims = constant_array(positions), _dims(ids)
        if (array.ndim == 2 and array.shape[0] == 1 and dims is not None and len(dims) == 2
                and dims[1] == array.shape[1] and np.array_equal(array[0], np.arange(array.shape[1]))):
            return None
        return f"constant position ids '{positions.name}' are not [[0, 1, ..., S-1]] for ids of shape {dims}"
    node = positions.producer()
    if node is None or node.op_type != "Slice" or node.domain not in ("", "ai.onnx"):
        return f"position ids '{positions.name}' are not a Slice of a constant arange"
    data, starts, ends, axes, steps = (list(node.inputs) + [None] * 5)[:5]
    constants = {"starts": starts, "axes": axes, "steps": steps}
    if any(v is not None and non_constant_reason(v) is not None for v in (data, *constants.values())):
        return f"Slice '{node.name}' of the position ids has computed data, starts, axes or steps"
    assert data is not None and starts is not None and ends is not None
    table = constant_array(data)
    read = {k: (None if v is None else constant_array(v).reshape(-1).tolist()) for k, v in constants.items()}
    if (table.ndim != 2 or table.shape[0] != 1 or not np.array_equal(table[0], np.arange(table.shape[1]))
            or read["starts"] != [0] or read["axes"] not in ([1], [-1]) or read["steps"] not in (None, [1])):
        return f"Slice '{node.name}' does not take the first columns of a [1, N] arange buffer"
    if not _is_sequence_length(ends, ids):
        return f"the end of Slice '{node.name}' is not provably the sequence length of '{ids.name}'"
    return None


def _roles(m: Match, names: tuple[str, ...]) -> tuple[str, list[str]] | Decline:
    """The Gather reading position ids, and the others (word first: the larger table)."""
    reasons = {}
    for name in names:
        others = [n for n in names if n != name]
        ids = m[f"{others[0]}_ids"]
        assert ids is not None
        reason = _position_reason(m[f"{name}_ids"], ids)
        if reason is None:
            others.sort(key=lambda n: -(constant_shape(m[f"{n}_table"]) or (0,))[0])
            return name, others
        reasons[name] = reason
    return Decline("no Gather reads position ids: " + "; ".join(reasons.values()))


def _shapes_decline(m: Match, position: str, lookups: list[str]) -> Decline | None:
    """Why the tables, ids and LayerNormalization do not fit the kernel (None if they do)."""
    ln = m.node("ln")
    if int(m.attr(ln, "axis", -1)) not in (-1, 2):
        return Decline(f"LayerNormalization '{ln.name}' does not normalise the last axis of [B, S, H]")
    if any(out.uses() or out.is_graph_output() for out in ln.outputs[1:]):
        return Decline(f"the Mean/InvStdDev outputs of LayerNormalization '{ln.name}' are used")
    gamma = m["gamma"]
    assert gamma is not None
    hidden = constant_shape(gamma)[0]
    for name in (position, *lookups):
        dims = constant_shape(m[f"{name}_table"])
        if len(dims) != 2 or dims[1] != hidden:
            return Decline(f"table '{m[f'{name}_table'].name}' has shape {list(dims)}, expected [rows, {hidden}]")
    if m["beta"] is not None and constant_shape(m["beta"]) != (hidden,):
        return Decline(f"beta '{m['beta'].name}' has shape {list(constant_shape(m['beta']))}, expected [{hidden}]")
    shapes = [_dims(m[f"{name}_ids"]) for name in lookups]
    if any(s is None or len(s) != 2 for s in shapes):
        return Decline(f"the ids have shapes {shapes}; EmbedLayerNormalization takes [batch, sequence]")
    if len(shapes) == 2 and not all(_same(a, b) for a, b in zip(*shapes)):
        return Decline(f"the word and segment ids have shapes {shapes}, not provably one shape")
    return None


def _int32(op: RewriterContext, m: Match, ids: ir.Value) -> ir.Value:
    """``ids`` as int32: itself, an existing Cast of it, or a new Cast."""
    if ids.dtype == ir.DataType.INT32:
        return ids
    existing = next((use.node.outputs[0] for use in ids.uses() if use.node.op_type == "Cast"
                     and use.node.domain in ("", "ai.onnx") and use.node.graph is m.graph
                     and use.node.attributes["to"].as_int() == ir.DataType.INT32), None)
    return existing or op.Cast(ids, to=ir.DataType.INT32, _name=f"{ids.name}_int32")


def _embed(names: tuple[str, ...]):  # noqa: ANN202 - returns a RewriteFn
    def rewrite(op: RewriterContext, m: Match) -> Replacement | Decline:
        roles = _roles(m, names)
        if isinstance(roles, Decline):
            return roles
        position, lookups = roles
        decline = _shapes_decline(m, position, lookups)
        if decline:
            return decline
        ln = m.node("ln")
        gamma, beta = m["gamma"], m["beta"]
        assert gamma is not None
        if beta is None:
            beta = op.initializer(np.zeros(constant_shape(gamma), np.float32), f"{ln.name or 'embed'}_beta")
        word = lookups[0]
        segment = lookups[1] if len(lookups) > 1 else None
        ids = _int32(op, m, m[f"{word}_ids"])
        segment_ids = _int32(op, m, m[f"{segment}_ids"]) if segment else None
        op.import_opset(MS_DOMAIN, 1)
        # onnxruntime's type inference needs the mask_index output even without a mask
        output, _mask_index = op.EmbedLayerNormalization(
            ids, segment_ids, m[f"{word}_table"], m[f"{position}_table"],
            m[f"{segment}_table"] if segment else None, gamma, beta, _domain=MS_DOMAIN, _outputs=2,
            epsilon=float(m.attr(ln, "epsilon", _DEFAULT_EPSILON)))
        return [output] + [None] * (len(ln.outputs) - 1)

    rewrite.__doc__ = "Gathers (word, position" + (", segment" if len(names) == 3 else "") + \
        ") + Adds + LayerNormalization -> com.microsoft.EmbedLayerNormalization"
    return rewrite


# LayerNormalization(Gather(W, ids) + Gather(T, seg) + Gather(P, positions), g, beta?)
#     -> EmbedLayerNormalization(int32(ids), int32(seg), W, P, T, g, beta)       [Adds in any order]
embed_layer_norm = rule("embed-layer-norm", _normalised(
    Op("Add", Op("Add", _lookup("a"), _lookup("b")), _lookup("c"))))(_embed(("a", "b", "c")))

# LayerNormalization(Gather(W, ids) + Gather(P, positions), g, beta?)
#     -> EmbedLayerNormalization(int32(ids), W, P, g, beta)
embed_layer_norm_no_segment = rule("embed-layer-norm-no-segment", _normalised(
    Op("Add", _lookup("a"), _lookup("b"))))(_embed(("a", "b")))

RULES = RuleSet([embed_layer_norm, embed_layer_norm_no_segment])
