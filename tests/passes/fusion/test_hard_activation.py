"""Family hard-activation: HardSigmoid and HardSwish recognised from their decomposed forms."""

from __future__ import annotations

import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes.fusion.hard_activation import RULES
from onnxsmith.passes.rewrite import apply_rules
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites
from onnxsmith.verify import assert_equivalent

CONSTS = ("float three = {3.0}, float zero = {0.0}, float six = {6.0}, float sixth = {0.16666667}, "
          "float half = {0.5}, float one = {1.0}")


def _model(body: str, *, opset: int = 17, consts: str = CONSTS) -> str:
    return f"""<ir_version: 8, opset_import: ["" : {opset}]>
g (float[2,3] x) => (float[2,3] y) <{consts}> {{
  {body}
}}"""


def _after(node: str, *, opset: int = 17, consts: str = CONSTS) -> str:
    return _model(node, opset=opset, consts=consts)


HARD_SIGMOID = "HardSigmoid <alpha = 0.16666667, beta = 0.5> (x)"


@pytest.mark.parametrize(("body", "name", "unused"), [
    ("t = Add (x, three)\n  r = Clip (t, zero, six)\n  y = Div (r, six)", "hard_sigmoid_from_relu6", "half, one, sixth"),
    ("t = Add (three, x)\n  r = Clip (t, zero, six)\n  y = Mul (sixth, r)", "hard_sigmoid_from_relu6_mul",
     "half, one"),
    ("t = Div (x, six)\n  u = Add (t, half)\n  y = Clip (u, zero, one)", "hard_sigmoid_from_clip_div", "three, sixth"),
    ("t = Mul (x, sixth)\n  u = Add (half, t)\n  y = Clip (u, zero, one)", "hard_sigmoid_from_clip", "three, six"),
])
def test_hard_sigmoid_forms(body, name, unused):
    consts = ", ".join(c for c in CONSTS.split(", ") if c.split()[1] in unused.split(", "))
    assert_rewrites(RULES, _model(body), _after(f"[{name}_HardSigmoid] y = {HARD_SIGMOID}", consts=consts))


@pytest.mark.parametrize("relu6", [
    "r = Clip (t, zero, six)",
    "c = Max (t, zero)\n  r = Min (c, six)",
    "c = Min (six, t)\n  r = Max (zero, c)",
])
@pytest.mark.parametrize("scale", ["m = Mul (x, r)\n  y = Div (m, six)", "m = Mul (r, x)\n  y = Mul (sixth, m)",
                                   "d = Div (r, six)\n  y = Mul (x, d)"])
def test_hard_swish_forms(relu6, scale):
    assert _fused_ops(_model(f"t = Add (x, three)\n  {relu6}\n  {scale}")) == ["HardSwish"]


def _fused_ops(text: str) -> list[str]:
    """The op types after the rules ran on ``text``, once the result is checked equivalent."""
    model = parse_text(text)
    apply_rules(model, RULES)
    assert_equivalent(parse_text(text), model, rtol=1e-5, atol=1e-6)
    return [node.op_type for node in model.graph]


def test_hard_swish_needs_opset_14():
    text = _model("t = Add (x, three)\n  r = Clip (t, zero, six)\n  m = Mul (x, r)\n  y = Div (m, six)", opset=13)
    assert _fused_ops(text) == ["HardSigmoid", "Mul"]


def test_min_max_become_clip():
    before = _model("c = Max (x, zero)\n  y = Min (c, six)")
    after = _after("[y_Clip] y = Clip (x, clip_min, clip_max)", consts=CONSTS + ", float clip_min = {0.0}, "
                   "float clip_max = {6.0}")
    after = after.replace("float zero = {0.0}, float six = {6.0}, ", "")
    stats = assert_rewrites(RULES, before.replace("y = Min", "[y] y = Min"), after)
    assert stats.applied["min-max-to-clip"] == 1


@pytest.mark.parametrize(("rule", "body"), [
    ("hard-sigmoid-from-relu6", "t = Add (x, three)\n  r = Clip (t, zero, three)\n  y = Div (r, six)"),
    ("hard-sigmoid-from-relu6-mul", "t = Add (x, three)\n  r = Clip (t, zero, six)\n  y = Mul (r, half)"),
    ("hard-sigmoid-from-clip", "t = Mul (x, sixth)\n  u = Add (t, half)\n  y = Clip (u, zero, six)"),
    ("min-max-to-clip", "c = Max (x, six)\n  y = Min (c, zero)"),
    ("min-max-to-clip", "c = Max (x, zero)\n  y = Max (c, six)"),
    ("hard-swish", "h = HardSigmoid (x)\n  y = Mul (x, h)"),
])
def test_not_recognised(rule, body):
    stats = assert_no_rewrite(RULES, _model(body))
    assert stats.to_dict()["rejected"][rule]["declined"] == 1
