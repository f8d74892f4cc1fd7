"""Family embed-layer-norm: BERT embedding Gathers + Adds + LayerNormalization as EmbedLayerNormalization."""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.fusion.embed_layer_norm import RULES
from onnxsmith.passes.rewrite import apply_rules, explain
from onnxsmith.verify._session import run_model

TABLES = ("float[10,4] W = {" + ", ".join(str(0.1 * i) for i in range(40)) + "}, "
          "float[6,4] P = {" + ", ".join(str(0.05 * i - 1) for i in range(24)) + "}, "
          "float[2,4] T = {1.0, -2.0, 0.5, 0.0, 0.25, 0.5, -1.0, 2.0}, "
          "float[4] g = {1.0, 2.0, 0.5, -1.0}, float[4] beta = {0.25, 0.0, -0.5, 1.0}, "
          "int64[1,6] buffer = {0, 1, 2, 3, 4, 5}, int64[1] zero = {0}, int64[1] one = {1}")

TORCHSCRIPT = """
  shape = Shape (ids)
  len = Gather <axis = 0> (shape, one_scalar)
  end = Unsqueeze (len, zero)
  positions = Slice (buffer, zero, end, one, one)"""

DYNAMO = """
  end = Shape <start = 1, end = 2> (seg)
  positions = Slice (buffer, zero, end, one, one)"""


def _model(positions: str = TORCHSCRIPT, ids: str = "int64[batch,seq] ids, int64[batch,seq] seg",
           sums: str = "a = Add (w, s)\n  e = Add (a, p)", ln: str = "LayerNormalization <epsilon = 1e-12>") -> str:
    return f"""<ir_version: 9, opset_import: ["" : 17]>
g ({ids}) => (float[batch,seq,4] y) <{TABLES}, int64 one_scalar = {{1}}> {{{positions}
  w = Gather (W, ids)
  s = Gather (T, seg)
  p = Gather (P, positions)
  {sums}
  [ln] y = {ln} (e, g, beta)
}}"""


def _inferred(text: str):
    """The model with value types and shapes inferred, as after cleanup."""
    model = parse_text(text)
    PassManager("infer-shapes", verify="none").run(model, PassContext())
    return model


def _feeds(seq: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"ids": rng.integers(0, 10, size=(3, seq)), "seg": rng.integers(0, 2, size=(3, seq))}


@pytest.mark.parametrize(("exporter", "positions", "sums"), [
    ("torchscript", TORCHSCRIPT, "a = Add (w, s)\n  e = Add (a, p)"),
    ("dynamo", DYNAMO, "a = Add (w, s)\n  e = Add (a, p)"),
    ("position first", TORCHSCRIPT, "a = Add (p, w)\n  e = Add (s, a)"),
])
def test_embeddings_become_one_node(exporter, positions, sums):
    text = _model(positions=positions, sums=sums)
    model = _inferred(text)
    stats = apply_rules(model, RULES)
    assert stats.applied["embed-layer-norm"] == 1, exporter
    fused = [n for n in model.graph if n.op_type == "EmbedLayerNormalization"]
    assert len(fused) == 1 and fused[0].domain == "com.microsoft"
    assert [v.name for v in fused[0].inputs[2:7]] == ["W", "P", "T", "g", "beta"]
    assert fused[0].attributes["epsilon"].as_float() == pytest.approx(1e-12)
    expected, actual = run_model(parse_text(text), _feeds()), run_model(model, _feeds())
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-4, atol=1e-5)


def test_without_segments_and_beta():
    text = _model(sums="e = Add (w, p)", ids="int32[batch,seq] ids, int64[batch,seq] seg").replace(
        "(e, g, beta)", "(e, g)")
    model = _inferred(text)
    assert apply_rules(model, RULES).applied["embed-layer-norm-no-segment"] == 1
    (fused,) = [n for n in model.graph if n.op_type == "EmbedLayerNormalization"]
    assert fused.inputs[0].name == "ids"  # int32 ids need no Cast
    assert fused.inputs[1] is None and fused.inputs[4] is None
    np.testing.assert_array_equal(fused.inputs[6].const_value.numpy(), np.zeros(4, np.float32))
    feeds = {"ids": _feeds()["ids"].astype(np.int32), "seg": _feeds()["seg"]}
    np.testing.assert_allclose(run_model(model, feeds)[0], run_model(parse_text(text), feeds)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("case", "text", "message"), [
    ("position ids are an input", _model(positions="", ids="int64[batch,seq] ids, int64[batch,seq] seg, "
                                                         "int64[1,seq] positions"),
     "no Gather reads position ids"),
    ("slice end is not the sequence length", _model(positions="\n  positions = Slice (buffer, zero, one, one, one)"),
     "is not provably the sequence length"),
    ("ids of other shapes", _model(positions=DYNAMO, ids="int64[batch,seq] ids, int64[1,seq] seg"),
     "not provably one shape"),
    ("two axes normalised", _model(ln="LayerNormalization <axis = 1>"), "does not normalise the last axis"),
])
def test_not_fused(case, text, message):
    model = _inferred(text)
    assert apply_rules(model, RULES).rewrites == 0, case
    reasons = explain(RULES.rules[0], _inferred(text), "ln")
    assert any(message in reason for reason in reasons), (case, reasons)


def test_fuse_on_cpu_leaves_only_the_fused_node_and_casts():
    model = _inferred(_model())
    PassManager("fuse", verify="numeric").run(model, PassContext(target="cpu"))
    assert sorted(n.op_type for n in model.graph) == ["Cast", "Cast", "EmbedLayerNormalization"]
    model = _inferred(_model())
    PassManager("fuse").run(model, PassContext(target="generic"))
    assert "EmbedLayerNormalization" not in [n.op_type for n in model.graph]
