"""Property tests: ``fuse`` keeps the pass contract on random fusable models, and fuses them fully.

The generic random models of tests/verify rarely contain a fusable Conv or MatMul, so this file
draws models that do: a Conv (any group and kernel, with or without bias), optionally followed by
an inference BatchNormalization, a per-channel constant Mul, a per-channel constant Add and an
activation, next to a 2-D MatMul by a constant plus a ``[N]`` or ``[1, N]`` bias whose input
optionally goes through two cancelling Transposes; all constants random. The activation fuses
only for the ``cpu`` target (com.microsoft FusedConv).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.verify import check_pass

SPATIAL = 5
ACTIVATIONS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu <alpha = 0.1>", "HardSigmoid", "Clip")


def _tensor(name: str, array: np.ndarray) -> str:
    array = np.asarray(array, dtype=np.float32)
    shape = f"[{','.join(str(d) for d in array.shape)}]" if array.ndim else ""
    return f"float{shape} {name} = {{{', '.join(repr(float(v)) for v in array.ravel())}}}"


@st.composite
def fusable_models(draw: st.DrawFn) -> str:
    """ONNX text of a model with Conv(+BatchNormalization)(+Add) and MatMul + Add chains."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    group = draw(st.sampled_from([1, 2]))
    cin, cout = group * draw(st.integers(1, 2)), group * draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 3))
    with_bias, with_bn = draw(st.booleans()), draw(st.booleans())
    scale = draw(st.sampled_from([None, (1, cout, 1, 1), (cout, 1, 1), (1,), ()]))
    shift = draw(st.sampled_from([None, (1, cout, 1, 1), (cout, 1, 1), (1,)]))
    activation = draw(st.sampled_from([None, *ACTIVATIONS]))
    transposed = draw(st.booleans())
    rows, inner, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    bias_shape = draw(st.sampled_from([(cols,), (1, cols)]))

    consts = {"w": rng.normal(size=(cout, cin // group, kernel, kernel)),
              "wm": rng.normal(size=(inner, cols)), "bm": rng.normal(size=bias_shape)}
    conv_inputs = "x, w, b" if with_bias else "x, w"
    if with_bias:
        consts["b"] = rng.normal(size=cout)
    nodes = [f"c = Conv <group = {group}> ({conv_inputs})"]
    last = "c"
    if with_bn:
        consts |= {"gamma": rng.normal(size=cout), "beta": rng.normal(size=cout), "mean": rng.normal(size=cout),
                   "var": rng.uniform(0.1, 2.0, size=cout)}
        nodes.append("n = BatchNormalization (c, gamma, beta, mean, var)")
        last = "n"
    if scale is not None:
        consts["f"] = rng.normal(size=scale)
        nodes.append(f"m = Mul({last}, f)")
        last = "m"
    if shift is not None:
        consts["k"] = rng.normal(size=shift)
        nodes.append(f"s = Add(k, {last})")
        last = "s"
    if activation is not None:
        nodes.append(f"a = {activation} ({last})")
        last = "a"
    nodes += [f"y = Identity({last})"]
    nodes += ["ut = Transpose(u)", "uu = Transpose(ut)", "t = MatMul(uu, wm)"] if transposed else ["t = MatMul(u, wm)"]
    nodes += ["v = Add(t, bm)"]
    out = SPATIAL - kernel + 1
    initializers = ", ".join(_tensor(name, array) for name, array in consts.items())
    body = "\n  ".join(nodes)
    return f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[1,{cin},{SPATIAL},{SPATIAL}] x, float[{rows},{inner}] u) => (float[1,{cout},{out},{out}] y,
   float[{rows},{cols}] v) <{initializers}> {{
  {body}
}}"""


@pytest.mark.parametrize("target", ["generic", "cpu"])
def test_fuse_keeps_its_contract_on_fusable_models(target):
    check_pass("fuse", models=fusable_models().map(parse_text), max_examples=30,
               context=lambda _model: PassContext(target=target))


@settings(max_examples=30, deadline=None)
@given(fusable_models())
def test_fuse_leaves_one_conv_and_one_gemm(text):
    model = parse_text(text)
    PassManager("fuse{enable=conv-activation}", verify="numeric").run(model, PassContext(target="cpu"))
    conv = "FusedConv" if any(f"= {act}" in text for act in ACTIVATIONS) else "Conv"
    assert [node.op_type for node in model.graph] == [conv, "Identity", "Gemm"]
