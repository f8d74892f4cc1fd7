"""A synthetic, exporter-like ONNX model of any size, for benchmarking cleanup passes.

``make_model(num_nodes, seed)`` chains blocks shaped like what PyTorch and TF exporters emit:

    h = MatMul(h, W) -> Add(bias) -> Relu -> Dropout (inference) -> Identity
    shape = Concat(Constant[-1], Constant[H])          # foldable shape computation
    h = Reshape(h, shape) -> Transpose(perm=[0, 1]) -> Cast(to=float)   # no-ops
    g = Sigmoid(h); g' = Sigmoid(h)                     # a common subexpression
    h = Add(Mul(h, g), g') * Div(Constant 1, Constant sqrt(H))          # foldable scale
    Tanh(h) -> Mul(., c)                                # a dead branch, never used

Biases and shape constants are often byte-identical copies under different names (as exporters
write them per layer), some blocks leave a second dead branch or an unused initializer, and a few
blocks expose a graph output. About two thirds of the nodes disappear under a good ``cleanup``.
The input is ``float[batch, H]`` with a symbolic batch dimension; values stay finite.

Command line (writes the model with ``onnxsmith.save``)::

    python tools/synthetic.py out.onnx --nodes 100000 [--seed 0] [--hidden 8]
"""

from __future__ import annotations

import argparse
import logging
import math

import numpy as np
import onnx_ir as ir

from onnxsmith.ir import GraphBuilder, count_nodes, save

__all__ = ["NODES_PER_BLOCK", "make_model"]

log = logging.getLogger(__name__)

#: Nodes in one block (dead branches included); blocks with extras add a few more.
NODES_PER_BLOCK = 21
_FLOAT = ir.DataType.FLOAT


def _block(b: GraphBuilder, h: ir.Value, hidden: int, rng: np.random.Generator, shared_bias: np.ndarray) -> ir.Value:
    """Appends one block to ``b`` and returns its output value."""
    weight = (rng.standard_normal((hidden, hidden)) / math.sqrt(hidden)).astype(np.float32)
    duplicate_bias = rng.random() < 0.5
    bias = shared_bias if duplicate_bias else (0.1 * rng.standard_normal(hidden)).astype(np.float32)
    h = b.MatMul(h, b.const(weight))
    h = b.Add(h, b.const(bias.copy()))
    h = b.Relu(h)
    h = b.Dropout(h)
    h = b.Identity(h)
    shape = b.Concat(b.Constant(value=ir.tensor(np.array([-1], np.int64))), b.Constant(value=ir.tensor(np.array([hidden], np.int64))),
                     axis=0)
    h = b.Reshape(h, shape)
    h = b.Transpose(h, perm=[0, 1])
    h = b.Cast(h, to=_FLOAT)
    gate = b.Sigmoid(h)
    gate_again = b.Sigmoid(h)
    h = b.Add(b.Mul(h, gate), gate_again)
    scale = b.Div(b.Constant(value=ir.tensor(np.array(1.0, np.float32))),
                  b.Constant(value=ir.tensor(np.array(math.sqrt(hidden), np.float32))))
    h = b.Mul(h, scale)
    b.Mul(b.Tanh(h), b.const(np.float32(0.5)))  # dead branch
    if rng.random() < 0.2:
        b.Relu(b.Sub(h, b.const(np.zeros(hidden, np.float32))))  # another dead branch
    if rng.random() < 0.1:
        b.const(rng.standard_normal(hidden).astype(np.float32))  # an initializer nobody reads
    return h


def make_model(num_nodes: int, seed: int = 0, *, hidden: int = 8) -> ir.Model:
    """Builds a chain of blocks with about ``num_nodes`` nodes.

    Args:
        num_nodes: Approximate node count (at least one block is built).
        seed: Seed of the random weights and of which blocks get extras.
        hidden: Feature width H of every layer.

    Returns:
        The model (opset 17) with types on inputs and outputs; intermediate values carry no
        shapes, as in most exported files.
    """
    rng = np.random.default_rng(seed)
    b = GraphBuilder(opset=17, name="synthetic")
    h = b.input("x", "float32", ["batch", hidden])
    shared_bias = (0.1 * rng.standard_normal(hidden)).astype(np.float32)
    blocks = max(1, round(num_nodes / (NODES_PER_BLOCK + 0.6)))
    for i in range(blocks):
        h = _block(b, h, hidden, rng, shared_bias)
        if i % 1000 == 999:
            b.output(b.Identity(h), f"tap_{i + 1}", dtype="float32", shape=["batch", hidden])
    b.output(h, "y", dtype="float32", shape=["batch", hidden])
    model = b.build(infer_types=False)
    log.info("synthetic model: %d blocks, %d nodes", blocks, count_nodes(model))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="path of the .onnx file to write")
    parser.add_argument("--nodes", type=int, default=100_000, help="approximate node count (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=8, help="feature width of every layer (default 8)")
    args = parser.parse_args()
    model = make_model(args.nodes, args.seed, hidden=args.hidden)
    save(model, args.output)
    print(f"wrote {args.output}: {count_nodes(model)} nodes, {len(model.graph.initializers)} initializers")


if __name__ == "__main__":
    main()
