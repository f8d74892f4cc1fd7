"""Every registered pass, built in or plugin, keeps the pass contract on random models.

The list of passes is read from the registry when pytest collects this file, so a new pass is
checked without touching this test. ONNXSMITH_CONTRACT_EXAMPLES sets how many models each pass
sees (default 30). Passes that need something random models lack get it here: calibration data
for static quantization, the cpu target for QOperator lowering, models with a scalar loss and
float weights for gradient graphs.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import strategies as st

from onnxsmith.ir import GraphBuilder
from onnxsmith.passes import PassContext, list_passes
from onnxsmith.passes.quant.testing import calibrated_context
from onnxsmith.verify import check_pass

EXAMPLES = int(os.environ.get("ONNXSMITH_CONTRACT_EXAMPLES", "30"))

#: Passes that need calibration data in their context (static quantization).
CALIBRATED = frozenset({"annotate-quant", "insert-qdq", "tune-quant", "smooth-quant"})
#: Passes that only exist for a target other than the default one.
TARGETED = {"lower-qoperator": "cpu"}


@st.composite
def _loss_models(draw: st.DrawFn):
    """``loss = ReduceMean(act(x @ w1 + b1) @ w2)``: float weights and a scalar loss."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    batch, width, hidden = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    b = GraphBuilder(opset=draw(st.sampled_from([13, 17, 18])))
    x = b.input("x", "float32", [batch, width])
    w1 = b.initializer("w1", rng.standard_normal((width, hidden)).astype(np.float32))
    b1 = b.initializer("b1", rng.standard_normal(hidden).astype(np.float32))
    w2 = b.initializer("w2", rng.standard_normal((hidden, 2)).astype(np.float32))
    h = b.op(draw(st.sampled_from(["Relu", "Tanh", "Sigmoid"])), b.Add(b.MatMul(x, w1), b1))
    b.output(b.ReduceMean(b.MatMul(h, w2), keepdims=0), "loss")
    return b.build()


MODELS = {"build-gradients": _loss_models()}


def _context(name: str):
    if name in CALIBRATED:
        return calibrated_context(name)
    if name in TARGETED:
        return lambda _model: PassContext(target=TARGETED[name])
    return None


@pytest.mark.parametrize("name", sorted(list_passes()))
def test_pass_keeps_its_contract(name: str) -> None:
    check_pass(name, models=MODELS.get(name), max_examples=EXAMPLES, context=_context(name))
