"""Property tests: ``fuse`` keeps the pass contract on random GELU and residual + LayerNormalization blocks."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.verify import check_pass

GELU_FAMILIES = ["contrib-gelu", "fast-gelu", "gelu", "bias-gelu"]

#: (x / sqrt 2 spelling, cube spelling) -> the GELU factor A, reading ``h`` (the input after the bias)
_ERF = {"div": "q = Div (h, sqrt2)\n  r = Erf (q)\n  a = Add (r, one)",
        "mul": "q = Mul (h, inv_sqrt2)\n  r = Erf (q)\n  a = Add (one, r)"}
_TANH = {"pow": "c = Pow (h, three)\n  k = Mul (c, kappa)",
         "torch": "h2 = Mul (h, h)\n  c = Mul (h, h2)\n  k = Mul (c, kappa)",
         "jax": "hk = Mul (h, kappa)\n  h2 = Mul (h, hk)\n  k = Mul (h, h2)"}
_PLACEMENTS = {"xa-half": "xa = Mul (h, a)\n  y = Mul (xa, half)",
               "x-ahalf": "ah = Mul (a, half)\n  y = Mul (h, ah)",
               "xhalf-a": "xh = Mul (h, half)\n  y = Mul (xh, a)"}
_GELU_CONSTS = ("float sqrt2 = {1.4142135}, float inv_sqrt2 = {0.70710677}, float one = {1.0}, float half = {0.5}, "
                "float three = {3.0}, float kappa = {0.044715}, float beta_c = {0.7978846}")


def _inferred(text: str) -> ir.Model:
    """The model with value types and shapes inferred, as ``cleanup`` leaves it for ``fuse``."""
    model = parse_text(text)
    PassManager("infer-shapes", verify="none").run(model, PassContext())
    return model


def _floats(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> str:
    values = ", ".join(repr(float(v)) for v in rng.normal(size=shape).astype(np.float32).ravel())
    return f"float[{','.join(map(str, shape))}] {name} = {{{values}}}"


@st.composite
def gelu_models(draw: st.DrawFn):
    """Exact or tanh GELU in every exporter placement, with or without a bias Add, at opset 17 or 20."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    biased = draw(st.booleans())
    if draw(st.booleans()):
        factor = _ERF[draw(st.sampled_from(sorted(_ERF)))]
    else:
        cube = _TANH[draw(st.sampled_from(sorted(_TANH)))]
        factor = f"{cube}\n  u = Add (h, k)\n  v = Mul (u, beta_c)\n  t = Tanh (v)\n  a = Add (t, one)"
    placement = _PLACEMENTS[draw(st.sampled_from(sorted(_PLACEMENTS)))]
    head = "h = Add (x, b)" if biased else "h = Identity (x)"
    shape = ",".join(map(str, dims))
    return _inferred(f"""<ir_version: 9, opset_import: ["" : {draw(st.sampled_from([17, 20]))}]>
g (float[{shape}] x) => (float[{shape}] y) <{_GELU_CONSTS}, {_floats("b", (dims[-1],), rng)}> {{
  {head}
  {factor}
  {placement}
}}""")


@st.composite
def residual_norms(draw: st.DrawFn):
    """Residual Add (+ constant bias) + LayerNormalization over the last axis, the sum optionally read again."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dims = draw(st.lists(st.integers(1, 4), min_size=2, max_size=3))
    hidden = dims[-1]
    biased, with_beta, shared = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    shape = ",".join(map(str, dims))
    nodes = ["t = Add (x, b)", "s = Add (t, skip)"] if biased else ["s = Add (x, skip)"]
    nodes.append(f"n = LayerNormalization <epsilon = 1e-5> (s, gamma{', beta' if with_beta else ''})")
    nodes.append("y = Mul (s, n)" if shared else "y = Identity (n)")
    consts = [_floats("b", (hidden,), rng), _floats("gamma", (hidden,), rng), _floats("beta", (hidden,), rng)]
    body = "\n  ".join(nodes)
    return _inferred(f"""<ir_version: 9, opset_import: ["" : 17]>
g (float[{shape}] x, float[{shape}] skip) => (float[{shape}] y) <{", ".join(consts)}> {{
  {body}
}}""")


@pytest.mark.parametrize("target", ["generic", "cpu"])
def test_fuse_keeps_its_contract_on_gelu_blocks(target):
    check_pass("fuse", models=gelu_models(), options={"rules": GELU_FAMILIES}, max_examples=25,
               context=lambda _model: PassContext(target=target))


def test_fuse_keeps_its_contract_on_residual_layer_norms():
    check_pass("fuse", models=residual_norms(), options={"rules": ["skip-layer-norm"]}, max_examples=25,
               context=lambda _model: PassContext(target="cpu"))


@settings(max_examples=25, deadline=None)
@given(gelu_models())
def test_every_drawn_gelu_fuses_on_cpu(model):
    PassManager("fuse", verify="numeric").run(model, PassContext(target="cpu"))
    ops = {node.op_type for node in model.graph}
    assert not ops & {"Erf", "Tanh", "Pow"} and ops & {"Gelu", "FastGelu", "BiasGelu"}


@settings(max_examples=25, deadline=None)
@given(residual_norms())
def test_every_drawn_residual_norm_fuses_on_cpu(model):
    PassManager("fuse{enable=skip-layer-norm}", verify="numeric").run(model, PassContext(target="cpu"))
    ops = [node.op_type for node in model.graph]
    assert "LayerNormalization" not in ops and ops.count("SkipLayerNormalization") == 1
