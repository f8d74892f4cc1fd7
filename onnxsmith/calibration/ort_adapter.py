"""Handing onnxsmith calibration data to onnxruntime's calibrators.

:class:`OrtReaderAdapter` implements onnxruntime's ``CalibrationDataReader`` protocol
(``get_next()`` returns one feed dict, then None when the data is exhausted) over any source
:func:`~onnxsmith.calibration.readers.open_data` accepts. onnxruntime recognises readers by that
method (its ``CalibrationDataReader.__subclasshook__``), so ``isinstance(adapter,
CalibrationDataReader)`` holds without importing onnxruntime.quantization here.

With a model, each sample is checked against the model's inputs and turned into run feeds
(unnamed arrays named, batch policy applied), as onnxsmith's own collection does; without one,
samples are passed on as they are. (The other direction, reading an onnxruntime reader, is
:class:`~onnxsmith.calibration.readers.ReaderSource`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.calibration.readers import UNNAMED, open_data
from onnxsmith.calibration.validate import BatchPolicy, SampleValidator
from onnxsmith.errors import DataInputError

__all__ = ["OrtReaderAdapter"]


class OrtReaderAdapter:
    """An onnxruntime ``CalibrationDataReader`` over onnxsmith calibration data.

    Args:
        data: Anything :func:`~onnxsmith.calibration.readers.open_data` accepts.
        model: If given, samples are validated against it and split into run feeds.
        batch: Batch policy when a model is given (see :mod:`onnxsmith.calibration.validate`).
    """

    def __init__(self, data: Any, model: ir.Model | None = None, *, batch: BatchPolicy = "auto") -> None:
        self.source = open_data(data)
        self.validator = SampleValidator(model, batch=batch) if model is not None else None
        self._feeds: Iterator[dict[str, np.ndarray]] | None = None

    def _generate(self) -> Iterator[dict[str, np.ndarray]]:
        for sample in self.source:
            if self.validator is not None:
                yield from self.validator.feeds(sample)
            elif UNNAMED in sample.arrays:
                raise DataInputError(f"{sample.label}: holds an unnamed array, which onnxruntime cannot feed",
                                     "pass the model to OrtReaderAdapter, or key the arrays by input name")
            else:
                yield dict(sample.arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed, or None when the data is exhausted."""
        if self._feeds is None:
            self._feeds = self._generate()
        return next(self._feeds, None)

    def rewind(self) -> None:
        """Starts over from the first sample (re-iterable sources only)."""
        self._feeds = None

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.get_next, None)
