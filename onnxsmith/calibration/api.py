"""``calibrate(model, data)``: the one call from a model and data to :class:`Ranges`.

It picks the values (:mod:`~onnxsmith.calibration.select`), makes one observer per value for the
chosen calibrator (:mod:`~onnxsmith.calibration.calibrators`), streams the data through the model
(:mod:`~onnxsmith.calibration.collect`) and turns each observer into a
:class:`~onnxsmith.calibration.records.RangeRecord` keyed by value name and identity.

A calibration pass is then a few lines::

    ranges = calibrate(model, self.options.calib_data, calibrator=self.options.calibrator)
    ranges.store(ctx)          # ctx.data["calibration-ranges"], property "calibration-ranges"
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any

import onnx_ir as ir

from onnxsmith.calibration.batching import DEFAULT_MEMORY_BUDGET_MB
from onnxsmith.calibration.calibrators import Calibrator, MinMax, make_calibrator
from onnxsmith.calibration.collect import ProgressCallback, collect
from onnxsmith.calibration.identity import value_identities
from onnxsmith.calibration.observers import MinMaxObserver
from onnxsmith.calibration.ranges import Ranges
from onnxsmith.calibration.readers import open_data
from onnxsmith.calibration.records import Observed, RangeRecord
from onnxsmith.calibration.select import QUANTIZABLE_OP_TYPES, check_values, rearranged_values, select_values
from onnxsmith.calibration.validate import BatchPolicy, SampleValidator
from onnxsmith.errors import OnnxsmithError

__all__ = ["calibrate"]

logger = logging.getLogger(__name__)


def _listed(bound: Any) -> float | list[float]:
    return bound.tolist() if hasattr(bound, "tolist") and getattr(bound, "ndim", 0) else float(bound)


def calibrate(model: ir.Model, data: Any, *, calibrator: str | Calibrator = "minmax", symmetric: bool | None = None,
              per_channel: bool = False, axis: int = 1, values: Iterable[str] | None = None,
              op_types: Collection[str] | None = QUANTIZABLE_OP_TYPES, batch: BatchPolicy = "auto",
              batch_size: int | None = None, max_outputs_per_run: int | None = None,
              memory_budget_mb: float | None = DEFAULT_MEMORY_BUDGET_MB, threads: int = 0,
              progress: ProgressCallback | None = None,
              **calibrator_options: Any) -> Ranges:
    """Computes activation ranges of ``model`` over ``data``.

    Args:
        model: The model (not modified).
        data: Calibration data: a directory or file of ``.npz``/``.npy``, dicts of arrays, a list,
            generator or function of them, or a ``CalibrationDataReader``
            (see :mod:`onnxsmith.calibration.readers`).
        calibrator: ``"minmax"``, ``"percentile"``, ``"entropy"``, ``"mse"``, or a
            :class:`Calibrator` instance.
        symmetric: Produce ``(-T, T)`` ranges (default: the calibrator's setting, else False).
        per_channel: Per-channel ranges along ``axis`` (minmax only).
        axis: Channel axis for ``per_channel``.
        values: Names of the values to calibrate (default: chosen by ``op_types``).
        op_types: Calibrate values around these ops; None for every float activation.
        batch: Batch policy (see :mod:`onnxsmith.calibration.validate`).
        batch_size: Rows per run when the batch dimension is named (default: as many as fit
            ``memory_budget_mb``).
        max_outputs_per_run: Chunked mode: most values exposed per pass over the data.
        memory_budget_mb: Most MiB of exposed activations per run: sets the rows per run, and
            splits the values into chunks when one row would not fit; None runs samples whole
            (see :mod:`onnxsmith.calibration.batching`).
        threads: onnxruntime intra-op threads (0: one per physical core).
        progress: Called with a :class:`~onnxsmith.calibration.collect.Progress` after each run.
        **calibrator_options: Options of the calibrator (``percentile=99.9``, ``averaging_constant=0.01``,
            ``num_quantized_bins=128``, ``levels=256``, ``max_bins=4096``).

    Raises:
        DataInputError: The data is missing or does not fit the model.
        OnnxsmithError: An unknown calibrator, option or value name.
        UnsupportedError: onnxruntime cannot run the model.
    """
    options = dict(calibrator_options)
    if symmetric is not None:
        options["symmetric"] = symmetric
    if per_channel:
        name = calibrator.name if isinstance(calibrator, Calibrator) else calibrator
        if name != MinMax.name:
            raise OnnxsmithError(f"per-channel ranges come from the minmax calibrator, not '{name}'",
                                 "use calibrator='minmax' or per_channel=False")
        options["axis"] = axis
    calib = make_calibrator(calibrator, **options)
    names = check_values(model, values) if values is not None else select_values(model, op_types)
    if not names:
        raise OnnxsmithError("no float activations to calibrate",
                             "pass values=[...] or op_types=None to calibrate every float activation")
    source = open_data(data)
    validator = SampleValidator(model, batch=batch, batch_size=batch_size)
    # A Reshape/Transpose/... of a calibrated value holds its elements: one per-tensor observer serves both.
    per_channel_ranges = isinstance(calib, MinMax) and calib.axis is not None
    same = {} if per_channel_ranges else rearranged_values(model, names)
    observers = {name: calib.observer() for name in names if name not in same}
    stats = collect(model, source, observers, validator=validator, max_outputs_per_run=max_outputs_per_run,
                    memory_budget_mb=memory_budget_mb, threads=threads, progress=progress)
    identities = value_identities(model)
    skipped = set(stats.skipped)
    records = {}
    computed: dict[str, tuple[Any, Any]] = {}
    for name in names:
        root = same.get(name, name)
        if root in skipped:
            continue
        observer = observers[root]
        if root not in computed:
            computed[root] = calib.compute(observer)
        low, high = computed[root]
        finite = observer.count > observer.nonfinite
        records[name] = RangeRecord(
            min=_listed(low), max=_listed(high),
            axis=observer.resolved_axis if isinstance(observer, MinMaxObserver) else None,
            calibrator=calib.describe(), num_samples=stats.samples, identity=identities.get(name),
            observed=Observed(observer.observed_min if finite else None, observer.observed_max if finite else None,
                              observer.count, observer.nonfinite))
    logger.info("calibrated %d values over %d runs (%d rows) in %.2f s with %s", len(records), stats.runs,
                stats.samples, stats.seconds, calib.describe())
    return Ranges(records, {**calib.options(), "samples": stats.samples})
