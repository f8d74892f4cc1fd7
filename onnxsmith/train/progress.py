"""A one-line progress bar for training, redrawn on a text stream (stderr by default).

``epoch 2/5 [##########..........] 31/62  loss 0.4132  lr 0.00087  1843 samples/s``; the line
ends with a newline when an epoch completes, so every epoch leaves its final loss on screen.
"""

from __future__ import annotations

import sys
from typing import TextIO

from onnxsmith.train.trainer import StepInfo

__all__ = ["ProgressBar"]


class ProgressBar:
    """Draws :class:`~onnxsmith.train.trainer.StepInfo` updates (pass it as ``on_step``).

    Args:
        stream: Where to draw (stderr when None).
        width: Characters of the bar.
        smoothing: Weight of the newest loss in the displayed running average, in (0, 1].
    """

    def __init__(self, stream: TextIO | None = None, width: int = 20, smoothing: float = 0.1) -> None:
        self.stream = stream
        self.width = width
        self.smoothing = smoothing
        self._loss: float | None = None
        self._epoch: int | None = None
        self._shown = 0

    def __call__(self, info: StepInfo) -> None:
        if info.epoch != self._epoch:
            self._epoch, self._loss = info.epoch, None
        self._loss = info.loss if self._loss is None else (
            self.smoothing * info.loss + (1.0 - self.smoothing) * self._loss)
        done = info.batch + 1
        filled = round(self.width * done / info.batches)
        line = (f"epoch {info.epoch + 1}/{info.epochs} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{done}/{info.batches}  loss {self._loss:.4g}  lr {info.lr:.3g}  "
                f"{info.samples_per_second:.0f} samples/s")
        stream = self.stream or sys.stderr
        padded = line.ljust(self._shown)  # blanks what a longer previous line left
        self._shown = 0 if done == info.batches else len(line)
        stream.write(f"\r{padded}" + ("\n" if done == info.batches else ""))
        stream.flush()

    def close(self) -> None:
        """Ends a line left unfinished (a run stopped mid-epoch), so that what follows starts afresh."""
        if self._shown:
            stream = self.stream or sys.stderr
            stream.write("\n")
            stream.flush()
            self._shown = 0
