"""Memory-bounded batching: how many rows one calibration run takes.

A run returns every exposed value at once (onnxruntime allocates graph outputs separately, so
they cannot share memory), and collection keeps one run's outputs alive while the observers read
them. The rows per run therefore bound the memory of collection:

    rows = max(1, floor(budget / bytes_per_row))

where ``bytes_per_row`` is *measured*, not estimated from declared shapes (which exporters
often leave symbolic or drop): one probe run on the first row of the first sample, with the
values the collection will expose, divides the bytes of its outputs by its rows. Values reduced
inside the graph (:mod:`onnxsmith.calibration.reductions`) count with their full size too (the
probe fetches their ``Size``): they no longer leave onnxruntime, but their bytes stand for
onnxruntime's working memory of the run, which holds each of them while it is reduced. The
probe's outputs are dropped (observers never see them, so ranges do not depend on the probe), and a
sample that cannot be sliced (static leading dimension, unequal leading sizes) runs as given.

Splitting a sample never changes what the observers make of the same activations: histograms and
extremes are order- and batching-independent (see :mod:`onnxsmith.calibration.histogram`); only
MinMax's moving average (``averaging_constant``) sees per-run extremes, so pass ``batch_size``
explicitly to fix its runs. onnxruntime's own working memory for the run (the unexposed
intermediates) comes on top; it is typically of the same order as the exposed values of the same rows.

The activations themselves can change with the rows per run: onnxruntime's kernels may round
differently for different shapes, and the model can amplify that (magika's MinMax scales moved by
up to 5e-4, relative, between 7 and 1 rows per run; same top-1 agreement on its test files). The
rows per run are therefore part of what makes a calibration reproducible, and a change of the
budget or of this rule changes quantized models slightly.

The default budget, 16 MiB, is set for the peak of convolution models: the probe does not count
onnxruntime's working copies, and the blocked kernels of :mod:`onnxsmith.calibration.session` hold
reordered copies of each Conv's input and output. Whole CLI runs (``cleanup,fuse,qdq --calibrator
minmax``, 2 cores, medians of 5 interleaved runs): magika at 7 rows per run (a 32 MiB budget)
1.13 s and 133 MiB peak, 4 rows 1.02 s and 113 MiB, 3 rows (16 MiB) 1.01 s and 110 MiB, 1 row 1.14 s
and 102 MiB; the digits CNN takes 51 rows instead of 102 (peak 110 -> 101 MiB); MiniLM takes 2 rows
instead of 5 (its calibration alone, in one process: 0.50 -> 0.66 s; the whole run 1.29 -> 1.30 s,
peak 200 MiB either way, the checker's). Top-1 agreement (magika, digits CNN) and MiniLM's cosines
were the same at every row count tried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from onnxsmith.calibration.readers import Sample
from onnxsmith.calibration.validate import SampleValidator
from onnxsmith.errors import UnsupportedError, first_line

__all__ = ["DEFAULT_MEMORY_BUDGET_MB", "measure_bytes_per_row", "rows_for_budget"]

logger = logging.getLogger(__name__)

#: Default budget of one run's exposed activations, in MiB.
DEFAULT_MEMORY_BUDGET_MB = 16.0


def rows_for_budget(bytes_per_row: float, budget_mb: float) -> int:
    """The most rows whose exposed activations fit ``budget_mb`` MiB (at least 1)."""
    return max(1, int(budget_mb * 2**20 // max(bytes_per_row, 1.0)))


def measure_bytes_per_row(session: Any, names: Sequence[str], validator: SampleValidator, sample: Sample,
                          sized: Mapping[str, int] | None = None) -> float:
    """Bytes of the ``names`` outputs per row, from one run on the first row of ``sample``.

    ``sized`` maps the names of ``Size`` outputs (element counts of values reduced in the graph,
    :mod:`onnxsmith.calibration.reductions`) to their values' bytes per element: those values
    count as if they were exposed.

    Raises:
        UnsupportedError: onnxruntime fails on the sample.
    """
    sized = dict(sized or {})
    feed = next(validator.with_batch_size(1).feeds(sample))
    first = next(iter(feed.values()), None)
    rows = int(first.shape[0]) if first is not None and first.ndim else 1
    try:
        outputs = session.run([*names, *sized], feed)
    except Exception as e:  # onnxruntime raises its own exception types
        raise UnsupportedError(f"onnxruntime failed on {sample.label}: {first_line(e)}") from e
    exposed = sum(int(o.nbytes) for o in outputs[:len(names)])
    reduced = sum(int(size) * itemsize for size, itemsize in zip(outputs[len(names):], sized.values()))
    return (exposed + reduced) / max(rows, 1)
