"""Shape policies: the shapes a constant in a pattern may have, stated explicitly.

Quantization scales and zero points are often ``[1]`` rather than scalars, biases are per-channel
vectors that may come as ``[C]``, ``[C, 1, 1]`` or ``[1, C, 1, 1]``: a pattern says which of these
it accepts instead of guessing.

- ``SCALAR``: rank 0.
- ``SCALAR_LIKE``: rank 0 or shape ``[1]``.
- ``per_channel(axis, rank=None)``: every dimension is 1 except possibly the one at ``axis``
  (negative axes count from the end, so ``per_channel(-3)`` accepts ``[C, 1, 1]`` and
  ``[1, C, 1, 1]``); ``rank`` pins the rank. A tensor of ones in every dimension (``[1]``,
  ``[1, 1, 1]``) is a per-channel tensor with one channel, broadcast.
- ``PER_CHANNEL``: ``per_channel(0, rank=1)``, a 1-D vector ``[C]``.
- ``ANY``: any shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

__all__ = ["ShapePolicy"]


@dataclass(frozen=True)
class ShapePolicy:
    """Which shapes a constant may have (see the module docstring)."""

    kind: Literal["scalar", "scalar-like", "per-channel", "any"]
    axis: int = 0
    rank: int | None = None

    SCALAR: ClassVar[ShapePolicy]
    SCALAR_LIKE: ClassVar[ShapePolicy]
    PER_CHANNEL: ClassVar[ShapePolicy]
    ANY: ClassVar[ShapePolicy]

    @classmethod
    def per_channel(cls, axis: int, rank: int | None = None) -> ShapePolicy:
        """All dimensions 1 except possibly ``axis``; ``rank`` (if given) fixes the rank."""
        if rank is not None and not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for rank {rank}")
        return cls("per-channel", axis, rank)

    def violation(self, shape: Sequence[int | object]) -> str | None:
        """Why ``shape`` breaks this policy, or None if it satisfies it.

        Symbolic (non-int) dimensions count as unknown: they satisfy nothing but ``ANY``.
        """
        dims = tuple(shape)
        if self.kind == "any":
            return None
        if self.kind == "scalar":
            return None if dims == () else f"has shape {_show(dims)}, expected a scalar"
        if self.kind == "scalar-like":
            return None if dims in ((), (1,)) else f"has shape {_show(dims)}, expected a scalar or [1]"
        rank = len(dims)
        if self.rank is not None and rank != self.rank:
            return f"has shape {_show(dims)}, expected {self}"
        axis = self.axis + rank if self.axis < 0 else self.axis
        if not 0 <= axis < rank:
            return f"has shape {_show(dims)}, expected {self}"
        if any(d != 1 for i, d in enumerate(dims) if i != axis) or not isinstance(dims[axis], int):
            return f"has shape {_show(dims)}, expected {self}"
        return None

    def __str__(self) -> str:
        if self.kind != "per-channel":
            return self.kind
        if self.rank == 1:
            return "per-channel [C]"
        rank = f", rank {self.rank}" if self.rank is not None else ""
        return f"per-channel along axis {self.axis}{rank}"


def _show(dims: tuple[object, ...]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


ShapePolicy.SCALAR = ShapePolicy("scalar")
ShapePolicy.SCALAR_LIKE = ShapePolicy("scalar-like")
ShapePolicy.PER_CHANNEL = ShapePolicy.per_channel(0, rank=1)
ShapePolicy.ANY = ShapePolicy("any")
