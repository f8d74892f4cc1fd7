"""Family masked-softmax: Softmax(Add(s, mask)) floored at the row maximum - 60 on the cpu target."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from hypothesis import strategies as st

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion.masked_softmax import FLOOR, MASK_FILL_LIMIT, RULES
from onnxsmith.passes.rewrite import apply_rules
from onnxsmith.passes.rewrite.testing import assert_no_rewrite, assert_rewrites
from onnxsmith.verify import check_pass
from onnxsmith.verify._session import run_model

from attention_models import LOWEST, Block, build, inputs

MS = "masked-softmax-floor"


def _where_mask(opset: int, fill: str = "-3.4028235e38") -> str:
    return f"""<ir_version: 8, opset_import: ["" : {opset}]>
g (float[2,3,4,4] s, bool[2,1,1,4] keep) => (float[2,3,4,4] p) <float zero = {{0.0}}, float fill = {{{fill}}}> {{
  a = Where (keep, zero, fill)
  y = Add (s, a)
  [softmax] p = Softmax <axis = -1> (y)
}}"""


def test_where_mask_gets_the_floor_opset17():
    after = """<ir_version: 8, opset_import: ["" : 17]>
g (float[2,3,4,4] s, bool[2,1,1,4] keep) => (float[2,3,4,4] p)
  <float zero = {0.0}, float fill = {-3.4028235e38}, float softmax_floor = {60.0}> {
  a = Where (keep, zero, fill)
  y = Add (s, a)
  [softmax_ReduceMax] softmax_ReduceMax_out = ReduceMax <axes = [-1], keepdims = 1> (y)
  [softmax_Sub] softmax_Sub_out = Sub (softmax_ReduceMax_out, softmax_floor)
  [softmax_Max] softmax_Max_out = Max (y, softmax_Sub_out)
  [softmax_Softmax] p = Softmax <axis = -1> (softmax_Max_out)
}"""
    stats = assert_rewrites(RULES, _where_mask(17), after)
    assert stats.applied == {MS: 1}


def test_opset18_reads_the_axes_as_an_input():
    after = """<ir_version: 8, opset_import: ["" : 18]>
g (float[2,3,4,4] s, bool[2,1,1,4] keep) => (float[2,3,4,4] p)
  <float zero = {0.0}, float fill = {-3.4028235e38}, int64[1] softmax_axes = {-1}, float softmax_floor = {60.0}> {
  a = Where (keep, zero, fill)
  y = Add (s, a)
  [softmax_ReduceMax] softmax_ReduceMax_out = ReduceMax <keepdims = 1> (y, softmax_axes)
  [softmax_Sub] softmax_Sub_out = Sub (softmax_ReduceMax_out, softmax_floor)
  [softmax_Max] softmax_Max_out = Max (y, softmax_Sub_out)
  [softmax_Softmax] p = Softmax <axis = -1> (softmax_Max_out)
}"""
    assert_rewrites(RULES, _where_mask(18), after)


def test_softmax_before_opset13_floors_over_the_flattened_row():
    before = """<ir_version: 8, opset_import: ["" : 11]>
g (float[2,3,4] s, float[2,1,4] m) => (float[2,3,4] p) <float one = {1.0}, float fill = {-10000.0}> {
  inv = Sub (one, m)
  a = Mul (inv, fill)
  y = Add (a, s)
  [softmax] p = Softmax <axis = 1> (y)
}"""
    model = parse_text(before)
    PassManager("infer-shapes", verify="none").run(model, PassContext())
    assert apply_rules(model, RULES).applied == {MS: 1}
    (reduce_max,) = [n for n in model.graph if n.op_type == "ReduceMax"]
    assert reduce_max.attributes["axes"].as_ints() == (1, 2)


def test_minilm_like_block_is_bit_identical():
    """The floor changes no float32 result on an attention block with padded keys."""
    for form in ("classic", "gathernd", "flat"):
        block = Block(mask=form)
        model, feeds = build(block), inputs(block, batch=4, seq=6)
        expected = run_model(model, feeds)[0]
        PassManager("cleanup,fuse", verify="structural").run(model, PassContext(target="cpu"))
        ops = [n.op_type for n in model.graph]
        assert ops.count("ReduceMax") == 1 and ops.count("Softmax") == 1, form
        np.testing.assert_array_equal(run_model(model, feeds)[0], expected)


def test_opt_in_attention_still_fuses_the_block():
    model = build(Block())
    PassManager("cleanup,fuse{enable=attention}", verify="structural").run(model, PassContext(target="cpu"))
    ops = [n.op_type for n in model.graph]
    assert "Attention" in ops and "ReduceMax" not in ops and "Softmax" not in ops


@pytest.mark.parametrize("target, applies", [("cpu", True), ("generic", False), ("cuda", False)])
def test_only_the_cpu_target_lowers_it(target, applies):
    model = parse_text(_where_mask(17))
    PassManager("fuse", verify="structural").run(model, PassContext(target=target))
    assert ("ReduceMax" in [n.op_type for n in model.graph]) is applies


def test_report_counts_applications_and_rejections():
    model = parse_text(_where_mask(17))
    result = PassManager("fuse", verify="structural").run(model, PassContext(target="cpu"))
    stats = result.records[-1].stats
    # the new Softmax reads the floor, not an Add: tried again and not matched
    assert stats["applied"][MS] == 1 and stats["rejected"][MS] == {"op-type": 1}


@pytest.mark.parametrize("fill", ["-50.0", "1.0"])
def test_a_fill_whose_exp_stays_normal_is_left_alone(fill):
    stats = assert_no_rewrite(RULES, _where_mask(17, fill))
    assert stats.rejected[MS] == {"declined": 1}
    reason = next(iter(stats.reasons[MS]))
    assert "not an additive mask whose exp underflows" in reason


def test_a_plain_sum_is_left_alone():
    stats = assert_no_rewrite(RULES, """<ir_version: 8, opset_import: ["" : 17]>
g (float[2,4] s, float[2,4] bias) => (float[2,4] p) {
  y = Add (s, bias)
  p = Softmax <axis = -1> (y)
}""")
    assert "no operand is a Where or Mul of a constant" in next(iter(stats.reasons[MS]))


def test_double_and_shared_sums_are_not_matched():
    double = _where_mask(17).replace("float[2,3,4,4]", "double[2,3,4,4]").replace("float zero", "double zero") \
        .replace("float fill", "double fill")
    assert "float32 only" in next(iter(assert_no_rewrite(RULES, double).reasons[MS]))
    shared = _where_mask(17).replace("=> (float[2,3,4,4] p)", "=> (float[2,3,4,4] p, float[2,3,4,4] y)")
    assert assert_no_rewrite(RULES, shared).rejected[MS] == {"shared-intermediate": 1}


def test_the_bound_on_the_change():
    """Lifting entries to max - 60 moves a row's probabilities by at most n * e^-60 (relative)."""
    rng = np.random.default_rng(0)
    n = 4096
    y = rng.normal(0, 5, n)
    y[rng.random(n) < 0.6] = LOWEST
    peak = y.max()
    exact = np.exp(y - peak) / np.exp(y - peak).sum()
    floored = np.maximum(y, peak - FLOOR)
    lifted = np.exp(floored - peak) / np.exp(floored - peak).sum()
    assert np.max(np.abs(lifted - exact)) <= n * np.exp(-FLOOR)
    assert MASK_FILL_LIMIT == pytest.approx(np.log(np.finfo(np.float32).tiny))


@st.composite
def masked_softmaxes(draw: st.DrawFn) -> ir.Model:
    """Softmax over scores plus a Where or Mul mask, any rank 2-4 and axis, opsets 11, 13, 17, 18."""
    rank = draw(st.integers(2, 4))
    dims = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    opset = draw(st.sampled_from([11, 13, 17, 18]))
    axis = draw(st.integers(-rank, rank - 1))
    fill = draw(st.sampled_from(["-3.4028235e38", "-10000.0", "-100.0"]))
    shape = ",".join(map(str, dims))
    if draw(st.booleans()):
        mask = "a = Where (keep, zero, fill)"
    else:
        mask = "m = Cast <to = 1> (keep)\n  inv = Sub (one, m)\n  a = Mul (inv, fill)"
    scale = draw(st.sampled_from(["1.0", "30.0"]))  # 30: scores spread beyond the floor
    model = parse_text(f"""<ir_version: 8, opset_import: ["" : {opset}]>
g (float[{shape}] x, bool[{shape}] keep) => (float[{shape}] p)
  <float zero = {{0.0}}, float one = {{1.0}}, float fill = {{{fill}}}, float k = {{{scale}}}> {{
  s = Mul (x, k)
  {mask}
  y = Add (s, a)
  p = Softmax <axis = {axis}> (y)
}}""")
    PassManager("infer-shapes", verify="none").run(model, PassContext())  # types, as cleanup leaves them
    return model


def test_fuse_keeps_its_contract_on_masked_softmaxes():
    """Every drawn model is floored (types inferred, fill at or below ln(FLT_MIN))."""
    check_pass("fuse", models=masked_softmaxes(), options={"rules": ["masked-softmax"]}, max_examples=30,
               context=lambda _model: PassContext(target="cpu"))
