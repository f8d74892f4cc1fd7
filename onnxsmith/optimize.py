"""Optimizing a model file: load, run a verified pipeline, save atomically.

This is the one code path behind ``optimize-graph IN OUT`` and ``optimize-graph demo``. The input
file is never written: an output path naming the input (or its external data file) is refused
before anything runs, and the output is written to a temporary file renamed into place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from onnxsmith.codegen import get_target
from onnxsmith.errors import OutputError, PipelineError
from onnxsmith.input_data import check_inputs, load_input_data
from onnxsmith.ir import count_nodes, load, save
from onnxsmith.ir._gc import gc_paused, gc_young_only
from onnxsmith.ir.queries import all_graphs
from onnxsmith.passes import PassContext, PassManager, PipelineReport

if TYPE_CHECKING:  # the calibration package is imported only by runs that use ranges
    from onnxsmith.calibration import Ranges
    from onnxsmith.passes.quant import CalibrationSetup

__all__ = ["DEFAULT_PIPELINE", "OptimizeResult", "check_output_path", "optimize_file"]

#: What ``optimize-graph`` runs when ``--passes`` is not given.
DEFAULT_PIPELINE = "cleanup"


@dataclass
class OptimizeResult:
    """The outcome of :func:`optimize_file`: the pipeline report plus whole-model figures."""

    input_path: str
    output_path: str
    target: str
    report: PipelineReport
    nodes_before: int
    nodes_after: int
    file_bytes_before: int
    file_bytes_after: int

    def to_dict(self) -> dict:
        return {
            "input": self.input_path,
            "output": self.output_path,
            "target": self.target,
            **self.report.to_dict(),
            "totals": {
                "nodes_before": self.nodes_before,
                "nodes_after": self.nodes_after,
                "file_bytes_before": self.file_bytes_before,
                "file_bytes_after": self.file_bytes_after,
            },
        }


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def check_output_path(input_path: str | os.PathLike, output_path: str | os.PathLike,
                      model: ir.Model | None = None) -> None:
    """Refuses an output that would overwrite the input model or its external data.

    Args:
        input_path: The model being read.
        output_path: Where the optimized model would be written.
        model: The loaded input model, to also check its external data files.

    Raises:
        OutputError: The output path is the input, a folder, or would clobber input data.
    """
    source, target = Path(input_path), Path(output_path)
    if _same_file(source, target):
        raise OutputError(f"output path {target} is the input model",
                          "the input is never modified; choose another output path")
    if target.is_dir():
        raise OutputError(f"output path is a directory: {target}", "give a file name such as out.onnx")
    if model is not None:
        _check_output_data(target, _external_files(model))


def _external_files(model: ir.Model) -> set[Path]:
    """The external data files the model's initializers read (resolved)."""
    return {Path(v.const_value.path).resolve() for graph in all_graphs(model) for v in graph.initializers.data.values()
            if isinstance(v.const_value, ir.ExternalTensor)}


def _check_output_data(target: Path, external_files: set[Path]) -> None:
    """Refuses an output whose data file would be one of the input's external data files."""
    data_file = target.parent / f"{target.name}.data"
    for file in external_files:
        if _same_file(file, data_file):
            raise OutputError(f"writing {target} would overwrite the input's external data {data_file}",
                              "choose another output file name")


def optimize_file(input_path: str | os.PathLike, output_path: str | os.PathLike,
                  pipeline: PassManager | str = DEFAULT_PIPELINE, *,
                  inputs: str | os.PathLike | Mapping[str, np.ndarray] | None = None,
                  target: str = "generic", debug: bool = False, calibration: CalibrationSetup | None = None,
                  ranges: Ranges | str | os.PathLike | None = None,
                  save_ranges: str | os.PathLike | None = None) -> OptimizeResult:
    """Loads ``input_path``, runs ``pipeline`` on it and saves the result to ``output_path``.

    Args:
        input_path: The model to optimize; it is never modified.
        output_path: Where to write the result (atomically; external data goes beside it).
        pipeline: A configured PassManager (its verification level applies) or a pipeline string
            (verified structurally, or numerically when ``inputs`` are given).
        inputs: Inputs for numeric verification: an ``.npz`` path or arrays by input name;
            checked against the model's inputs. Generated from the graph's types when None.
        target: Name of the execution target, passed to the passes in their context.
        debug: Enables the pass manager's extra checks (catching a dishonest ``modified``).
        calibration: Calibration data for ``annotate-quant`` (it calibrates the model as it is when
            that pass runs, after cleanup and fusion).
        ranges: Activation ranges (a ``Ranges`` or a ``ranges.json`` path) for the quantization passes.
        save_ranges: Where to write the ranges the pipeline used (``ranges.json``).

    Returns:
        The report of the run and the node counts and file sizes before and after.

    Raises:
        OnnxsmithError: A subclass naming what is wrong with the model, pipeline, data or output.
    """
    get_target(target)  # an unknown target name fails before anything runs
    if isinstance(pipeline, PassManager):
        manager = pipeline
    else:
        manager = PassManager(pipeline, verify="numeric" if inputs is not None else "structural")
    if inputs is not None and manager.verify != "numeric":
        raise PipelineError(f"inputs are used for numeric verification, but the pipeline verifies '{manager.verify}'",
                            "verify numerically, or give no inputs")
    check_output_path(input_path, output_path)
    ctx = PassContext(target=target, debug=debug)
    if ranges is not None:
        from onnxsmith.calibration import Ranges

        (ranges if isinstance(ranges, Ranges) else Ranges.load_json(ranges)).store(ctx)
    if calibration is not None:
        calibration.store(ctx)
    # The loaded model lives through the whole run: collections during it skip its objects.
    with gc_paused():
        model = load(input_path)
        with gc_young_only():
            external_files = _external_files(model)
            _check_output_data(Path(output_path), external_files)
            if inputs is not None:
                if isinstance(inputs, Mapping):
                    check_inputs(inputs, model)
                    manager.inputs = dict(inputs)
                else:
                    manager.inputs = load_input_data(inputs, model)
            bytes_before = _input_bytes(Path(input_path), external_files)
            report = manager.run(model, ctx)
            # The first record's count is the census of the input, taken before any pass ran.
            nodes_before = report.records[0].nodes_before if report.records else count_nodes(model)
            if save_ranges is not None:
                _save_ranges(ctx, save_ranges)
            save(model, output_path)
            nodes_after = count_nodes(model)
    return OptimizeResult(
        input_path=os.fspath(input_path),
        output_path=os.fspath(output_path),
        target=target,
        report=report,
        nodes_before=nodes_before,
        nodes_after=nodes_after,
        file_bytes_before=bytes_before,
        file_bytes_after=_output_bytes(Path(output_path)),
    )


def _save_ranges(ctx: PassContext, path: str | os.PathLike) -> None:
    """Writes the ranges the pipeline used (given or calibrated) to ``path``."""
    from onnxsmith.calibration import Ranges
    from onnxsmith.calibration.ranges import CONTEXT_KEY

    used = ctx.data.get(CONTEXT_KEY)
    if not isinstance(used, Ranges):
        raise OutputError("no calibration ranges to save: no pass of the pipeline calibrated",
                          "give --calib-data and a pipeline that quantizes (e.g. --passes cleanup,qdq)")
    used.save_json(path)


def _input_bytes(path: Path, external_files: set[Path]) -> int:
    """Size of the model file plus the external data files it references."""
    return path.stat().st_size + sum(f.stat().st_size for f in external_files)


def _output_bytes(path: Path) -> int:
    """Size of a saved model file plus the ``<name>.data`` file ``save`` writes beside it."""
    data = path.parent / f"{path.name}.data"
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)
