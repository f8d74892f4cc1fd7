"""Learning-rate schedules, computed in Python and fed to the training graph's ``lr`` input.

A schedule maps the number of updates already applied, ``t`` in ``[0, total)``, to the learning
rate of the next update. With base rate ``lr``, floor ``min_lr`` and ``w`` warmup steps:

- ``constant``: ``lr``;
- ``cosine``: ``min_lr + (lr - min_lr) * (1 + cos(pi * t / total)) / 2`` -- from ``lr`` at the
  first step down towards ``min_lr`` (torch's ``CosineAnnealingLR`` with ``T_max = total``);
- ``warmup-cosine``: ``lr * (t + 1) / w`` for ``t < w`` (linear warmup ending at ``lr``), then
  ``cosine`` over the remaining ``total - w`` steps.

Schedules are pure functions of ``t``, so a resumed run needs only the step count to continue on
the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from onnxsmith.errors import PipelineError

__all__ = ["SCHEDULES", "Schedule"]

#: The schedule kinds, by name.
SCHEDULES = ("constant", "cosine", "warmup-cosine")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule (see the module docstring).

    Attributes:
        kind: One of :data:`SCHEDULES`.
        lr: The base (peak) learning rate.
        total: Number of updates the schedule spans (cosine kinds).
        warmup: Warmup updates (``warmup-cosine``).
        min_lr: The rate the cosine decays towards.
    """

    kind: str = "constant"
    lr: float = 1e-3
    total: int = 1
    warmup: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise PipelineError(f"unknown learning-rate schedule '{self.kind}'", f"use one of {', '.join(SCHEDULES)}")
        if not (self.lr > 0.0 and math.isfinite(self.lr)):
            raise PipelineError(f"the learning rate must be a positive number, got {self.lr}")
        if not 0.0 <= self.min_lr <= self.lr:
            raise PipelineError(f"the minimum learning rate must lie in [0, {self.lr}], got {self.min_lr}")
        if self.total < 1:
            raise PipelineError(f"a schedule spans at least one step, got {self.total}")
        if self.warmup < 0 or (self.kind != "warmup-cosine" and self.warmup):
            raise PipelineError(f"warmup steps need the warmup-cosine schedule and must be >= 0, got {self.warmup}")
        if self.warmup >= self.total and self.kind == "warmup-cosine":
            raise PipelineError(f"{self.warmup} warmup steps leave nothing of the {self.total} training steps",
                                "use fewer warmup steps or more epochs")

    def __call__(self, t: int) -> float:
        """The learning rate of update ``t`` (0-based); steps past ``total`` keep the last value."""
        t = min(max(t, 0), self.total - 1)
        if self.kind == "constant":
            return self.lr
        if self.kind == "warmup-cosine":
            if t < self.warmup:
                return self.lr * (t + 1) / self.warmup
            return self._cosine(t - self.warmup, self.total - self.warmup)
        return self._cosine(t, self.total)

    def _cosine(self, t: int, span: int) -> float:
        return self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t / span)) / 2.0

    def describe(self) -> dict[str, object]:
        """The schedule as plain data (stored in checkpoints to catch a resume with another schedule).

        A constant schedule does not depend on ``total``, so a run resumed with more epochs may go on.
        """
        if self.kind == "constant":
            return {"kind": self.kind, "lr": self.lr}
        return {"kind": self.kind, "lr": self.lr, "total": self.total, "warmup": self.warmup, "min_lr": self.min_lr}
