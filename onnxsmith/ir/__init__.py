"""The IR layer: a thin layer over ``onnx_ir`` (load/save, builder, text, queries, views).

The model is always onnx_ir's own objects. A few hot paths go faster than onnx_ir's public API
allows on graphs of 10^5 nodes. ``_fast_serialize`` (save, shape inference) writes the protobuf
wire format itself from public reads; its tests compare its bytes with onnx_ir's serializer on
every onnx backend model. ``_fast_deserialize`` (load), ``_fast_shape``, ``_fields`` (C-level
field getters, node lists) and ``_release`` (dropping a removed node's inputs) use onnx_ir's
private fields: each checks at import, on a sample object, that it builds or reads exactly what
the public API does, and falls back to the public API when not (another onnx_ir version), slower
then, never different (``_private`` holds that rule).
"""

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
