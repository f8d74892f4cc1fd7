"""Calibration data handed to the quantization passes through the pass context.

The command line (``--calib-data DIR --calibrator entropy``) and :func:`onnxsmith.optimize_file`
put a :class:`CalibrationSetup` into ``PassContext.data["calibration-data"]``. When
``annotate-quant`` finds no calibration ranges in the context, it calibrates the model *as it is
at that point of the pipeline* (after cleanup and fusion) with this data, and stores the ranges
for later passes (and for ``--save-ranges``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onnxsmith.calibration.collect import ProgressCallback

__all__ = ["CONTEXT_KEY", "CalibrationSetup"]

#: Key in ``PassContext.data``.
CONTEXT_KEY = "calibration-data"


@dataclass
class CalibrationSetup:
    """What to calibrate with.

    Attributes:
        data: Anything :func:`onnxsmith.calibration.calibrate` reads: a directory or file of
            ``.npz``/``.npy``, dicts of arrays, an iterable or a ``CalibrationDataReader``.
        calibrator: ``minmax``, ``percentile``, ``entropy`` or ``mse``.
        progress: Called after every calibration run (the CLI draws a progress bar with it).
        options: Further keyword arguments of ``calibrate`` (``batch_size``, ``memory_budget_mb``...).
    """

    data: Any
    calibrator: str = "minmax"
    progress: ProgressCallback | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def store(self, ctx: Any) -> None:
        ctx.data[CONTEXT_KEY] = self

    @staticmethod
    def from_context(ctx: Any) -> CalibrationSetup | None:
        setup = ctx.data.get(CONTEXT_KEY)
        return setup if isinstance(setup, CalibrationSetup) else None
