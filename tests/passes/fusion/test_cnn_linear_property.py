"""Property tests: ``fuse`` keeps its contract on random models of the CNN and linear families.

Each drawn model holds, side by side on independent inputs (all constants random):

- a Conv or a grouped ConvTranspose followed by an inference BatchNormalization;
- a Gemm (``transB`` either way, with or without ``C``) or a 2-D MatMul followed by a
  BatchNormalization, then a constant Mul (one number or per column) and a constant Add;
- a zero (or ``-inf`` after a Relu) Pad before a Conv, AveragePool or MaxPool;
- an activation in decomposed form: HardSwish (``/ 6`` or ``* 1/6``, Clip or Min/Max Relu6),
  HardSigmoid (``Clip(x / 6 + 0.5, 0, 1)``) or SiLU;
- two Reshapes in a row, the second with a ``0`` or ``-1``.

With the ``cpu`` target SiLU becomes QuickGelu; everything else is standard ONNX.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.verify import check_pass

ACTIVATIONS = {
    "hard-swish-div": "a1 = Add (z, three)\n  a2 = Clip (a1, zero, six)\n  a3 = Mul (z, a2)\n  act = Div (a3, six)",
    "hard-swish-minmax": "a1 = Add (three, z)\n  a0 = Max (a1, zero)\n  a2 = Min (a0, six)\n  a3 = Mul (a2, z)\n"
                         "  act = Mul (a3, sixth)",
    "hard-sigmoid": "a1 = Div (z, six)\n  a2 = Add (a1, half)\n  act = Clip (a2, zero, one)",
    "silu": "a1 = Sigmoid (z)\n  act = Mul (z, a1)",
}
POOLS = ("Conv", "AveragePool", "MaxPool")


def _tensor(name: str, array: np.ndarray, dtype: str = "float") -> str:
    array = np.asarray(array)
    shape = f"[{','.join(str(d) for d in array.shape)}]" if array.ndim else ""
    values = ", ".join(repr(float(v)) if dtype == "float" else str(int(v)) for v in array.ravel())
    return f"{dtype}{shape} {name} = {{{values}}}"


def _bn(rng: np.random.Generator, prefix: str, channels: int) -> dict[str, np.ndarray]:
    return {f"{prefix}g": rng.normal(size=channels), f"{prefix}b": rng.normal(size=channels),
            f"{prefix}m": rng.normal(size=channels), f"{prefix}v": rng.uniform(0.1, 2.0, size=channels)}


@st.composite
def cnn_linear_models(draw: st.DrawFn) -> str:
    """ONNX text of a model with one chain of each family (see the module docstring)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    consts: dict[str, np.ndarray] = {}
    ints: dict[str, list[int]] = {}
    nodes: list[str] = []

    # Conv or grouped ConvTranspose + BatchNormalization, on x [1, 2, 5, 5]
    group = draw(st.sampled_from([1, 2]))
    if draw(st.booleans()):
        consts["cw"] = rng.normal(size=(4, 2 // group, 3, 3))
        nodes.append(f"c = Conv <group = {group}> (x, cw)")
        conv_out = "float[1,4,3,3] cy"
    else:
        consts["cw"] = rng.normal(size=(2, 4 // group, 2, 2))
        nodes.append(f"c = ConvTranspose <group = {group}> (x, cw)")
        conv_out = "float[1,4,6,6] cy"
    consts |= _bn(rng, "c", 4)
    nodes.append("cy = BatchNormalization (c, cg, cb, cm, cv)")

    # Gemm or 2-D MatMul, BatchNormalization, constant Mul and Add, on u [3, 4] -> [3, 5]
    if draw(st.booleans()):
        trans_b = draw(st.integers(0, 1))
        consts["gw"] = rng.normal(size=(5, 4) if trans_b else (4, 5))
        bias = ""
        if draw(st.booleans()):
            consts["gc"] = rng.normal(size=draw(st.sampled_from([(5,), (1, 5), (3, 5)])))
            bias = ", gc"
        nodes.append(f"g = Gemm <transB = {trans_b}, alpha = 0.5> (u, gw{bias})")
    else:
        consts["gw"] = rng.normal(size=(4, 5))
        nodes.append("g = MatMul (u, gw)")
    consts |= _bn(rng, "g", 5)
    consts["gs"] = rng.normal(size=draw(st.sampled_from([(), (1,), (5,), (1, 5)])))
    consts["gk"] = rng.normal(size=draw(st.sampled_from([(1,), (5,), (1, 5)])))
    nodes += ["g1 = BatchNormalization (g, gg, gb, gm, gv)", "g2 = Mul (g1, gs)", "gy = Add (gk, g2)"]

    # Pad before a Conv or a pool, on p [1, 2, 4, 4]
    pool = draw(st.sampled_from(POOLS))
    pads = [0, 0, draw(st.integers(0, 1)), draw(st.integers(0, 1)), 0, 0, draw(st.integers(0, 1)), 1]
    ints["pp"] = pads
    source = "p"
    value = ""
    if pool == "MaxPool":
        nodes.append("pr = Relu (p)")
        source = "pr"
        consts["pv"] = np.array(draw(st.sampled_from([0.0, -np.inf])))
        value = ", pv"
    nodes.append(f"pd = Pad ({source}, pp{value})")
    if pool == "Conv":
        consts["pw"] = rng.normal(size=(3, 2, 2, 2))
        nodes.append("py = Conv <pads = [1, 0, 0, 1]> (pd, pw)")
        pool_out = "float[1,3,?,?] py"
    else:
        include = ", count_include_pad = 1" if draw(st.booleans()) else ""
        nodes.append(f"py = {pool} <kernel_shape = [2, 2]{include if pool == 'AveragePool' else ''}> (pd)")
        pool_out = "float[1,2,?,?] py"

    # A decomposed activation of z [2, 3] (scaled so that every branch of the Clip is taken)
    activation = draw(st.sampled_from(sorted(ACTIVATIONS)))
    if activation == "silu":  # on the typed input: QuickGelu needs to know it is float32
        nodes.append(ACTIVATIONS[activation])
    else:
        nodes.append("zs = Mul (z, four)")
        nodes.append(ACTIVATIONS[activation].replace("(z", "(zs").replace(", z)", ", zs)"))
    nodes.append("ay = Identity (act)")

    # Two Reshapes of r [2, 3, 4]
    ints["r1"], ints["r2"] = draw(st.sampled_from([([6, 4], [-1, 2, 3]), ([4, 6], [0, 2, 3]), ([6, 4], [0, 2, 2]),
                                                   ([24], [4, 6]), ([24], [-1, 4, 6])]))
    nodes += ["r0 = Reshape (r, r1)", "ry = Reshape (r0, r2)"]

    consts |= {"three": np.array(3.0), "zero": np.array(0.0), "six": np.array(6.0), "sixth": np.array(1 / 6),
               "half": np.array(0.5), "one": np.array(1.0), "four": np.array(4.0)}
    initializers = ", ".join([_tensor(n, a) for n, a in consts.items()] +
                             [_tensor(n, np.array(v), "int64") for n, v in ints.items()])
    body = "\n  ".join(nodes)
    return f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[1,2,5,5] x, float[3,4] u, float[1,2,4,4] p, float[2,3] z, float[2,3,4] r)
  => ({conv_out}, float[3,5] gy, {pool_out}, float[2,3] ay, float ry) <{initializers}> {{
  {body}
}}"""


@pytest.mark.parametrize("target", ["generic", "cpu"])
def test_fuse_keeps_its_contract_on_cnn_and_linear_models(target):
    check_pass("fuse", models=cnn_linear_models().map(parse_text), max_examples=25,
               context=lambda _model: PassContext(target=target))


@settings(max_examples=25, deadline=None)
@given(cnn_linear_models())
def test_every_chain_fuses_to_one_node(text):
    model = parse_text(text)
    PassManager("fuse", verify="numeric").run(model, PassContext(target="cpu"))
    ops = [node.op_type for node in model.graph]
    for gone in ("BatchNormalization", "Pad", "Div", "Min", "Max", "Sigmoid"):
        assert gone not in ops, ops
    assert ops.count("Reshape") == 1 and ops.count("Mul") <= 2, ops
