"""Rejection reasons without names: rejected candidates count by the tracer's message per rule."""

from __future__ import annotations

from onnxsmith.ir import parse_text
from onnxsmith.passes.rewrite import Const, Decline, Op, Var, apply_rules, rule
from onnxsmith.passes.rewrite import ShapePolicy as S

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


# Add(MatMul(x, w), b) -> Gemm(x, w, b), declining wherever x is not 2-D
@rule("to-gemm", Op("Add", Op("MatMul", Var("x"), Const("w", shape=S.ANY)), Const("b", shape=S.ANY)))
def to_gemm(op, m):
    """Add(MatMul(x, w), b) -> Gemm(x, w, b)"""
    return Decline("x is not 2-D")


def test_reasons_count_candidates_by_message_without_names():
    model = parse_text(HEADER + """
g (float[2,3,4] x, float[2,4] u, float[2,5] v) => (float[2,3,5] y1, float[2,3,5] y2, float[2,5] y3, float[2,4] y4)
  <float[4,5] w = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0,
                   18.0, 19.0, 20.0}, float[5] b = {1.0, 2.0, 3.0, 4.0, 5.0}> {
  [a] t1 = MatMul (x, w)
  y1 = Add (t1, b)
  [c] t2 = MatMul (x, w)
  y2 = Add (t2, b)
  [d] t3 = MatMul (u, w)
  y3 = Add (t3, v)
  y4 = Add (u, u)
}""")
    stats = apply_rules(model, [to_gemm]).to_dict()
    assert stats["reasons"] == {"to-gemm": {"declined: x is not 2-D": 2,
                                            "input 1 of Add (<graph input>) is a graph input, not a constant": 1}}
    assert stats["rejected"] == {"to-gemm": {"declined": 2, "not-constant": 1, "op-type": 1}}
