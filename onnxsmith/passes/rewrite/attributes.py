"""Reading node attributes the way the operator sees them: absent attributes take their default.

``Gemm`` without ``transB`` *is* ``Gemm`` with ``transB=0``, so patterns and rules read attributes
through :func:`attribute_value`, which falls back to the default declared by the operator schema
of the opset version the graph imports. Lists come back as tuples; tensors as ``ir`` tensors;
subgraphs as ``ir.Graph``. FLOAT attributes are stored as float32, so :func:`attribute_equals`
compares expected floats after rounding them to float32.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx.defs
import onnx_ir as ir

__all__ = ["MISSING", "attribute_equals", "attribute_value"]


class _Missing:
    """An attribute that is neither set nor has a schema default."""

    def __repr__(self) -> str:
        return "<absent>"


MISSING: Any = _Missing()


def _normalize(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=4096)
def _schema_defaults(domain: str, op_type: str, version: int) -> Mapping[str, Any]:
    try:
        schema = onnx.defs.get_schema(op_type, version, domain)
    except onnx.defs.SchemaError:
        return {}
    defaults: dict[str, Any] = {}
    for name, attr in schema.attributes.items():
        if attr.default_value is not None and attr.default_value.name:
            defaults[name] = _normalize(ir.serde.deserialize_attribute(attr.default_value).value)
    return defaults


def attribute_value(node: ir.Node, name: str, opsets: Mapping[str, int]) -> Any:
    """The attribute ``name`` of ``node``, its schema default, or :data:`MISSING`.

    Args:
        node: The node.
        name: Attribute name.
        opsets: Opset imports of the node's graph (domain -> version) to find the schema.
    """
    attr = node.attributes.get(name)
    if attr is not None:
        return _normalize(attr.value)
    domain = "" if node.domain == "ai.onnx" else node.domain
    version = opsets.get(domain, opsets.get("ai.onnx") if domain == "" else None)
    if version is None:
        return MISSING
    return _schema_defaults(domain, node.op_type, version).get(name, MISSING)


def attribute_equals(actual: Any, expected: Any) -> bool:
    """Whether an attribute value equals the expected one (floats compared as float32)."""
    if actual is MISSING:
        return False
    expected = _normalize(expected)
    if isinstance(actual, float) or (isinstance(actual, tuple) and actual and isinstance(actual[0], float)):
        try:
            return bool(np.array_equal(np.asarray(actual, np.float32), np.asarray(expected, np.float32)))
        except (TypeError, ValueError):
            return False
    return actual == expected
