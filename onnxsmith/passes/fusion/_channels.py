"""Whether a constant broadcast against a Conv output ``[N, C, D1, ...]`` is per output channel.

Broadcasting aligns shapes to the right, so a constant of shape ``k`` acts per channel exactly when,
padded with leading ones to the output's rank, it is ``[1, C, 1, ...]`` or all ones. A ``[C]``
vector is *not* per channel: it aligns with the last spatial axis.
"""

from __future__ import annotations

__all__ = ["not_per_channel"]


def not_per_channel(k: tuple[int, ...], rank: int, channels: int) -> str | None:
    """Why a constant of shape ``k`` combined with a ``[N, C, ...]`` output of ``rank`` is not per-channel."""
    if len(k) > rank:
        return f"has rank {len(k)}, above the Conv output's {rank}"
    padded = (1,) * (rank - len(k)) + k
    if any(d != 1 for i, d in enumerate(padded) if i != 1) or padded[1] not in (1, channels):
        expected = [1, channels] + [1] * (rank - 2)
        return f"has shape {list(k)}, which does not broadcast per channel (expected {expected} or ones)"
    return None
