"""``ep_check``: ask onnxruntime where every node of a model runs on a target.

The answer comes from onnxruntime itself, never from our tables alone:

1. Static legality: ``Target.unsupported_nodes`` on the model as given (always).
2. If the target's provider is in this onnxruntime build, a session is created with the provider
   first and the CPU provider as the fallback onnxruntime always keeps, with the graph
   optimizations users get by default (``ORT_ENABLE_ALL``), profiling on and the optimized graph
   saved. One run on the given (or generated) inputs yields a profile whose node events carry the
   provider that executed each node: a node on any other provider is a fallback.
   Profiling is used because the placement onnxruntime logs at verbose level goes to its C++ logger,
   out of Python's reach, and ``session.disable_cpu_ep_fallback`` only fails the load without naming
   the nodes.
3. The optimized graph's op histogram shows what actually runs after onnxruntime's own fusions:
   integer kernels (``QuantConstraints.integer_ops``) and Q/DQ nodes left standalone.

If the provider is not in this build (e.g. CUDA on the CPU-only wheel), only step 1 runs and the
report says so.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxsmith.codegen.target import Target, UnsupportedNode
from onnxsmith.errors import first_line
from onnxsmith.ir.queries import op_histogram

__all__ = ["EpReport", "NodePlacement", "ep_check"]

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear",
                     "com.microsoft::QuantizeLinear", "com.microsoft::DequantizeLinear"})
_SHOWN = 10  # lines per list in format()


@dataclass(frozen=True)
class NodePlacement:
    """Where onnxruntime ran one node of its optimized graph (``op`` as onnxruntime names it, no domain)."""

    node: str
    op: str
    provider: str

    def to_dict(self) -> dict[str, str]:
        return {"node": self.node, "op": self.op, "provider": self.provider}


@dataclass
class EpReport:
    """Result of ``ep_check``.

    Attributes:
        target / provider: What was checked.
        status: ``ok`` (every node on the provider), ``fallback`` (some elsewhere), ``load-failed``,
            ``run-failed``, or ``provider-unavailable`` (only the static check ran).
        placements: Provider of every node onnxruntime executed (its optimized graph), in order.
        unsupported: Nodes of the given model the target's op table says it cannot run.
        optimized_ops: Op histogram of onnxruntime's optimized graph (empty if not obtained).
        integer_op_names: Ops that compute in integers on the provider (for ``integer_ops``).
        error: onnxruntime's first error line when the load or run failed.
        notes: Anything the reader should know about how the check ran.
    """

    target: str
    provider: str
    status: str
    placements: list[NodePlacement] = field(default_factory=list)
    unsupported: list[UnsupportedNode] = field(default_factory=list)
    optimized_ops: dict[str, int] = field(default_factory=dict)
    integer_op_names: frozenset[str] = frozenset()
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def fallbacks(self) -> list[NodePlacement]:
        """Nodes onnxruntime placed on a provider other than the target's."""
        return [p for p in self.placements if p.provider != self.provider]

    @property
    def nodes_per_provider(self) -> dict[str, int]:
        """How many executed nodes each provider ran, most first."""
        counts = Counter(p.provider for p in self.placements)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def integer_ops(self) -> dict[str, int]:
        """Integer kernels in the optimized graph, by op."""
        return {op: n for op, n in self.optimized_ops.items() if op in self.integer_op_names}

    @property
    def qdq_left(self) -> dict[str, int]:
        """QuantizeLinear/DequantizeLinear nodes onnxruntime did not fuse into integer kernels."""
        return {op: n for op, n in self.optimized_ops.items() if op in QDQ_OPS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "provider": self.provider,
            "status": self.status,
            "ok": self.ok,
            "placements": [p.to_dict() for p in self.placements],
            "nodes_per_provider": self.nodes_per_provider,
            "fallbacks": [p.to_dict() for p in self.fallbacks],
            "unsupported": [u.to_dict() for u in self.unsupported],
            "optimized_ops": dict(self.optimized_ops),
            "integer_ops": self.integer_ops,
            "qdq_left": self.qdq_left,
            "error": self.error,
            "notes": list(self.notes),
        }

    def format(self) -> str:
        """A one-screen text report."""
        lines = [f"ep-check {self.target} ({self.provider}): {self._headline()}"]
        if self.error:
            lines.append(f"  onnxruntime: {self.error}")
        if self.placements:
            lines.append("nodes per provider: " + ", ".join(f"{p} {n}" for p, n in self.nodes_per_provider.items()))
        lines += _listing("fallbacks", [f"{p.node} ({p.op}) on {p.provider}" for p in self.fallbacks])
        lines += _listing("unsupported (static check)",
                          [f"{u.node} ({u.op}): {u.reason}" for u in self.unsupported])
        if self.optimized_ops:
            total = sum(self.optimized_ops.values())
            ops = ", ".join(f"{op} {n}" for op, n in sorted(self.optimized_ops.items(), key=lambda kv: (-kv[1], kv[0])))
            lines.append(f"optimized graph: {total} nodes: {ops}")
            lines.append(f"integer ops: {_counts(self.integer_ops)}; Q/DQ left unfused: {_counts(self.qdq_left)}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _headline(self) -> str:
        if self.status == "ok":
            return f"ok: all {len(self.placements)} executed nodes on {self.provider}"
        if self.status == "fallback":
            return f"FALLBACK: {len(self.fallbacks)} of {len(self.placements)} executed nodes on another provider"
        if self.status == "provider-unavailable":
            return "provider not in this onnxruntime build; static check only"
        return self.status.upper()


def _listing(title: str, items: list[str]) -> list[str]:
    if not items:
        return []
    shown = [f"  {item}" for item in items[:_SHOWN]]
    if len(items) > _SHOWN:
        shown.append(f"  ... and {len(items) - _SHOWN} more")
    return [f"{title} ({len(items)}):", *shown]


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items())) or "none"


def ep_check(model: ir.Model, target: Target, inputs: Mapping[str, np.ndarray] | None = None) -> EpReport:
    """Reports every node of ``model`` that would not run on ``target``'s execution provider.

    Args:
        model: The model (not modified).
        target: The target whose provider should run every node.
        inputs: Feeds for the profiling run; generated from the graph's types and shapes when omitted.

    Returns:
        An ``EpReport``; ``report.ok`` is true when onnxruntime ran every node on the provider.
    """
    import onnxruntime as ort

    report = EpReport(target.name, target.provider, "ok", unsupported=target.unsupported_nodes(model),
                      integer_op_names=_integer_ops(target))
    available = ort.get_available_providers()
    if target.provider not in available:
        report.status = "provider-unavailable"
        report.notes.append(f"{target.provider} is not in this onnxruntime build (available: {', '.join(available)}); "
                            f"the static check uses {target.ops.source}")
        return report
    if inputs is None:
        from onnxsmith.verify import generate_inputs

        inputs = generate_inputs(model)
    with tempfile.TemporaryDirectory(prefix="onnxsmith-ep-check-") as tmp:
        _profile(model, target.provider, dict(inputs), Path(tmp), report)
    if report.status == "ok" and report.fallbacks:
        report.status = "fallback"
    return report


def _integer_ops(target: Target) -> frozenset[str]:
    """Integer kernels of the target's provider: ``generic`` runs on the CPU provider, whose kernels ``cpu`` lists."""
    from onnxsmith.codegen.targets import get_target, list_targets

    registered = (get_target(name) for name in list_targets())
    peers = [t.quant.integer_ops for t in registered if t.provider == target.provider]
    return target.quant.integer_ops.union(*peers)


def _profile(model: ir.Model, provider: str, inputs: dict[str, np.ndarray], folder: Path, report: EpReport) -> None:
    """Loads and runs the model once with profiling; fills placements, histogram, status and error."""
    from onnxsmith.ir import save

    model_path = folder / "model.onnx"
    save(model, model_path)
    session, optimized = _open_session(model_path, provider, folder, report)
    if session is None:
        return
    names = {i.name for i in session.get_inputs()}
    try:
        session.run(None, {k: v for k, v in inputs.items() if k in names})
    except Exception as e:  # onnxruntime raises its own exception types
        report.status, report.error = "run-failed", _first_line(e)
    report.placements = _placements(Path(session.end_profiling()))
    if optimized is not None and optimized.exists():
        proto = onnx.load(str(optimized), load_external_data=False)
        report.optimized_ops = dict(op_histogram(ir.serde.deserialize_model(proto)))


def _open_session(model_path: Path, provider: str, folder: Path, report: EpReport):
    """A profiling session saving its optimized graph, or not saving it where the provider compiles
    subgraphs (TensorRT), which onnxruntime refuses to serialize. Returns (session, optimized path)."""
    optimized = folder / "optimized.onnx"
    try:
        return _session(model_path, provider, folder, optimized), optimized
    except Exception as e:  # onnxruntime raises its own exception types
        if "contains compiled nodes" not in str(e):
            report.status, report.error = "load-failed", _first_line(e)
            return None, None
    report.notes.append(f"{provider} compiles subgraphs: onnxruntime cannot save its optimized graph")
    try:
        return _session(model_path, provider, folder, None), None
    except Exception as e:
        report.status, report.error = "load-failed", _first_line(e)
        return None, None


def _session(model_path: Path, provider: str, folder: Path, optimized: Path | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "profile")
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # failures surface as exceptions; keep onnxruntime's logger quiet
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         optimized.name + ".data")
    providers = [provider] if provider == CPU_PROVIDER else [provider, CPU_PROVIDER]
    logger.debug("ep-check session: providers %s", providers)
    return ort.InferenceSession(str(model_path), options, providers=providers)


def _placements(profile: Path) -> list[NodePlacement]:
    """Node events of an onnxruntime profile, once per node (a Loop body runs its nodes many times)."""
    events = json.loads(profile.read_text())
    seen: dict[str, NodePlacement] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or "provider" not in args:
            continue
        node = event["name"].removesuffix("_kernel_time")
        seen.setdefault(node, NodePlacement(node, args.get("op_name", "?"), args["provider"]))
    return list(seen.values())


def _first_line(error: BaseException) -> str:
    """onnxruntime's first error line, without the temporary path of the model it loaded."""
    return first_line(re.sub(r"Load model from \S+ failed:\s*", "", str(error).strip()))
