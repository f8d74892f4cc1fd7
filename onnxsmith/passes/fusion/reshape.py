"""Family ``reshape``: consecutive Reshapes collapsed into one.

A Reshape keeps the elements and their order and changes only the shape, so two in a row are
one, reading the first one's input::

    Reshape(Reshape(x, s1), s2) = Reshape(x, s2)

provided ``s2`` does not depend on the intermediate shape. In ``s2`` a ``-1`` is inferred from the
element count, which ``x`` shares with the intermediate, so it may stay; a ``0`` (without
``allowzero``) copies the intermediate's dimension at that index, so it is replaced by ``s1``'s
entry there when that is a known positive number and declined otherwise. With ``allowzero=1``
a ``0`` is a literal zero and stays. The rewrite only moves data, so it is exact.

Declined when ``s2`` is not a constant, a ``0`` in it cannot be resolved from ``s1``, or the
intermediate is used elsewhere (the engine's shared-intermediate check). Reshape-1 (shape as an
attribute) is not matched: the pattern reads the shape input.
"""

from __future__ import annotations

import numpy as np

from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Replacement, RewriterContext, RuleSet, Var, rule
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_array, non_constant_reason

__all__ = ["FAMILY", "RULES"]

FAMILY = "reshape"


# Reshape(Reshape(x, s1), s2) -> Reshape(x, s2)      [0 entries of s2 resolved from s1]
@rule("reshape-reshape",
      Op("Reshape", Op("Reshape", Var("x"), Var("s1"), _name="inner"), Const("s2", shape=S.PER_CHANNEL),
         _name="outer"))
def reshape_reshape(op: RewriterContext, m: Match) -> Replacement | Decline:
    """Reshape(Reshape(x, s1), s2) -> Reshape(x, s2)"""
    shape = m.const("s2")
    assert shape is not None and m["s1"] is not None
    attributes = m.attributes("outer")
    if 0 in shape and not m.attr("outer", "allowzero", 0):
        s1_reason = non_constant_reason(m["s1"])
        s1 = None if s1_reason is not None else constant_array(m["s1"]).reshape(-1)
        zeros = np.flatnonzero(shape == 0)
        if s1 is None or zeros[-1] >= len(s1) or np.any(s1[zeros] <= 0):
            return Decline(f"the shape {shape.tolist()} copies dimensions of the intermediate that "
                           f"{'the first shape ' + str(s1.tolist()) if s1 is not None else 'a non-constant shape'} "
                           "does not state")
        shape = shape.copy()
        shape[zeros] = s1[zeros]
        return op.Reshape(m["x"], op.initializer(shape, "reshape_shape"), **attributes)
    return op.Reshape(m["x"], m["s2"], **attributes)


RULES = RuleSet([reshape_reshape])
