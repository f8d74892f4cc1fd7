"""``Target``: an execution target (an onnxruntime execution provider) described as data.

A target says which ops it runs (an ``OpTable``, possibly computed lazily from the installed
onnxruntime), which fusion families are worth applying for it, and what it accepts from
quantization. ``supports``/``unsupported_nodes`` are the static legality check: a node is legal
when its op, at the opset its model imports for the node's domain, is in the target's table.
Calls to model-local functions are checked through their bodies (onnxruntime inlines them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import onnx_ir as ir

from onnxsmith.codegen.fusion_families import FUSION_FAMILIES
from onnxsmith.codegen.optable import Lookup, OpTable, normalize_domain
from onnxsmith.codegen.quant import QuantConstraints
from onnxsmith.ir.queries import all_nodes

__all__ = ["Target", "UnsupportedNode", "op_name"]


def op_name(domain: str, op_type: str) -> str:
    """``Op`` for the default domain, ``domain::Op`` otherwise (as in op histograms)."""
    domain = normalize_domain(domain)
    return f"{domain}::{op_type}" if domain else op_type


@dataclass(frozen=True)
class UnsupportedNode:
    """A node the target cannot run, and why."""

    node: str
    op: str
    opset: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "opset": self.opset, "reason": self.reason}


@dataclass(frozen=True)
class Target:
    """An execution target.

    Attributes:
        name: Registered name (``generic``, ``cpu``, ``cuda``, ``tensorrt``).
        provider: onnxruntime execution provider that runs it, where ``ep_check`` looks
            (``generic`` is checked on ``CPUExecutionProvider``).
        description: One line for listings.
        fusions: Fusion families worth applying for this target (names from ``FUSION_FAMILIES``).
        opt_in_fusions: Families whose ops the target runs but that measured slower than leaving
            the pattern to the runtime: applied only when named (``fuse{rules=attention}``).
        op_table_source: Returns the op table (may compute it on first use; callers cache).
        quant_source: Returns the quantization constraints (may derive them from the op table).
    """

    name: str
    provider: str
    description: str
    fusions: frozenset[str]
    op_table_source: Callable[[], OpTable] = field(repr=False, compare=False)
    quant_source: Callable[[], QuantConstraints] = field(repr=False, compare=False)
    opt_in_fusions: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = (self.fusions | self.opt_in_fusions) - FUSION_FAMILIES.keys()
        if unknown:
            raise ValueError(f"target {self.name}: unknown fusion families {sorted(unknown)}")

    @property
    def ops(self) -> OpTable:
        """The ops this target runs."""
        return self.op_table_source()

    @property
    def quant(self) -> QuantConstraints:
        """What this target accepts from quantization."""
        return self.quant_source()

    def allows_fusion(self, family: str, *, named: bool = False) -> bool:
        """Whether fusions of ``family`` should be applied for this target.

        Args:
            family: A name from ``FUSION_FAMILIES``.
            named: The user asked for this family by name, which also allows ``opt_in_fusions``.

        Raises:
            ValueError: ``family`` is not a known fusion family (a typo in a rule definition).
        """
        if family not in FUSION_FAMILIES:
            raise ValueError(f"unknown fusion family '{family}'")
        return family in self.fusions or (named and family in self.opt_in_fusions)

    def why_unsupported(self, domain: str, op_type: str, opset: int) -> str | None:
        """None if ``domain::op_type`` at ``opset`` runs on this target, else the reason in words."""
        table = self.ops
        outcome = table.lookup(domain, op_type, opset)
        op = op_name(domain, op_type)
        if outcome is Lookup.SUPPORTED:
            return None
        if outcome is Lookup.UNKNOWN_OP:
            return f"{op} is unknown to {table.source}"
        if outcome is Lookup.NOT_IN_OPSET:
            return f"{op} does not exist at opset {opset}"
        since = table.since_version(domain, op_type, opset)
        at = "" if since == opset else f" at opset {opset}"
        return f"{table.source} has no kernel for {op}({since}){at}"

    def supports_op(self, domain: str, op_type: str, opset: int) -> bool:
        """Whether the target runs ``domain::op_type`` when its domain is imported at ``opset``."""
        return self.why_unsupported(domain, op_type, opset) is None

    def supports(self, node: ir.Node, opset_imports: Mapping[str, int]) -> bool:
        """Whether the target runs ``node`` in a model with these opset imports."""
        return self._node_problem(node, opset_imports) is None

    def unsupported_nodes(self, model: ir.Model) -> list[UnsupportedNode]:
        """Every node of the model (subgraphs and local functions included) the target cannot run."""
        found = []
        for node, imports in _nodes_with_imports(model):
            problem = self._node_problem(node, imports)
            if problem is not None:
                found.append(problem)
        return found

    def _node_problem(self, node: ir.Node, opset_imports: Mapping[str, int]) -> UnsupportedNode | None:
        domain = normalize_domain(node.domain)
        opset = node.version if node.version is not None else _imported(opset_imports, domain)
        label = node.name or f"<unnamed {node.op_type}>"
        op = op_name(domain, node.op_type)
        if opset is None:
            return UnsupportedNode(label, op, None, f"the model does not import domain '{domain}'")
        reason = self.why_unsupported(domain, node.op_type, opset)
        return None if reason is None else UnsupportedNode(label, op, opset, reason)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (the op table by source and size, not in full)."""
        table = self.ops
        return {
            "name": self.name,
            "provider": self.provider,
            "description": self.description,
            "ops": {"source": table.source, "count": len(table.kernels)},
            "fusions": sorted(self.fusions),
            "opt_in_fusions": sorted(self.opt_in_fusions),
            "quantization": self.quant.to_dict(),
        }


def _imported(opset_imports: Mapping[str, int], domain: str) -> int | None:
    if domain == "":
        return opset_imports.get("", opset_imports.get("ai.onnx"))
    return opset_imports.get(domain)


def _nodes_with_imports(model: ir.Model) -> Iterator[tuple[ir.Node, Mapping[str, int]]]:
    """Nodes to check with the opset imports that govern them; calls to local functions are skipped
    in favour of the functions' bodies."""
    local = set(model.functions)

    def is_call(node: ir.Node) -> bool:
        return (node.domain, node.op_type, node.overload) in local

    for node in all_nodes(model):
        if not is_call(node):
            yield node, model.opset_imports
    for function in model.functions.values():
        imports = {**model.opset_imports, **function.opset_imports}
        for node in all_nodes(function.graph):
            if not is_call(node):
                yield node, imports
