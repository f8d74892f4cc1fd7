"""Building a replacement: the ``op`` a rewrite function receives.

``op.Gemm(a, b, c, transB=1)`` records a new node and returns its output (a tuple with
``_outputs=n``); ``_domain=`` and ``_name=`` (a name hint) work as in ``GraphBuilder``, other keyword
arguments are attributes (None means "leave out"). ``op.initializer(array, "hint")`` makes a new
constant with a fresh name; it never reuses or overwrites an existing initializer, because
something else may share it. Nothing touches the graph until the engine commits the replacement;
a declined rewrite is undone with :meth:`RewriterContext.discard`.

New names derive from the root node's name (or the rule's name): node ``<root>_<OpType>``, values
``<node>_out``; the engine then gives the values that replace the root's outputs the old names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite.match import Match
from onnxsmith.passes.rewrite.scope import Namer, Scope

__all__ = ["RewriterContext"]


class RewriterContext:
    """Records the nodes and constants of one replacement (see the module docstring).

    Attributes:
        nodes: New nodes, in creation order (a topological order).
        initializers: New initializer values (not yet in the graph).
    """

    def __init__(self, match: Match, scope: Scope, namer: Namer, rule_name: str) -> None:
        self._scope = scope
        self._namer = namer
        self._base = match.root.name or rule_name.replace("-", "_")
        self.nodes: list[ir.Node] = []
        self.initializers: list[ir.Value] = []

    @property
    def graph(self) -> ir.Graph:
        """The graph the replacement goes into (read it, do not change it)."""
        return self._scope.graph

    def opset(self, domain: str = "") -> int | None:
        """The version of ``domain`` imported where the replacement goes."""
        return self._scope.opsets.get(domain)

    def import_opset(self, domain: str, version: int) -> None:
        """Imports ``domain`` at ``version`` where the replacement goes, unless it is imported already.

        Unlike new nodes this takes effect at once; call it just before returning the replacement.
        """
        opsets = self._scope.opsets
        assert isinstance(opsets, dict), "scope opsets are the model's or function's import table"
        opsets.setdefault(domain, version)

    def __getattr__(self, op_type: str) -> Callable[..., Any]:
        if not op_type[:1].isupper():
            raise AttributeError(op_type)
        return lambda *inputs, **attributes: self.add_node(op_type, *inputs, **attributes)

    def add_node(self, op_type: str, *inputs: ir.Value | None, _domain: str = "", _outputs: int = 1,
                 _name: str | None = None, **attributes: Any) -> Any:
        """Records a node; returns its output, or a tuple of outputs when ``_outputs > 1``.

        None inputs are absent optional inputs; trailing ones are dropped.
        """
        inputs_list = list(inputs)
        while inputs_list and inputs_list[-1] is None:
            inputs_list.pop()
        attrs = ir.convenience.convert_attributes({k: v for k, v in attributes.items() if v is not None})
        name = self._namer.node(_name or f"{self._base}_{op_type}")
        node = ir.Node(_domain, op_type, inputs_list, attributes=attrs, num_outputs=_outputs, name=name)
        for i, out in enumerate(node.outputs):
            out.name = self._namer.value(f"{name}_out" if _outputs == 1 else f"{name}_out{i}")
        self.nodes.append(node)
        return node.outputs[0] if _outputs == 1 else tuple(node.outputs)

    def initializer(self, array: np.ndarray | ir.TensorProtocol, name: str | None = None) -> ir.Value:
        """A new constant holding ``array`` (its dtype is kept), named after ``name``.

        In a function body, where initializers are not allowed, it is a ``Constant`` node.
        """
        hint = name or f"{self._base}_const"
        if self._scope.in_function:
            tensor = array if isinstance(array, ir.TensorProtocol) else ir.tensor(np.asarray(array))
            value = self.add_node("Constant", _name=hint, value=tensor)
            value.name = self._namer.value(hint)
            value.type, value.shape = ir.TensorType(tensor.dtype), ir.Shape(tensor.shape.dims)
            return value
        value_name = self._namer.value(hint)
        tensor = array if isinstance(array, ir.TensorProtocol) else ir.tensor(np.asarray(array), name=value_name)
        value = ir.Value(name=value_name, type=ir.TensorType(tensor.dtype), shape=ir.Shape(tensor.shape.dims),
                         const_value=tensor)
        self.initializers.append(value)
        return value

    def discard(self) -> None:
        """Undoes the recording: the new nodes stop being users of the values they read."""
        for node in self.nodes:
            for i in range(len(node.inputs)):
                node.replace_input_with(i, None)
