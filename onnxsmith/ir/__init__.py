"""The IR layer: a thin layer over ``onnx_ir`` (load/save, builder, text, queries, views)."""

from __future__ import annotations

from onnxsmith.ir._io import load, save
from onnxsmith.ir.builder import GraphBuilder
from onnxsmith.ir.gs import from_gs, gs_pass, to_gs
from onnxsmith.ir.nx import to_networkx
from onnxsmith.ir.queries import all_graphs, all_nodes, count_nodes, op_histogram, tensor_bytes
from onnxsmith.ir.shapes import infer_shapes
from onnxsmith.ir.text import parse_text, to_text

__all__ = [
    "GraphBuilder",
    "all_graphs",
    "all_nodes",
    "count_nodes",
    "from_gs",
    "gs_pass",
    "infer_shapes",
    "load",
    "op_histogram",
    "parse_text",
    "save",
    "tensor_bytes",
    "to_gs",
    "to_networkx",
    "to_text",
]
