"""Finding the quantized tensors of a quantized model and the float values they stand for.

A tensor is quantized when the quantized model holds one of:

* **an activation pair**: ``QuantizeLinear(x, s, zp) -> DequantizeLinear`` with ``x`` computed at
  run time. The dequantized output is what the rest of the graph sees instead of ``x``.
* **a stored weight**: ``DequantizeLinear(W_q, s, zp)`` of an integer constant (onnxruntime's
  ``w_quantized`` initializers, int32 biases included), or ``QuantizeLinear`` of a float
  constant followed by ``DequantizeLinear`` (weights not yet folded).
* **an integer weight of a fused kernel**: ``com.microsoft::DynamicQuantizeMatMul`` (int8 ``B``
  with per-tensor or per-column scales) and ``com.microsoft::MatMulNBits`` (4- or 8-bit
  blocks along K, integer zero points or none).

Each is matched to the float value of the fp32 model it replaces. Quantizers keep value names
(onnxruntime's ``quantize_static`` quantizes ``x`` as ``x -> x_QuantizeLinear_Output ->
x_DequantizeLinear_Output``) but not always: when the float value is a graph output the
dequantized output takes its name, and a folded Relu/Clip leaves its name on the op before it.
So the candidates are tried in order, and the first that exists in the fp32 model with the same
kind (computed vs constant) wins:

* activation: the quantizer's input name; the dequantized output's name; the same output of the
  same-named producer node.
* weight: the same input of the same-named consumer node; the dequantized output's name; the
  integer constant's name without a quantizer suffix (``_quantized``, ``_Q4``, ``_Q8``).

A weight candidate must also have the shape of the dequantized weight. Quantized tensors with no
match are listed as unmatched rather than guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.quant.scales import INTEGER_BOUNDS, QuantParams, dequantize, quantize
from onnxsmith.passes.rewrite.constants import constant_array, constant_dtype, non_constant_reason

__all__ = ["FoundTensors", "QuantizedTensor", "find_quantized_tensors", "integer_bounds"]

logger = logging.getLogger(__name__)

Kind = Literal["activation", "weight"]

_DOMAINS = ("", "ai.onnx", "com.microsoft")
_WEIGHT_SUFFIXES = ("_quantized", "_Q4", "_Q8", "_q")
_MATMUL_INPUT_OPS = frozenset({"MatMul", "Gemm"})


def integer_bounds(dtype: ir.DataType) -> tuple[int, int]:
    """``(qmin, qmax)`` of an integer type (the quantization types and int32 biases)."""
    if dtype in INTEGER_BOUNDS:
        return INTEGER_BOUNDS[dtype]
    info = np.iinfo(dtype.numpy())
    return int(info.min), int(info.max)


@dataclass(frozen=True)
class QuantizedTensor:
    """One quantized tensor and the fp32 value it replaces.

    Attributes:
        name: The float value in the fp32 model.
        kind: ``"activation"`` (quantized at run time) or ``"weight"`` (stored as integers).
        params: Scale, zero point, integer type, channel axis and block size.
        node: The quantized model's node that quantizes it (QuantizeLinear, or for weights the
            DequantizeLinear / fused kernel holding the integers).
        dequantized: For activations, the quantized model's value carrying the dequantized
            tensor (exposed as an output when measuring); empty for weights.
        feeds_matmul: The fp32 value is the data input (A) of a MatMul or Gemm there, the case
            SmoothQuant addresses.
        fp32_nodes: fp32 nodes producing or consuming the value (what an exclusion list names).
        channel_axis: For weights, the output-channel axis their consumer implies (MatMul: last,
            Gemm: by ``transB``, Conv: 0, ConvTranspose: 1), None when unknown.
        load_weight: For weights, returns ``(float weight, dequantized weight)`` on demand, so
            weights are read one at a time.
    """

    name: str
    kind: Kind
    params: QuantParams
    node: str
    dequantized: str = ""
    feeds_matmul: bool = False
    fp32_nodes: tuple[str, ...] = ()
    channel_axis: int | None = None
    load_weight: Callable[[], tuple[np.ndarray, np.ndarray]] | None = field(default=None, repr=False, compare=False)

    @property
    def granularity(self) -> str:
        """``per-tensor``, ``per-channel(axis=1)`` or ``blockwise(axis=0, block=32)``."""
        if self.params.block_size:
            return f"blockwise(axis={self.params.axis}, block={self.params.block_size})"
        if self.params.axis is not None:
            return f"per-channel(axis={self.params.axis})"
        return "per-tensor"


@dataclass(frozen=True)
class FoundTensors:
    """The result of :func:`find_quantized_tensors`.

    Attributes:
        tensors: Matched tensors, activations then weights, each in graph order.
        unmatched: ``"node: why"`` for each quantized tensor with no fp32 counterpart.
    """

    tensors: tuple[QuantizedTensor, ...]
    unmatched: tuple[str, ...]


class _Fp32Index:
    """Name lookups into the fp32 model: computed values, constants and nodes."""

    def __init__(self, model: ir.Model) -> None:
        graph = model.graph
        self.nodes = {node.name: node for node in graph if node.name}
        self.computed: dict[str, ir.Value] = {v.name: v for v in graph.inputs if not v.is_initializer()}
        self.constants: dict[str, ir.Value] = {}
        for name, value in graph.initializers.items():
            if non_constant_reason(value) is None:
                self.constants[name] = value
        for node in graph:
            for out in node.outputs:
                if non_constant_reason(out) is None:
                    self.constants[out.name] = out
                else:
                    self.computed[out.name] = out

    def touching(self, value: ir.Value) -> tuple[str, ...]:
        producer = value.producer()
        names = [producer.name] if producer is not None and producer.name else []
        names += [node.name for node in value.consumers() if node.name]
        return tuple(dict.fromkeys(names))

    @staticmethod
    def channel_axis(value: ir.Value) -> int | None:
        """Output-channel axis of a weight, from its first consumer that implies one."""
        for node, index in value.uses():
            if node.domain not in ("", "ai.onnx") or index != 1:
                continue
            if node.op_type == "MatMul":
                return -1
            if node.op_type == "Gemm":
                trans = node.attributes.get("transB")
                return 0 if trans is not None and trans.as_int() else 1
            if node.op_type in ("Conv", "ConvTranspose"):
                return 0 if node.op_type == "Conv" else 1
        return None

    @staticmethod
    def feeds_matmul(value: ir.Value) -> bool:
        return any(node.op_type in _MATMUL_INPUT_OPS and node.domain in ("", "ai.onnx") and index == 0
                   for node, index in value.uses())


def _is(node: ir.Node, op_type: str) -> bool:
    return node.op_type == op_type and node.domain in _DOMAINS


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or non_constant_reason(value) is not None:
        return None
    return constant_array(value)


def _params(node: ir.Node, rank: int | None) -> QuantParams | None:
    """Parameters of a QuantizeLinear/DequantizeLinear node, or None when they are not constant."""
    scale = _const(node.inputs[1])
    if scale is None:
        return None
    zero_input = node.inputs[2] if len(node.inputs) > 2 else None
    zero = _const(zero_input)
    if zero_input is not None and zero is None:
        return None
    if zero is not None:
        dtype = ir.DataType.from_numpy(zero.dtype)
    else:
        attr = node.attributes.get("output_dtype")
        dtype = ir.DataType(attr.as_int()) if attr is not None and attr.as_int() else ir.DataType.UINT8
        zero = np.zeros(scale.shape, dtype.numpy())
    block = node.attributes.get("block_size")
    block_size = block.as_int() if block is not None and block.as_int() > 0 else None
    axis = None
    if scale.size > 1 or block_size:
        attr = node.attributes.get("axis")
        axis = attr.as_int() if attr is not None else 1
        if axis < 0 and rank is not None:
            axis += rank
    else:
        scale, zero = scale.reshape(()), zero.reshape(())
    return QuantParams(scale.astype(np.float32), zero, dtype, axis, block_size)


def _rank(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def _strip_suffix(name: str) -> str | None:
    for suffix in _WEIGHT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


class _Finder:
    def __init__(self, quantized: ir.Model, fp32: ir.Model) -> None:
        self.graph = quantized.graph
        self.fp32 = _Fp32Index(fp32)
        self.tensors: list[QuantizedTensor] = []
        self.weights: list[QuantizedTensor] = []
        self.unmatched: list[str] = []
        self.seen: set[str] = set()

    def run(self) -> FoundTensors:
        for node in self.graph:
            if _is(node, "QuantizeLinear"):
                self._quantize(node)
            elif _is(node, "DequantizeLinear"):
                self._stored_weight(node)
            elif node.domain == "com.microsoft" and node.op_type == "DynamicQuantizeMatMul":
                self._dynamic_matmul(node)
            elif node.domain == "com.microsoft" and node.op_type == "MatMulNBits":
                self._matmul_nbits(node)
        return FoundTensors(tuple(self.tensors + self.weights), tuple(self.unmatched))

    def _skip(self, node: ir.Node, why: str) -> None:
        logger.info("quantized tensor at '%s' not reported: %s", node.name, why)
        self.unmatched.append(f"{node.name or node.op_type}: {why}")

    def _add(self, tensor: QuantizedTensor) -> None:
        if tensor.name in self.seen:  # one value quantized for several consumers
            return
        self.seen.add(tensor.name)
        (self.tensors if tensor.kind == "activation" else self.weights).append(tensor)

    # ---------------------------------------------------------------- activations

    def _quantize(self, q: ir.Node) -> None:
        x = q.inputs[0]
        dqs = [c for c in q.outputs[0].consumers() if _is(c, "DequantizeLinear")]
        if not dqs:
            self._skip(q, "no DequantizeLinear reads its output")
            return
        dq = dqs[0]
        params = _params(q, _rank(x))
        if params is None:
            self._skip(q, "scale or zero point is not a constant")
            return
        if non_constant_reason(x) is None:
            self._folded_weight(q, dq, x, params)
            return
        value = self._activation_match(x, dq)
        if value is None:
            self._skip(q, f"no fp32 value matches '{x.name}'")
            return
        self._add(QuantizedTensor(value.name, "activation", params, q.name, dq.outputs[0].name,
                                  self.fp32.feeds_matmul(value), self.fp32.touching(value)))

    def _activation_match(self, x: ir.Value, dq: ir.Node) -> ir.Value | None:
        computed = self.fp32.computed
        for name in (x.name, dq.outputs[0].name):
            if name in computed:
                return computed[name]
        producer = x.producer()
        twin = self.fp32.nodes.get(producer.name) if producer is not None and producer.name else None
        if twin is not None and x.index() is not None and x.index() < len(twin.outputs):
            out = twin.outputs[x.index()]
            return out if out.name in computed else None
        return None

    # ---------------------------------------------------------------- weights

    def _folded_weight(self, q: ir.Node, dq: ir.Node, weight: ir.Value, params: QuantParams) -> None:
        """QuantizeLinear of a float constant: the float weight is in the quantized model itself."""
        def load(value: ir.Value = weight, p: QuantParams = params) -> tuple[np.ndarray, np.ndarray]:
            w = constant_array(value).astype(np.float32)
            return w, dequantize(quantize(w, p), p)

        match = self._weight_match(dq, weight.name, _shape(weight))
        name = match.name if match is not None else weight.name
        self._add(self._weight(name, params, q.name, match, load))

    def _stored_weight(self, dq: ir.Node) -> None:
        integers = dq.inputs[0]
        producer = integers.producer()
        if producer is not None and _is(producer, "QuantizeLinear"):
            return  # an activation or folded-weight pair, handled from its QuantizeLinear
        if non_constant_reason(integers) is not None:
            self._skip(dq, f"its input '{integers.name}' is neither a constant nor a QuantizeLinear output")
            return
        params = _params(dq, _rank(integers))
        if params is None:
            self._skip(dq, "scale or zero point is not a constant")
            return
        match = self._weight_match(dq, integers.name, _shape(integers))
        if match is None:
            self._skip(dq, f"no fp32 constant matches '{integers.name}'")
            return

        def load(value: ir.Value = integers, fp32: ir.Value = match, p: QuantParams = params):
            return constant_array(fp32).astype(np.float32), dequantize(constant_array(value), p)

        self._add(self._weight(match.name, params, dq.name, match, load))

    def _weight(self, name: str, params: QuantParams, node: str, match: ir.Value | None,
                load: Callable[[], tuple[np.ndarray, np.ndarray]]) -> QuantizedTensor:
        if match is None:
            return QuantizedTensor(name, "weight", params, node, load_weight=load)
        return QuantizedTensor(name, "weight", params, node, fp32_nodes=self.fp32.touching(match),
                               channel_axis=self.fp32.channel_axis(match), load_weight=load)

    def _weight_match(self, dq: ir.Node, stored: str, shape: tuple[int, ...] | None) -> ir.Value | None:
        constants = self.fp32.constants
        candidates: list[str] = []
        for node, index in dq.outputs[0].uses():
            twin = self.fp32.nodes.get(node.name) if node.name else None
            if twin is not None and index < len(twin.inputs) and twin.inputs[index] is not None:
                candidates.append(twin.inputs[index].name)
        candidates.append(dq.outputs[0].name)
        stripped = _strip_suffix(stored)
        if stripped:
            candidates.append(stripped)
        return self._first_constant(candidates, shape)

    def _first_constant(self, candidates: list[str], shape: tuple[int, ...] | None) -> ir.Value | None:
        for name in candidates:
            value = self.fp32.constants.get(name)
            if value is not None and (shape is None or _shape(value) == shape):
                return value
        return None

    def _kernel_weight(self, node: ir.Node, stored: ir.Value, shape: tuple[int, ...], params: QuantParams,
                       load: Callable[[ir.Value], tuple[np.ndarray, np.ndarray]]) -> None:
        """A weight ``stored`` by a fused kernel that replaced an fp32 ``MatMul(A, weight)``."""
        twin = self.fp32.nodes.get(node.name)
        candidates = [twin.inputs[1].name] if twin is not None and twin.op_type == "MatMul" else []
        stripped = _strip_suffix(stored.name)
        candidates += [stripped] if stripped else []
        candidates += self._matmul_weights_reading(node.inputs[0])
        match = self._first_constant(candidates, shape)
        if match is None:
            self._skip(node, f"no fp32 constant matches '{stored.name}'")
            return
        self._add(self._weight(match.name, params, node.name, match, lambda fp32=match: load(fp32)))

    def _matmul_weights_reading(self, activation: ir.Value | None) -> list[str]:
        """Constant B inputs of fp32 MatMuls reading ``activation``, when there is exactly one."""
        value = self.fp32.computed.get(activation.name) if activation is not None else None
        if value is None:
            return []
        names = [node.inputs[1].name for node in value.consumers()
                 if node.op_type == "MatMul" and node.inputs[1] is not None and node.inputs[1].name in self.fp32.constants]
        return names if len(names) == 1 else []

    def _dynamic_matmul(self, node: ir.Node) -> None:
        """``DynamicQuantizeMatMul(A, B int8 [K, N], b_scale [N] or [], b_zero_point, bias)``."""
        stored = node.inputs[1]
        scale = _const(node.inputs[2])
        zero_input = node.inputs[3] if len(node.inputs) > 3 else None
        zero = _const(zero_input)
        if non_constant_reason(stored) is not None or scale is None or (zero_input is not None and zero is None):
            self._skip(node, "weight, scale or zero point is not a constant")
            return
        dtype = constant_dtype(stored)
        if zero is None:
            zero = np.zeros(scale.shape, dtype.numpy())
        per_column = scale.size > 1
        params = QuantParams(scale.astype(np.float32).reshape(-1 if per_column else ()),
                             zero.reshape(-1 if per_column else ()), dtype, 1 if per_column else None)

        def load(fp32: ir.Value) -> tuple[np.ndarray, np.ndarray]:
            return constant_array(fp32).astype(np.float32), dequantize(constant_array(stored), params)

        self._kernel_weight(node, stored, _shape(stored) or (), params, load)

    def _matmul_nbits(self, node: ir.Node) -> None:
        """``MatMulNBits(A, B uint8 [N, blocks, blob], scales, zero_points?)``: 2-8 bit blocks along K."""
        attrs = node.attributes
        k, n = attrs["K"].as_int(), attrs["N"].as_int()
        bits = attrs["bits"].as_int() if "bits" in attrs else 4
        if bits not in (4, 8):
            self._skip(node, f"{bits}-bit MatMulNBits weights are not supported by the report")
            return
        block = attrs["block_size"].as_int()
        blocks = -(-k // block)
        scales = _const(node.inputs[2])
        zero_input = node.inputs[3] if len(node.inputs) > 3 else None
        packed_zero = _const(zero_input)
        if scales is None or (zero_input is not None and packed_zero is None):
            self._skip(node, "scales or zero points are not constants")
            return
        if packed_zero is not None and packed_zero.dtype != np.uint8:
            self._skip(node, "float zero points are not supported by the report")
            return
        zero = (np.full((n, blocks), 1 << (bits - 1), np.uint8) if packed_zero is None
                else _unpack(packed_zero.reshape(n, -1), bits)[:, :blocks])
        dtype = ir.DataType.UINT4 if bits == 4 else ir.DataType.UINT8
        # As a QuantParams of the [K, N] float weight: blocks along axis 0.
        params = QuantParams(scales.astype(np.float32).reshape(n, blocks).T, zero.T, dtype, 0, block)
        stored = node.inputs[1]

        def load(fp32: ir.Value) -> tuple[np.ndarray, np.ndarray]:
            codes = _unpack(constant_array(stored).reshape(n, -1), bits)[:, :k]
            return constant_array(fp32).astype(np.float32), dequantize(codes.T, params)

        self._kernel_weight(node, stored, (k, n), params, load)


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned ``bits``-wide codes packed low bits first in each byte, row by row."""
    per_byte = 8 // bits
    shifts = (np.arange(per_byte, dtype=np.uint8) * bits)[None, None, :]
    codes = (packed[:, :, None] >> shifts) & ((1 << bits) - 1)
    return codes.reshape(packed.shape[0], -1).astype(np.uint8)


def _shape(value: ir.Value) -> tuple[int, ...] | None:
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is not None:
        return tuple(tensor.shape.dims)
    if value.shape is None or not all(isinstance(d, int) for d in value.shape.dims):
        return None
    return tuple(value.shape.dims)


def find_quantized_tensors(quantized: ir.Model, fp32: ir.Model) -> FoundTensors:
    """Every quantized tensor of ``quantized`` (main graph), matched to ``fp32`` (see module docstring)."""
    return _Finder(quantized, fp32).run()
