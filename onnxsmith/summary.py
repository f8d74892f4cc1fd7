"""A read-only summary of a model: what ``optimize-graph inspect`` shows.

Everything here comes from the graph structure and tensor *headers*: sizes of external tensors
are their declared sizes (``dtype.itemsize * prod(shape)``), so summarizing a model never reads
its external weights. Node counts include subgraphs (If/Loop/Scan bodies); nodes inside
model-local functions are counted per function.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import onnx_ir as ir

from onnxsmith.ir.queries import all_graphs, count_nodes, op_histogram

__all__ = ["FunctionInfo", "ModelSummary", "TensorInfo", "ValueInfo", "summarize"]

#: How many of the largest tensors a summary lists.
LARGEST_TENSORS = 5


def dtype_name(dtype: ir.DataType | None) -> str:
    """ONNX-style lower-case element type name (``float``, ``int64``), or ``?`` when unknown."""
    return dtype.name.lower() if dtype is not None else "?"


def shape_dims(shape: ir.Shape | None) -> list[int | str | None] | None:
    """Dimensions as ints, symbolic names, or None for unknown; None for an unknown rank."""
    if shape is None:
        return None
    return [d if isinstance(d, int) else d.value for d in shape.dims]


@dataclass
class ValueInfo:
    """A graph input or output: name, element type and dimensions."""

    name: str
    dtype: str
    shape: list[int | str | None] | None

    def describe(self) -> str:
        """``float[batch,1,8,8]`` style text."""
        if self.shape is None:
            return f"{self.dtype}[?]"
        return f"{self.dtype}[{','.join('?' if d is None else str(d) for d in self.shape)}]"


@dataclass
class TensorInfo:
    """One initializer: where it lives and how large it is."""

    name: str
    dtype: str
    shape: list[int]
    nbytes: int
    external: bool


@dataclass
class FunctionInfo:
    """A model-local function."""

    domain: str
    name: str
    nodes: int


@dataclass
class ModelSummary:
    """Facts about a model, as shown by ``optimize-graph inspect``."""

    path: str | None
    file_bytes: int | None
    ir_version: int
    producer: str
    opsets: dict[str, int]
    graph_name: str
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    nodes: int
    subgraphs: int
    ops: dict[str, int]
    initializers: int
    inline_bytes: int
    external_bytes: int
    external_files: list[str]
    largest_tensors: list[TensorInfo]
    functions: list[FunctionInfo] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _value_info(value: ir.Value) -> ValueInfo:
    return ValueInfo(value.name or "", dtype_name(value.dtype), shape_dims(value.shape))


def _tensor_infos(model: ir.Model) -> list[TensorInfo]:
    infos = []
    for graph in all_graphs(model):
        for name, value in graph.initializers.items():
            tensor = value.const_value
            if tensor is None:
                continue
            infos.append(TensorInfo(name, dtype_name(tensor.dtype), [int(d) for d in tensor.shape.dims],
                                    int(tensor.nbytes), isinstance(tensor, ir.ExternalTensor)))
    return infos


def _external_files(model: ir.Model) -> list[str]:
    files = set()
    for graph in all_graphs(model):
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                files.add(value.const_value.location)
    return sorted(files)


def summarize(model: ir.Model, path: str | os.PathLike | None = None) -> ModelSummary:
    """Summarizes ``model`` without reading external tensor data.

    Args:
        model: The model (as returned by ``onnxsmith.ir.load``).
        path: The file it came from, to report its size.

    Returns:
        The summary; ``ops`` is ordered from most to least frequent, then by name.
    """
    tensors = _tensor_infos(model)
    histogram = op_histogram(model)
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    return ModelSummary(
        path=os.fspath(path) if path is not None else None,
        file_bytes=os.path.getsize(path) if path is not None else None,
        ir_version=model.ir_version,
        producer=producer,
        opsets=dict(sorted(model.opset_imports.items())),
        graph_name=model.graph.name or "",
        inputs=[_value_info(v) for v in model.graph.inputs if v.name not in model.graph.initializers],
        outputs=[_value_info(v) for v in model.graph.outputs],
        nodes=count_nodes(model),
        subgraphs=sum(1 for _ in all_graphs(model)) - 1,
        ops=dict(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))),
        initializers=len(tensors),
        inline_bytes=sum(t.nbytes for t in tensors if not t.external),
        external_bytes=sum(t.nbytes for t in tensors if t.external),
        external_files=_external_files(model),
        largest_tensors=sorted(tensors, key=lambda t: (-t.nbytes, t.name))[:LARGEST_TENSORS],
        functions=[FunctionInfo(f.domain, f.name, sum(1 for _ in f)) for f in model.functions.values()],
        metadata=dict(model.metadata_props),
    )
