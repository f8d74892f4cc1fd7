"""Property tests: ``fuse`` keeps the pass contract on random fusable models, and fuses them fully.

The generic random models of tests/verify rarely contain a fusable Conv or MatMul, so this file
draws models that do: a Conv (any group and kernel, with or without bias), optionally followed by
an inference BatchNormalization and by a per-channel constant Add, next to a 2-D MatMul by a
constant plus a ``[N]`` or ``[1, N]`` bias; all constants random.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.verify import check_pass

SPATIAL = 5


def _tensor(name: str, array: np.ndarray) -> str:
    dims = ",".join(str(d) for d in array.shape)
    return f"float[{dims}] {name} = {{{', '.join(repr(float(v)) for v in array.astype(np.float32).ravel())}}}"


@st.composite
def fusable_models(draw: st.DrawFn) -> str:
    """ONNX text of a model with Conv(+BatchNormalization)(+Add) and MatMul + Add chains."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    group = draw(st.sampled_from([1, 2]))
    cin, cout = group * draw(st.integers(1, 2)), group * draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 3))
    with_bias, with_bn = draw(st.booleans()), draw(st.booleans())
    shift = draw(st.sampled_from([None, (1, cout, 1, 1), (cout, 1, 1), (1,)]))
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
    if shift is not None:
        consts["k"] = rng.normal(size=shift)
        nodes.append(f"s = Add(k, {last})")
        last = "s"
    nodes += [f"y = Identity({last})", "t = MatMul(u, wm)", "v = Add(t, bm)"]
    out = SPATIAL - kernel + 1
    initializers = ", ".join(_tensor(name, array) for name, array in consts.items())
    body = "\n  ".join(nodes)
    return f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[1,{cin},{SPATIAL},{SPATIAL}] x, float[{rows},{inner}] u) => (float[1,{cout},{out},{out}] y,
   float[{rows},{cols}] v) <{initializers}> {{
  {body}
}}"""


def test_fuse_keeps_its_contract_on_fusable_models():
    check_pass("fuse", models=fusable_models().map(parse_text), max_examples=40)


@settings(max_examples=30, deadline=None)
@given(fusable_models())
def test_fuse_leaves_one_conv_and_one_gemm(text):
    model = parse_text(text)
    PassManager("fuse", verify="numeric").run(model, PassContext())
    assert [node.op_type for node in model.graph] == ["Conv", "Identity", "Gemm"]
