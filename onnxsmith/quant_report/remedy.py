"""Suggested remedies for a badly quantized tensor, chosen by rule from its numbers.

A tensor whose effective SQNR (the lower of its own SQNR and its bulk SQNR, see
:mod:`onnxsmith.quant_report.stats`) is at least ``acceptable_db`` needs nothing. Otherwise the
first rule that holds decides:

1. **exclude** — the range is not data: a representable bound of at least ``absurd_abs`` in
   magnitude, or ``absurd_ratio`` times the typical ``|x|``, or values in a separate mode far
   above the bulk (attention masks built from the float32 minimum, sentinels). No integer grid
   can hold both; keep the tensor in float.
2. **recalibrate** — at least ``clip_fraction`` of the values fall outside the range: widen it
   (MinMax over more data) or choose the clip by error (entropy or MSE calibrator).
3. **per-channel** — a weight quantized per tensor would gain at least ``per_channel_gain_db``
   with one scale per output channel.
4. **smoothquant** — the data input of a MatMul/Gemm whose largest channel maximum is at least
   ``outlier_ratio`` times the median channel maximum: migrate the outliers into the weights.
   When the range cuts those channels off (values beyond it by more than a step), **recalibrate**
   first: such outliers are rare but systematic (transformer LayerNorm and GELU outputs), which
   is what a clipping calibrator (entropy, percentile) drops; minmax or mse keep them.
5. **int16** — a long tail: the largest ``|x|`` is at least ``long_tail_ratio`` times the
   typical ``|x|``, so an 8-bit step is coarse for most values; 16-bit activations (A16W8).
6. **exclude** — nothing cheaper explains the error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from onnxsmith.quant_report.report import TensorReport

__all__ = ["Remedy", "RemedyRules", "suggest_remedy"]

Action = Literal["exclude", "recalibrate", "per-channel", "smoothquant", "int16"]


@dataclass(frozen=True)
class Remedy:
    """A suggested fix: the action and the numbers that chose it."""

    action: Action
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class RemedyRules:
    """Thresholds of the remedy rules (module docstring)."""

    acceptable_db: float = 30.0
    absurd_abs: float = 1e6
    absurd_ratio: float = 1e4
    clip_fraction: float = 1e-3
    per_channel_gain_db: float = 6.0
    outlier_ratio: float = 8.0
    long_tail_ratio: float = 32.0


def _g(x: float) -> str:
    return f"{x:.3g}"


def _absurd(row: TensorReport, rules: RemedyRules) -> Remedy | None:
    lo, hi = row.representable
    bound = max(abs(lo), abs(hi))
    typical = row.typical
    where = f"range [{_g(lo)}, {_g(hi)}]"
    if bound >= rules.absurd_abs or (typical > 0 and bound >= rules.absurd_ratio * typical):
        scale = f" ({_g(bound / typical)}x the typical |x| {_g(typical)})" if typical > 0 else ""
        return Remedy("exclude", f"{where}{scale} is not data (a mask or sentinel); keep this tensor in float")
    if row.separated:
        return Remedy("exclude", f"{row.separated} values sit in a separate mode far above the typical |x| "
                                 f"{_g(typical)} (a mask or sentinel); keep this tensor in float")
    return None


def _cut_off(row: TensorReport) -> float | None:
    """The observed end that lies more than one step outside the representable range, if any."""
    (lo, hi), (seen_lo, seen_hi), step = row.representable, row.observed, row.scale[1]
    if seen_hi > hi + step:
        return seen_hi
    if seen_lo < lo - step:
        return seen_lo
    return None


def suggest_remedy(row: TensorReport, rules: RemedyRules = RemedyRules()) -> Remedy | None:
    """The remedy for one tensor, or None when its error is acceptable."""
    if row.effective_sqnr_db >= rules.acceptable_db:
        return None
    absurd = _absurd(row, rules)
    if absurd is not None:
        return absurd
    if row.clip_fraction is not None and row.clip_fraction >= rules.clip_fraction:
        return Remedy("recalibrate", f"{row.clip_fraction:.2%} of values fall outside [{_g(row.representable[0])}, "
                                     f"{_g(row.representable[1])}]: widen the range (minmax over more data) or "
                                     "choose the clip by error (entropy or mse calibrator)")
    per_channel = row.per_channel_sqnr_db
    if per_channel is not None and per_channel - row.sqnr_db >= rules.per_channel_gain_db:
        return Remedy("per-channel", f"one scale per output channel gives {per_channel:.1f} dB instead of "
                                     f"{row.sqnr_db:.1f} dB")
    outliers = row.channel_outlier_ratio
    if outliers is not None and outliers >= rules.outlier_ratio:
        cut = _cut_off(row)
        if cut is not None:
            return Remedy("recalibrate", f"the largest channel maximum is {_g(outliers)}x the median one and the range "
                                         f"[{_g(row.representable[0])}, {_g(row.representable[1])}] cuts these "
                                         f"outlier channels off (values reach {_g(cut)}): rare but systematic, they "
                                         "are what a clipping calibrator (entropy, percentile) drops; calibrate with "
                                         "minmax or mse, or migrate them into the weights (SmoothQuant)")
        return Remedy("smoothquant", f"the largest channel maximum is {_g(outliers)}x the median one (outlier "
                                     "channels into a MatMul): migrate them into the weights (SmoothQuant)")
    peak = max(abs(row.observed[0]), abs(row.observed[1]))
    if row.kind == "activation" and row.typical > 0 and peak >= rules.long_tail_ratio * row.typical:
        return Remedy("int16", f"values reach {_g(peak)}, {_g(peak / row.typical)}x the typical |x| "
                               f"{_g(row.typical)} (a long tail): quantize to int16 (A16W8) or keep in float")
    why = "error" if math.isfinite(row.effective_sqnr_db) else "no signal left"
    return Remedy("exclude", f"{why} at {row.effective_sqnr_db:.1f} dB with no clipping, outlier channels or long "
                             "tail to fix; keep this tensor in float")
