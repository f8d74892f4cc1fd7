"""Fusion rule families and the ``fuse`` pass.

Each module holds one family of rewrite rules, named as in
:data:`onnxsmith.codegen.FUSION_FAMILIES`, and exports ``FAMILY`` (the name) and ``RULES``:

- ``conv_bn``: BatchNormalization folded into the preceding Conv's weights and bias;
- ``conv_bias``: a per-channel constant Add after a Conv folded into its bias;
- ``scale_conv``: a per-channel constant Mul after a Conv folded into its weights and bias;
- ``gemm``: 2-D MatMul by a constant plus a bias vector as Gemm;
- ``transpose``: consecutive Transposes composed, Transposes folded into Gemm's ``transA``/``transB``;
- ``conv_activation``: Conv followed by an activation as com.microsoft FusedConv (contrib op);
- ``contrib_gelu``: decomposed exact GELU as com.microsoft Gelu (contrib op; before ``gelu``);
- ``fast_gelu``: tanh-approximated GELU as com.microsoft FastGelu, with a constant bias Add (contrib op);
- ``gelu``: decomposed exact or tanh GELU as ONNX Gelu (opset 20);
- ``bias_gelu``: a constant bias Add before com.microsoft Gelu as BiasGelu (contrib op);
- ``layer_norm``: decomposed layer normalization (two-pass or moments form) as LayerNormalization (opset 17);
- ``embed_layer_norm``: BERT word/position/segment Gathers + Adds + LayerNormalization as com.microsoft
  EmbedLayerNormalization (contrib op);
- ``skip_layer_norm``: residual Add (+ bias) + LayerNormalization as com.microsoft SkipLayerNormalization;
- ``attention``: BERT-style self-attention as com.microsoft Attention (packed Q/K/V, contrib op);
- ``multi_head_attention``: the same block on computed projections as com.microsoft MultiHeadAttention (contrib op).
- ``scale_gemm``: a constant Mul/Add after a Gemm, or Mul after a MatMul, folded into its weights and bias;
- ``pad_pool``: a constant Pad folded into the pads of a Conv, AveragePool or (where exact) MaxPool;
- ``hard_activation``: HardSigmoid/HardSwish recognised from Clip or Min/Max forms (and Min(Max) as Clip);
- ``silu``: ``x * Sigmoid(x)`` as com.microsoft QuickGelu with ``alpha = 1`` (contrib op);
- ``reshape``: consecutive Reshapes collapsed;
- ``residual-sum``: the residual Add before a LayerNormalization as ``Sum``, which keeps
  onnxruntime from fusing the pair into its slower CPU SkipLayerNormalization at load.
- ``masked-softmax``: a Softmax of attention scores plus an additive mask floored at ``max - 60``,
  which keeps onnxruntime's CPU Softmax off its slow path for the masked (underflowing) entries.

``fuse`` applies, to a fixed point, every family the context's target allows
(``Target.allows_fusion``). Families a target runs but that measured slower than the unfused graph
(``Target.opt_in_fusions``: attention on cpu) apply only when named: ``fuse{enable=attention}`` adds
them to the defaults. ``fuse{rules=gemm}`` restricts it to the named families or rules (family and
rule names may be mixed). Lowerings that rewrite a pattern a fusion reads (:data:`LATE_FAMILIES`:
``masked-softmax``, whose floor would hide the Softmax from the attention families) apply in a
second round, after the fusions reached their fixed point. ``explain`` and ``max-rewrites`` work as
for every :class:`~onnxsmith.passes.rewrite.RewritePass`, and the statistics count applications and
rejections per rule. Last, ``remove-unused`` runs: the nodes left without users (the mask and shape
subgraphs a fused attention block no longer reads) and the initializers only they read are removed,
and counted as its statistics (``removed_nodes``, ``removed_initializers``...).

Tolerance: ``rtol=1e-4, atol=1e-5``. Every rule but the masked-softmax floor is exact in real
arithmetic; in floats, folding a scale into weights or a bias into a Gemm re-associates sums of
products, which moves float32 results by a few ulps per accumulated term, and FusedConv evaluates
Sigmoid and Tanh with onnxruntime's vectorised approximations (a few ulps as well), as QuickGelu
does for SiLU; HardSigmoid's ``1/h`` is rounded to float32 once. Transpose, Reshape and Pad rewrites
are exact. The masked-softmax floor moves each probability by a relative ``n * e^-60`` at most
(``n`` keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import onnx_ir as ir

from onnxsmith.codegen.targets import target_of
from onnxsmith.errors import PassOptionError, closest
from onnxsmith.passes.cleanup.remove_unused import RemoveUnused
from onnxsmith.passes.base import PassContext, PassResult, Tolerance
from onnxsmith.passes.fusion import conv_activation, conv_bias, conv_bn, gemm, scale_conv, transpose
from onnxsmith.passes.fusion import bias_gelu, contrib_gelu, embed_layer_norm, fast_gelu, gelu, layer_norm
from onnxsmith.passes.fusion import skip_layer_norm
from onnxsmith.passes.fusion import attention, multi_head_attention
from onnxsmith.passes.fusion import hard_activation, pad_pool, reshape, residual_sum, scale_gemm, silu
from onnxsmith.passes.fusion import masked_softmax
from onnxsmith.passes.registry import register_pass
from onnxsmith.passes.rewrite import RewriteOptions, RewritePass, RewriteStats, RuleSet, apply_rules

__all__ = ["FAMILIES", "LATE_FAMILIES", "Fuse", "FuseOptions"]

#: Family name -> its rules, in the order ``fuse`` tries them.
FAMILIES = MappingProxyType({module.FAMILY: module.RULES
                             for module in (conv_bn, scale_conv, conv_bias, gemm, transpose, conv_activation,
                                           contrib_gelu, fast_gelu, gelu, bias_gelu, layer_norm, embed_layer_norm,
                                           skip_layer_norm, residual_sum, attention, multi_head_attention, scale_gemm,
                                           pad_pool, hard_activation, silu, reshape, masked_softmax)})

#: Families applied after the others reached a fixed point: they rewrite what a fusion matches.
LATE_FAMILIES = frozenset({masked_softmax.FAMILY})

_FAMILY_OF = {r.name: family for family, rules in FAMILIES.items() for r in rules}


@dataclass
class FuseOptions(RewriteOptions):
    """Options of ``fuse``.

    Attributes:
        rules: Apply only these families or rules (all the target allows if empty).
        explain: Log one line per rejected match attempt, with the reason.
        max_rewrites: Stop with an error after this many rewrites (default: the driver's cap).
        enable: Opt-in families to apply as well as the target's defaults (attention on cpu).
    """

    enable: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in self.enable:
            if name not in FAMILIES:
                best = closest(name, list(FAMILIES))
                raise PassOptionError(f"'fuse' has no family '{name}' to enable (families: {', '.join(FAMILIES)})",
                                      f"did you mean '{best}'?" if best else None)


@register_pass
class Fuse(RewritePass):
    """Fuse operators with every rule family the target allows."""

    name = "fuse"
    Options = FuseOptions
    rules = RuleSet(r for rules in FAMILIES.values() for r in rules)
    tolerance = Tolerance(rtol=1e-4, atol=1e-5)
    idempotent = True

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        options: FuseOptions = self.options
        selected = self._select(options.rules) if options.rules else self.rules
        target = target_of(ctx)
        named = {*options.rules, *options.enable}
        legal = RuleSet(r for r in selected
                        if target.allows_fusion(_FAMILY_OF[r.name], named=r.name in named or _FAMILY_OF[r.name] in named))
        explain = None
        if options.explain or ctx.debug:
            def explain(message: str) -> None:
                ctx.explain(self.name, message)
        rounds = [RuleSet(r for r in legal if (_FAMILY_OF[r.name] in LATE_FAMILIES) is late)
                  for late in (False, True)]
        stats = RewriteStats.merged([apply_rules(model, rules, max_rewrites=options.max_rewrites, explain=explain)
                         for rules in rounds if len(rules)])
        swept = RemoveUnused().run(model, ctx)
        return PassResult(stats.rewrites > 0 or swept.modified, {**stats.to_dict(), **swept.stats})

    def _select(self, names: list[str]) -> RuleSet:
        """The rules of the named families and the named rules, in set order."""
        known = sorted({*FAMILIES, *self.rules.names})
        for name in names:
            if name not in known:
                best = closest(name, known)
                raise PassOptionError(f"'{self.name}' has no family or rule '{name}' (families: "
                                      f"{', '.join(FAMILIES)}; rules: {', '.join(self.rules.names)})",
                                      f"did you mean '{best}'?" if best else None)
        wanted = {n for name in names for n in (FAMILIES[name].names if name in FAMILIES else (name,))}
        return RuleSet(r for r in self.rules if r.name in wanted)

