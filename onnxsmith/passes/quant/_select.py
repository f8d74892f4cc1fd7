"""Which nodes a data-free quantization pass may touch: op types, include and exclude lists.

Every entry of ``include`` and ``exclude`` is a regular expression that must match a node's whole
name or its whole op type (a plain name is a regular expression matching itself, so
``exclude=/encoder/layer.5/output/dense/MatMul`` and ``exclude=Gemm`` both work). A node is
selected when its op type is among ``op_types``, ``include`` is empty or matches it, and
``exclude`` does not match it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx_ir as ir

from onnxsmith.errors import PassOptionError

__all__ = ["NodeSelection"]


def _compile(pass_name: str, option: str, patterns: list[str]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as e:
            raise PassOptionError(f"option '{option}' of pass '{pass_name}': '{pattern}' is not a regular "
                                  f"expression ({e})", "escape special characters with a backslash") from None
    return tuple(compiled)


@dataclass(frozen=True)
class NodeSelection:
    """Op types and include/exclude patterns (see the module docstring)."""

    op_types: frozenset[str]
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_options(cls, pass_name: str, op_types: list[str], include: list[str],
                     exclude: list[str]) -> NodeSelection:
        """Compiles the patterns; a bad regular expression is a PassOptionError."""
        return cls(frozenset(op_types), _compile(pass_name, "include", include),
                   _compile(pass_name, "exclude", exclude))

    def why_not(self, node: ir.Node) -> str | None:
        """Why ``node`` is not selected, or None when it is."""
        if node.op_type not in self.op_types:
            return f"op type {node.op_type} is not in op-types ({', '.join(sorted(self.op_types))})"
        keys = (node.name or "", node.op_type)
        for pattern in self.exclude:
            if any(pattern.fullmatch(key) for key in keys):
                return f"excluded by '{pattern.pattern}'"
        if self.include and not any(p.fullmatch(key) for p in self.include for key in keys):
            return "matches no include pattern"
        return None
