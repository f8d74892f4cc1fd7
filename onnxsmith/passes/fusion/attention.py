"""Family ``attention``: BERT-style self-attention as com.microsoft Attention or MultiHeadAttention.

The exporters (TorchScript and dynamo ``torch.onnx.export``) write multi-head self-attention on
``x: [B, S, D]`` with ``N`` heads of size ``H`` (``hidden = N * H``) as::

    q = Transpose(Reshape(x @ Wq + bq, [B, S, N, H]), [0, 2, 1, 3])          # [B, N, S, H]
    k = Transpose(Reshape(x @ Wk + bk, [B, S, N, H]), [0, 2, 3, 1])          # [B, N, H, S]
    v = Transpose(Reshape(x @ Wv + bv, [B, S, N, H]), [0, 2, 1, 3])          # [B, N, S, H]
    p = Softmax((q @ k) * s + A, axis=-1)          # or (q * s_q) @ (k * s_k); Div by 1/s; A optional
    y = Reshape(Transpose(p @ v, [0, 2, 1, 3]), [B, S, hidden])

which is, by definition of the contrib ops (onnxruntime docs/ContribOperators.md)::

    Attention(x, [Wq | Wk | Wv], [bq | bk | bv], int32(m), num_heads=N, scale=s,
              mask_filter_value=c, unidirectional=0)
    MultiHeadAttention(x @ Wq, x' @ Wk, x'' @ Wv, [bq | bk | bv], int32(m), ...)

where ``A[b, h, i, j] = 0 if m[b, j] else c`` is the additive mask built from the raw 0/1 mask
``m`` (see ``_attention_mask``); without a mask there is no mask input. The scale is the product
of the matched constants (a Div contributes its reciprocal). Attention is used when ``Wq``, ``Wk``
and ``Wv`` are constants applied to the same ``x`` (their packed copy is a new initializer);
MultiHeadAttention otherwise (projections computed elsewhere, cross attention). Both keep the
exporter's ``c`` as ``mask_filter_value``, so masked scores are the same numbers; Softmax over a
fully masked row is uniform in both. Results differ by float re-association only (the packed
GEMM, the scale applied to the product instead of the operands).

K transposed by two Transposes (``[0, 2, 1, 3]`` then ``[0, 1, 3, 2]``) is first composed into
``[0, 2, 3, 1]`` by the ``transpose`` family; inference Dropout is removed by ``cleanup``.

Declined (with the reason in the tracer) when an intermediate value is used outside the block
("Softmax output used twice"), the dtype is not float32, the head layout or ``num_heads`` cannot
be derived from the Reshapes ("num_heads not derivable"), the mask is not a recognised key
padding mask ("mask shape not supported"), or a Div divides a constant by the scores.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.fusion._attention_mask import KeyMask, trace_key_mask
from onnxsmith.passes.fusion._attention_shapes import merged_width, split_heads
from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Replacement, RewriterContext, Rule, RuleSet, Var
from onnxsmith.passes.rewrite import ShapePolicy as S

__all__ = ["FAMILY", "RULES", "attention_rules"]

FAMILY = "attention"

MS_DOMAIN = "com.microsoft"

_FLOAT32 = frozenset({ir.DataType.FLOAT})
_SCALE_OPS = frozenset({"Mul", "Div"})
_QKV = ("q", "k", "v")


def _projection(name: str, packed: bool) -> Op:
    """``x @ W + b`` (packed: W constant, x shared by Q/K/V) or ``p + b`` (``p`` computed elsewhere)."""
    product = (Op("MatMul", Var("x", dtype=_FLOAT32), Const(f"w{name}", shape=S.ANY), _name=f"{name}_mm")
               if packed else Var(f"{name}_in", dtype=_FLOAT32))
    return Op("Add", product, Const(f"b{name}", shape=S.PER_CHANNEL), _name=f"{name}_add")


def _heads(name: str, packed: bool, perm: list[int]) -> Op:
    split = Op("Reshape", _projection(name, packed), Var(f"{name}_shape"), _name=f"{name}_split")
    return Op("Transpose", split, perm=perm, _name=f"{name}_heads")


def _scaled(p: Op, name: str) -> Op:
    return Op(_SCALE_OPS, p, Const(f"{name}_scale", shape=S.SCALAR_LIKE), _commutative=True, _name=f"{name}_scaling")


def _pattern(packed: bool, masked: bool, scaled_operands: bool) -> Op:
    q, k = _heads("q", packed, [0, 2, 1, 3]), _heads("k", packed, [0, 2, 3, 1])
    if scaled_operands:
        scores = Op("MatMul", _scaled(q, "q"), _scaled(k, "k"), _name="qk")
    else:
        scores = _scaled(Op("MatMul", q, k, _name="qk"), "qk")
    if masked:
        scores = Op("Add", scores, Var("mask"), _name="mask_add")
    probs = Op("Softmax", scores, axis=lambda axis: axis in (-1, 3), _name="softmax")
    context = Op("MatMul", probs, _heads("v", packed, [0, 2, 1, 3]), _name="context")
    merged = Op("Transpose", context, perm=[0, 2, 1, 3], _name="merge")
    return Op("Reshape", merged, Var("out_shape"), _name="out")


def _times(n: int) -> str:
    return "twice" if n == 2 else f"{n} times"


def _shared(m: Match) -> Decline | None:
    """Declines if a matched value other than the result is read outside the block."""
    inside = set(m.nodes)
    for node in m.nodes:
        if node is m.root:
            continue
        for out in node.outputs:
            outside = [use.node for use in out.uses() if use.node not in inside]
            if outside or out.is_graph_output():
                where = f"also read by '{outside[0].name}'" if outside else "also a graph output"
                return Decline(f"{node.op_type} output used {_times(len(out.uses()) + out.is_graph_output())} "
                               f"({where}); fusing would compute it twice")
    return None


def _scale(m: Match, names: tuple[str, ...]) -> float | Decline:
    """The product of the matched scale constants (a Div contributes its reciprocal)."""
    scale = 1.0
    for name in names:
        node, value = m.node(f"{name}_scaling"), m[f"{name}_scale"]
        factor = float(m.const(f"{name}_scale").reshape(-1)[0])
        if node.op_type == "Div":
            if node.inputs[1] is not value:
                return Decline(f"Div '{node.name}' divides a constant by the scores")
            if factor == 0.0:
                return Decline(f"Div '{node.name}' divides by zero")
            factor = 1.0 / factor
        scale *= factor
    return scale


def _layout(m: Match, hidden: int) -> int | Decline:
    """The head count shared by the three split Reshapes, after checking the merge Reshape."""
    found = {split_heads(m.node(f"{name}_split"), hidden) for name in _QKV}
    reasons = sorted(f for f in found if isinstance(f, str))
    if reasons:
        return Decline(reasons[0])
    if len(found) != 1:
        return Decline(f"Q, K and V are split into different head layouts: {sorted(found)}")
    ((heads, _),) = found
    reason = merged_width(m.node("out"), hidden, m.node("q_add").outputs[0])
    return Decline(reason) if reason else heads


def _mask(op: RewriterContext, m: Match) -> tuple[ir.Value | None, KeyMask | None] | Decline:
    """The int32 raw mask input and the fill value, or no mask."""
    if "mask" not in m or m["mask"] is None:
        return None, None
    found = trace_key_mask(m["mask"])
    if isinstance(found, str):
        return Decline(f"mask shape not supported: {found}")
    raw = found.raw
    if raw.dtype == ir.DataType.INT32:
        return raw, found
    existing = next((use.node.outputs[0] for use in raw.uses() if use.node.op_type == "Cast" and use.node.domain == ""
                     and use.node.attributes["to"].as_int() == ir.DataType.INT32 and use.node.graph is m.graph), None)
    return existing or op.Cast(raw, to=ir.DataType.INT32, _name=f"{raw.name}_int32"), found


def _biases(m: Match) -> tuple[np.ndarray, int] | Decline:
    """The packed bias ``[bq | bk | bv]`` and the hidden size."""
    biases = [m.const(f"b{name}") for name in _QKV]
    sizes = {b.size for b in biases}
    if len(sizes) != 1 or any(b.dtype != np.float32 for b in biases):
        return Decline(f"Q/K/V biases have sizes {[b.size for b in biases]} / dtypes {[str(b.dtype) for b in biases]}"
                       "; expected equal float32 vectors")
    return np.concatenate(biases), sizes.pop()


def _rewrite(packed: bool):  # noqa: ANN202 - returns a RewriteFn
    def rewrite(op: RewriterContext, m: Match) -> Replacement | Decline:
        if (shared := _shared(m)) is not None:
            return shared
        found = _biases(m)
        if isinstance(found, Decline):
            return found
        bias, hidden = found
        heads = _layout(m, hidden)
        scale = _scale(m, ("q", "k") if "q_scaling" in m else ("qk",))
        for answer in (heads, scale):
            if isinstance(answer, Decline):
                return answer
        if packed:
            weights = [m.const(f"w{name}") for name in _QKV]
            if any(w.shape != weights[0].shape or w.ndim != 2 or w.shape[1] != hidden for w in weights):
                return Decline(f"Q/K/V weights have shapes {[list(w.shape) for w in weights]}; "
                               f"expected equal [D, {hidden}] matrices")
        masking = _mask(op, m)
        if isinstance(masking, Decline):
            return masking
        mask_index, key_mask = masking
        attrs = {"num_heads": heads, "scale": scale, "unidirectional": 0,
                 "mask_filter_value": None if key_mask is None else key_mask.fill}
        base = m.root.name or "attention"
        op.import_opset(MS_DOMAIN, 1)
        if packed:
            w = op.initializer(np.concatenate(weights, axis=1).astype(np.float32), f"{base}_qkv_weight")
            b = op.initializer(bias, f"{base}_qkv_bias")
            return op.Attention(m["x"], w, b, mask_index, _domain=MS_DOMAIN, **attrs)
        b = op.initializer(bias, f"{base}_qkv_bias")
        return op.MultiHeadAttention(m["q_in"], m["k_in"], m["v_in"], b, mask_index, _domain=MS_DOMAIN, **attrs)

    rewrite.__doc__ = (f"{'Attention' if packed else 'MultiHeadAttention'} from Q/K/V MatMul-Softmax-MatMul "
                       "with Reshape/Transpose head layout")
    return rewrite


def attention_rules(packed: bool) -> RuleSet:
    """The rules for com.microsoft Attention (``packed``) or MultiHeadAttention, one per pattern variant."""
    prefix = "attention" if packed else "multi-head-attention"
    rules = []
    for masked in (True, False):
        for scaled_operands in (False, True):
            name = prefix + ("" if masked else "-unmasked") + ("-scaled-qk" if scaled_operands else "")
            fn = _rewrite(packed)
            rules.append(Rule(name, _pattern(packed, masked, scaled_operands), fn, allow_shared_intermediates=True,
                              description=fn.__doc__ or ""))
    return RuleSet(rules)


# Reshape(Transpose(Softmax((q @ k) * s + A) @ v)) -> com.microsoft.Attention(x, W_qkv, b_qkv, int32(m))
#   [q, k, v: heads of x @ W + b with constant W; variants: without A, with q and k scaled separately]
RULES = attention_rules(packed=True)
