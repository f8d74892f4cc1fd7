"""``GradContext``: what a gradient rule uses to append backward nodes to the graph.

The context knows the graph, its default-domain opset and the forward node being differentiated.
It appends nodes and constants with fresh names, answers which inputs need a gradient
(``needs``), and provides the few idioms every family of rules shares:

- ``unbroadcast(grad, target)``: the adjoint of multidirectional (numpy) broadcasting. A value of
  shape ``t`` broadcast to shape ``g`` receives the sum of the gradient over the axes it was
  broadcast along: the leading ``rank(g) - rank(t)`` axes, and every axis where ``t`` has size 1.
  With static shapes those axes are known here and the result is one ReduceSum (plus a Squeeze of
  the leading axes). Where a symbolic size might be 1 at run time, the axes are computed in the
  graph: ``NonZero(Shape(target) padded with ones == 1)`` feeds a ReduceSum with
  ``noop_with_empty_axes=1``, followed by a Reshape to ``Shape(target)``.
- ``shape``/``size``: static constants where the shape is known, Shape/Size nodes otherwise.
- ``reduce``/``unsqueeze``/``squeeze``: emitted in the form the model's opset expects (axes as an
  input from opset 13 for ReduceSum/Squeeze/Unsqueeze, from opset 18 for the other reductions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import UnsupportedError
from onnxsmith.ir.names import GraphNames
from onnxsmith.ir.queries import Dim, dims_of

__all__ = ["Dim", "GradContext", "RuleOptions", "dims_of"]


@dataclass(frozen=True)
class RuleOptions:
    """Choices that change what some gradient rules compute.

    Attributes:
        quant_scales: ``frozen``: the scales of QuantizeLinear/DequantizeLinear get no gradient
            (straight-through estimator only); ``lsq``: they get the LSQ gradient.
        lsq_grad_scale: Multiply LSQ scale gradients by ``g = 1 / sqrt(N * qmax)`` (``N``
            elements share a scale), as Esser et al. 2020 recommend.
    """

    quant_scales: Literal["frozen", "lsq"] = "frozen"
    lsq_grad_scale: bool = False


class GradContext:
    """Appends backward nodes for one graph; rules receive it as their first argument.

    Args:
        graph: The graph being differentiated; backward nodes are appended to it.
        opset: The graph's default-domain opset version.
        options: Choices of the rules that have some.
    """

    def __init__(self, graph: ir.Graph, opset: int, options: RuleOptions | None = None) -> None:
        self.graph = graph
        self.opset = opset
        self.options = options or RuleOptions()
        self.nodes: list[ir.Node] = []
        self._names = GraphNames(graph)
        self._node: ir.Node | None = None
        self._needs: tuple[bool, ...] = ()
        self._shapes: dict[int, ir.Value] = {}
        self._constants: dict[tuple, ir.Value] = {}
        #: Gradients of Relu outputs already zero wherever the Relu is inactive (the MaxPool rule
        #: masks at pooled resolution); the Relu rule passes them through.
        self.relu_masked: set[ir.Value] = set()

    # -- the node being differentiated --------------------------------------------------------

    def begin(self, node: ir.Node, needs: Sequence[bool]) -> None:
        """Starts differentiating ``node``; ``needs[i]`` says whether input ``i`` wants a gradient."""
        self._node = node
        self._needs = tuple(needs)

    @property
    def node(self) -> ir.Node:
        """The forward node whose gradient is being built."""
        if self._node is None:
            raise RuntimeError("GradContext.begin() was not called")
        return self._node

    def needs(self, index: int) -> bool:
        """Whether input ``index`` of the current node needs a gradient."""
        return index < len(self._needs) and self._needs[index]

    def fail(self, message: str, remedy: str | None = None) -> UnsupportedError:
        """An error about the current node (raise it): ``"<Op> node '<name>': <message>"``."""
        node = self.node
        return UnsupportedError(f"cannot differentiate {node.op_type} node '{node.name}': {message}",
                                remedy or "freeze the parameters that reach this node")

    # -- emitting nodes and constants -----------------------------------------------------------

    def fresh(self, base: str) -> str:
        """A value or node name unused in the graph, derived from ``base``."""
        return self._names.fresh(base)

    def op(self, op_type: str, *inputs: ir.Value | None, outputs: int = 1, **attributes: Any) -> Any:
        """Appends a default-domain node; returns its output (a tuple when ``outputs > 1``).

        Attributes whose value is None are left out.
        """
        attrs = ir.convenience.convert_attributes({k: v for k, v in attributes.items() if v is not None})
        forward = self._node.name if self._node is not None and self._node.name else "grad"
        name = self.fresh(f"{forward}_grad_{op_type}")
        node = ir.Node("", op_type, inputs, attributes=attrs, num_outputs=outputs, name=name)
        for i, out in enumerate(node.outputs):
            out.name = self.fresh(f"{name}_out{i}" if outputs > 1 else name)
        self.graph.append(node)
        self.nodes.append(node)
        return node.outputs[0] if outputs == 1 else tuple(node.outputs)

    def const(self, array: Any, dtype: ir.DataType | None = None) -> ir.Value:
        """A constant initializer (shared between uses of equal small constants)."""
        data = np.asarray(array, dtype=dtype.numpy() if dtype is not None else None)
        key = (data.dtype.str, data.shape, data.tobytes()) if data.size <= 64 else None
        if key is not None and key in self._constants:
            return self._constants[key]
        value = ir.Value(name=self.fresh("grad_const"), type=ir.TensorType(ir.DataType.from_numpy(data.dtype)),
                         shape=ir.Shape(data.shape), const_value=ir.tensor(data))
        value.const_value.name = value.name
        self.graph.register_initializer(value)
        if key is not None:
            self._constants[key] = value
        return value

    def ints(self, values: Sequence[int]) -> ir.Value:
        """A 1-D int64 constant (axes, shapes, pads)."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1))

    def scalar(self, number: float, like: ir.Value) -> ir.Value:
        """A 0-d constant with ``like``'s element type."""
        return self.const(np.asarray(number), dtype=self.dtype(like))

    @staticmethod
    def constant(value: ir.Value | None) -> np.ndarray | None:
        """The value of an initializer or Constant node output as an array, else None."""
        if value is None:
            return None
        tensor = ir.convenience.get_const_tensor(value)
        return None if tensor is None else tensor.numpy()

    def dtype(self, value: ir.Value) -> ir.DataType:
        """The element type of a forward value (known once shapes are inferred)."""
        if value.dtype is None:
            raise self.fail(f"the element type of '{value.name}' is unknown", "run infer-shapes first")
        return value.dtype

    # -- shapes ---------------------------------------------------------------------------------

    def rank(self, value: ir.Value) -> int:
        """The rank of a forward value; an error when unknown."""
        if value.shape is None:
            raise self.fail(f"the rank of '{value.name}' is unknown", "run infer-shapes, or give inputs static ranks")
        return len(value.shape)

    def static_shape(self, value: ir.Value) -> tuple[int, ...] | None:
        """The shape of ``value`` when every dimension is a static size, else None."""
        dims = dims_of(value)
        if dims is None or not all(isinstance(d, int) for d in dims):
            return None
        return tuple(dims)  # type: ignore[arg-type]

    def shape(self, value: ir.Value) -> ir.Value:
        """``Shape(value)``: an int64 constant when static, else a (shared) Shape node."""
        static = self.static_shape(value)
        if static is not None:
            return self.ints(static)
        if id(value) not in self._shapes:
            self._shapes[id(value)] = self.op("Shape", value)
        return self._shapes[id(value)]

    def count(self, value: ir.Value, like: ir.Value) -> ir.Value:
        """The number of elements of ``value`` as a 0-d tensor of ``like``'s element type."""
        static = self.static_shape(value)
        if static is not None:
            return self.scalar(float(np.prod(static)), like)
        return self.op("Cast", self.op("Size", value), to=self.dtype(like))

    def zeros(self, shape: ir.Value, like: ir.Value) -> ir.Value:
        """Zeros of the given (int64 1-D) shape, with ``like``'s element type."""
        zero = ir.tensor(np.zeros(1, dtype=self.dtype(like).numpy()))
        return self.op("ConstantOfShape", shape, value=zero)

    # -- opset-aware forms ---------------------------------------------------------------------

    def reduce(self, op_type: str, x: ir.Value, axes: Sequence[int] | ir.Value, keepdims: bool = True) -> ir.Value:
        """A Reduce* node over ``axes`` (static list or int64 value), in the model's opset form."""
        axes_as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if axes_as_input:
            axes_value = axes if isinstance(axes, ir.Value) else self.ints(axes)
            return self.op(op_type, x, axes_value, keepdims=int(keepdims))
        if isinstance(axes, ir.Value):
            raise self.fail(f"{op_type} with computed axes needs opset 18", "convert the model to opset 18")
        return self.op(op_type, x, axes=list(axes), keepdims=int(keepdims))

    def unsqueeze(self, x: ir.Value, axes: Sequence[int] | ir.Value) -> ir.Value:
        """``Unsqueeze(x, axes)`` (axes as an input, opset 13 and later)."""
        return self.op("Unsqueeze", x, axes if isinstance(axes, ir.Value) else self.ints(axes))

    def squeeze(self, x: ir.Value, axes: Sequence[int]) -> ir.Value:
        """``Squeeze(x, axes)`` (axes as an input, opset 13 and later)."""
        return self.op("Squeeze", x, self.ints(axes))

    def reshape_like(self, x: ir.Value, like: ir.Value) -> ir.Value:
        """``x`` reshaped to the shape of ``like``."""
        return self.op("Reshape", x, self.shape(like))

    # -- broadcasting ----------------------------------------------------------------------------

    def unbroadcast(self, grad: ir.Value, target: ir.Value, grad_dims: Sequence[Dim] | None = None) -> ir.Value:
        """The gradient of ``target`` from ``grad``, the gradient of its broadcast (see module doc).

        Args:
            grad: Gradient with respect to the broadcast result.
            target: The value that was broadcast.
            grad_dims: The dimensions of ``grad``; by default those of the current node's first output.
        """
        if grad_dims is None:
            grad_dims = dims_of(self.node.outputs[0])
        target_dims = dims_of(target)
        if grad_dims is None or target_dims is None:
            raise self.fail("broadcasting of values of unknown rank", "run infer-shapes first")
        lead = len(grad_dims) - len(target_dims)
        axes: list[int] = list(range(lead))
        for i, t in enumerate(target_dims):
            g = grad_dims[lead + i]
            if t == 1:
                if g != 1:
                    axes.append(lead + i)
            elif not (isinstance(t, int) or g == 1 or (g is not None and g == t)):
                return self._unbroadcast_dynamic(grad, target, len(grad_dims))
        if not axes:
            return grad
        summed = self.reduce("ReduceSum", grad, axes, keepdims=True)
        return self.squeeze(summed, range(lead)) if lead else summed

    def _unbroadcast_dynamic(self, grad: ir.Value, target: ir.Value, grad_rank: int) -> ir.Value:
        target_shape = self.shape(target)
        lead = grad_rank - self.rank(target)
        padded = self.op("Concat", self.ints([1] * lead), target_shape, axis=0) if lead else target_shape
        ones = self.op("Equal", padded, self.ints([1]))
        axes = self.op("Reshape", self.op("NonZero", ones), self.ints([-1]))
        summed = self.op("ReduceSum", grad, axes, keepdims=1, noop_with_empty_axes=1)
        return self.op("Reshape", summed, target_shape)

