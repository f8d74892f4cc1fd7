"""Calibration: activation ranges of a model over representative data, as plain data.

``calibrate(model, data, calibrator="entropy")`` streams the data through the model with
onnxruntime, feeds one online observer per value, and returns :class:`Ranges` (save them with
``ranges.save_json("ranges.json")``, edit, load with ``Ranges.load_json``, match them to a model
with ``ranges.resolve(model)``).

Modules, one concept each:

* ``readers``: data sources (``.npz``/``.npy`` files and directories, Python iterables,
  onnxruntime ``CalibrationDataReader`` s); ``ort_adapter``: our data as an onnxruntime reader.
* ``validate``: checking samples against the model's inputs; the batch policy.
* ``select``: which values to calibrate. ``identity``: stable value identity (cone hashes).
* ``histogram``: the mergeable power-of-two histogram. ``observers``: online summaries.
* ``calibrators`` (with ``entropy`` and ``mse``): from summaries to ranges.
* ``collect``: the streaming, optionally chunked, collection loop.
* ``records`` / ``ranges``: ranges as data, ``ranges.json``, resolution against a model.
* ``api``: :func:`calibrate`.
"""

from __future__ import annotations

from onnxsmith.calibration.api import calibrate
from onnxsmith.calibration.calibrators import CALIBRATORS, MSE, Calibrator, Entropy, MinMax, Percentile, make_calibrator
from onnxsmith.calibration.collect import CollectionStats, Progress, collect
from onnxsmith.calibration.histogram import Histogram
from onnxsmith.calibration.identity import ValueIdentity, value_identities
from onnxsmith.calibration.observers import HistogramObserver, MinMaxObserver, Observer
from onnxsmith.calibration.ort_adapter import OrtReaderAdapter
from onnxsmith.calibration.ranges import CONTEXT_KEY, Ranges, Resolution
from onnxsmith.calibration.readers import DataSource, Sample, open_data
from onnxsmith.calibration.records import Observed, RangeRecord
from onnxsmith.calibration.select import QUANTIZABLE_OP_TYPES, select_values
from onnxsmith.calibration.validate import SampleValidator

__all__ = [
    "CALIBRATORS",
    "CONTEXT_KEY",
    "MSE",
    "QUANTIZABLE_OP_TYPES",
    "Calibrator",
    "CollectionStats",
    "DataSource",
    "Entropy",
    "Histogram",
    "HistogramObserver",
    "MinMax",
    "MinMaxObserver",
    "Observed",
    "Observer",
    "OrtReaderAdapter",
    "Percentile",
    "Progress",
    "RangeRecord",
    "Ranges",
    "Resolution",
    "Sample",
    "SampleValidator",
    "ValueIdentity",
    "calibrate",
    "collect",
    "make_calibrator",
    "open_data",
    "select_values",
    "value_identities",
]
