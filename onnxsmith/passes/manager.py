"""The pass manager: runs a pipeline, verifies after every pass, and records what happened.

For each pass it checks the ordering/property contract up front, then measures wall time, node
count, op histogram and tensor bytes before and after, runs the structural verifier (default), and with
``verify="numeric"`` compares the model's outputs with those of the *input* model on the same
inputs, within the sum of the tolerances of the passes run so far; the first pass that breaks
equivalence is named. In debug mode a fingerprint catches a pass that reports ``modified=False``
but changed the model.

An idempotent pass (``Pass.idempotent``) is not rerun when no pass changed the model since it
last ran with the same options: the rerun could only report ``modified=False``. Its record says
``skipped``. Debug mode reruns it anyway and fails if the rerun changes the model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TextIO

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import OnnxsmithError, PassFailedError, PipelineError, VerificationError
from onnxsmith.ir._gc import gc_paused
from onnxsmith.ir.queries import census
from onnxsmith.passes.base import Pass, PassContext, Tolerance
from onnxsmith.passes.pipeline import build_pipeline, check_order, have_after, pipeline_string
from onnxsmith.verify.structural import verified_census

__all__ = ["PassManager", "PassRecord", "PipelineReport", "VerifyLevel", "run_pipeline"]

log = logging.getLogger(__name__)

VerifyLevel = Literal["none", "structural", "numeric"]
VERIFY_LEVELS = ("none", "structural", "numeric")


@dataclass
class PassRecord:
    """Instrumentation of one pass run."""

    name: str
    spec: str
    modified: bool
    seconds: float
    nodes_before: int
    nodes_after: int
    bytes_before: int
    bytes_after: int
    stats: dict[str, Any] = field(default_factory=dict)
    max_abs_error: float | None = None
    ops_before: dict[str, int] = field(default_factory=dict)
    ops_after: dict[str, int] = field(default_factory=dict)


@dataclass
class PipelineReport:
    """What a pipeline run did, pass by pass."""

    pipeline: str
    verify: str
    records: list[PassRecord] = field(default_factory=list)
    seconds: float = 0.0
    numeric: list[dict] | None = None

    @property
    def modified(self) -> bool:
        return any(r.modified for r in self.records)

    def to_dict(self) -> dict:
        return {
            "pipeline": self.pipeline,
            "verify": self.verify,
            "seconds": self.seconds,
            "modified": self.modified,
            "passes": [asdict(r) for r in self.records],
            "numeric": self.numeric,
        }


def _fingerprint(model: ir.Model) -> str:
    import hashlib  # here, not at module level: importing it loads OpenSSL (3.5 MiB); only --debug needs it

    proto = ir.to_proto(model)
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


class PassManager:
    """Runs passes in order with verification and instrumentation.

    Args:
        passes: Pass instances, or pipeline strings, or a mix.
        verify: ``"none"``, ``"structural"`` (default) or ``"numeric"``.
        inputs: Inputs for numeric verification; generated from the graph's types when None.
        print_ir_after: Pass names (or ``"all"``) after which the IR is printed to ``ir_stream``.
        ir_stream: Where to print IR (a text stream); required with ``print_ir_after``.
        on_pass: Callback ``(record)`` after each pass, e.g. for progress output.
    """

    def __init__(self, passes: Sequence[Pass | str] | str, *, verify: VerifyLevel = "structural",
                 inputs: Mapping[str, np.ndarray] | None = None, print_ir_after: Sequence[str] = (),
                 ir_stream: TextIO | None = None, on_pass: Callable[[PassRecord], None] | None = None) -> None:
        if verify not in VERIFY_LEVELS:
            raise PipelineError(f"unknown verify level '{verify}'", f"use one of {', '.join(VERIFY_LEVELS)}")
        self.passes = build_pipeline(passes)
        self.verify = verify
        self.inputs = dict(inputs) if inputs is not None else None
        self.print_ir_after = set(print_ir_after)
        names = {p.name for p in self.passes}
        unknown = self.print_ir_after - names - {"all"}
        if unknown:
            raise PipelineError(f"--print-ir-after names '{sorted(unknown)[0]}', which is not in the pipeline",
                                f"pipeline: {pipeline_string(self.passes)}")
        self.ir_stream = ir_stream
        self.on_pass = on_pass

    @property
    def pipeline(self) -> str:
        return pipeline_string(self.passes)

    def run(self, model: ir.Model, ctx: PassContext | None = None) -> PipelineReport:
        """Runs the pipeline on ``model`` in place and returns the report."""
        ctx = ctx or PassContext()
        check_order(self.passes, ctx.properties)
        for p in self.passes:
            p.check_context(ctx)
        report = PipelineReport(self.pipeline, self.verify)
        log.info("pipeline: %s", report.pipeline)
        sizes = None  # node count, tensor bytes and ops of the model as it is now (None: not counted yet)
        if self.verify != "none":
            nodes, size, ops = verified_census(model, where="input model")
            sizes = (nodes, size, dict(sorted(ops.items())))
        reference = self._reference(model) if self.verify == "numeric" else None
        tolerance = Tolerance(0.0, 0.0)
        start = time.perf_counter()
        for p in self.passes:
            rerun = _needless_rerun(p, report.records)
            if rerun and not ctx.debug:
                record = self._skip(p, ctx, report.records[-1])
            else:
                record = self._run_one(p, model, ctx, sizes)
                if rerun and record.modified:
                    raise PassFailedError(f"pass '{p.name}' is declared idempotent but changed the model when rerun",
                                          "fix the pass, or set idempotent = False on it")
            sizes = (record.nodes_after, record.bytes_after, record.ops_after)
            report.records.append(record)
            tolerance = tolerance + p.tolerance
            if record.modified and reference is not None:  # structure: verified by _run_one
                record.max_abs_error = self._check_numeric(model, reference, tolerance, p.name, report)
            if self.ir_stream is not None and (p.name in self.print_ir_after or "all" in self.print_ir_after):
                self.ir_stream.write(f"// ----- IR after {p.spec()} -----\n{ir.to_onnx_text(model)}\n")
            if self.on_pass:
                self.on_pass(record)
        if reference is not None and not report.numeric:
            report.numeric = self._diffs(model, reference, tolerance)
        report.seconds = time.perf_counter() - start
        return report

    def _run_one(self, p: Pass, model: ir.Model, ctx: PassContext,
                 sizes: tuple[int, int, dict[str, int]] | None = None) -> PassRecord:
        # Node count, tensor bytes and ops carry over from the previous pass (counting is costly on big graphs).
        nodes_before, bytes_before, ops_before = sizes if sizes is not None else _census(model)
        before = _fingerprint(model) if ctx.debug else None
        t0 = time.perf_counter()
        try:
            with gc_paused():  # passes allocate many objects that stay alive; see onnxsmith.ir._gc
                result = p.run(model, ctx)
        except OnnxsmithError:
            raise
        except Exception as e:
            raise PassFailedError(f"pass '{p.name}' failed: {type(e).__name__}: {e}",
                                  "rerun with --debug for the traceback, and report it") from e
        seconds = time.perf_counter() - t0
        if result is None or not hasattr(result, "modified"):
            raise PassFailedError(f"pass '{p.name}' returned {result!r} instead of a PassResult")
        if before is not None and not result.modified and _fingerprint(model) != before:
            raise PassFailedError(f"pass '{p.name}' reported modified=False but changed the model",
                                  "fix the pass's return value")
        if result.modified:
            ctx.properties = have_after(p, ctx.properties)
        else:
            ctx.properties |= set(p.provides)
        if not result.modified:
            nodes_after, bytes_after, ops_after = nodes_before, bytes_before, ops_before
        elif self.verify == "none":
            nodes_after, bytes_after, ops_after = _census(model)
        else:  # verification and census in one walk
            nodes_after, bytes_after, ops = verified_census(model, where=f"after pass '{p.name}'")
            ops_after = dict(sorted(ops.items()))
        record = PassRecord(p.name, p.spec(), bool(result.modified), seconds, nodes_before, nodes_after,
                            bytes_before, bytes_after, dict(result.stats), ops_before=ops_before, ops_after=ops_after)
        log.info("%s: %s in %.3fs, nodes %d -> %d", p.name, "modified" if record.modified else "unchanged",
                 seconds, record.nodes_before, record.nodes_after)
        return record

    def _skip(self, p: Pass, ctx: PassContext, previous: PassRecord) -> PassRecord:
        """The record of an idempotent pass not rerun because the model is unchanged since its last run."""
        ctx.properties |= set(p.provides)
        log.info("%s: unchanged (skipped: model unchanged since it last ran)", p.name)
        nodes, size, ops = previous.nodes_after, previous.bytes_after, previous.ops_after
        return PassRecord(p.name, p.spec(), False, 0.0, nodes, nodes, size, size, {"skipped": 1},
                          ops_before=ops, ops_after=ops)

    def _reference(self, model: ir.Model) -> tuple[dict[str, np.ndarray], list[np.ndarray], list[str]]:
        from onnxsmith.verify.inputs import generate_inputs
        from onnxsmith.verify._session import run_model

        inputs = self.inputs if self.inputs is not None else generate_inputs(model)
        try:
            outputs = run_model(model, inputs)
        except OnnxsmithError as e:
            raise VerificationError(f"numeric verification impossible: {e.message}",
                                    "use --verify structural, or give inputs with --inputs") from e
        return inputs, outputs, [v.name for v in model.graph.outputs]

    def _diffs(self, model, reference, tolerance) -> list[dict]:
        from onnxsmith.verify._session import run_model
        from onnxsmith.verify.compare import compare_outputs

        inputs, expected, names = reference
        actual = run_model(model, inputs)
        return [d.to_dict() for d in compare_outputs(expected, actual, names, tolerance)]

    def _check_numeric(self, model, reference, tolerance, pass_name: str, report: PipelineReport) -> float:
        try:
            diffs = self._diffs(model, reference, tolerance)
        except OnnxsmithError as e:
            raise VerificationError(f"numeric check after pass '{pass_name}': {e.message}",
                                    "the pass produced a model onnxruntime cannot run") from e
        report.numeric = diffs
        bad = [d for d in diffs if not d["ok"]]
        if bad:
            d = bad[0]
            what = d["problem"] or f"max abs err {d['max_abs']:.3g}, max rel err {d['max_rel']:.3g}"
            raise VerificationError(
                f"pass '{pass_name}' broke numeric equivalence: output '{d['name']}' {what} "
                f"(tolerance rtol={tolerance.rtol:g}, atol={tolerance.atol:g})",
                "exclude that pass or report it with the model")
        return max((d["max_abs"] for d in diffs), default=0.0)


def _census(model: ir.Model) -> tuple[int, int, dict[str, int]]:
    """Node count, tensor bytes and the op histogram (``domain::Op`` outside the default domain, sorted by op)."""
    nodes, size, ops = census(model)
    return nodes, size, dict(sorted(ops.items()))


def _needless_rerun(p: Pass, records: Sequence[PassRecord]) -> bool:
    """Whether ``p`` is idempotent and ran before with the same options, with no change to the model since."""
    if not p.idempotent:
        return False
    spec = p.spec()
    for record in reversed(records):
        if record.spec == spec:
            return True
        if record.modified:
            return False
    return False


def run_pipeline(model: ir.Model, passes: Sequence[Pass | str] | str, ctx: PassContext | None = None,
                 **kwargs: Any) -> PipelineReport:
    """Convenience: ``PassManager(passes, **kwargs).run(model, ctx)``."""
    return PassManager(passes, **kwargs).run(model, ctx)
