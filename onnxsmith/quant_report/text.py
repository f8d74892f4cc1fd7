"""The quantization report as aligned text: outputs, then the worst tensors with their remedies."""

from __future__ import annotations

import math
from collections.abc import Sequence

from onnxsmith.quant_report.report import OutputReport, QuantReport, TensorReport

__all__ = ["format_quant_report"]


def _db(x: float | None) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.1f}"


def _g(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.3g}"


def _range(pair: tuple[float, float]) -> str:
    return f"[{_g(pair[0])}, {_g(pair[1])}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns aligned; the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in [headers, *rows]]


def _output_row(o: OutputReport) -> list[str]:
    if o.equal_fraction is not None:
        return [o.name, "-", "-", "-", "-", f"{o.equal_fraction:.2%} equal"]
    top1 = "-" if o.top1 is None else f"{o.top1:.2%}"
    return [o.name, _db(o.sqnr_db), _g(o.max_abs), _g(o.cosine_mean), _g(o.cosine_min), top1]


def _tensor_row(t: TensorReport) -> list[str]:
    scale = _g(t.scale[0]) if t.scale[0] == t.scale[1] else f"{_g(t.scale[0])}..{_g(t.scale[1])}"
    clip = "-" if t.clip_fraction is None else f"{t.clip_fraction:.2%}"
    return [t.name, t.kind[0].upper(), t.dtype, scale, _range(t.representable), _range(t.observed), clip,
            _db(t.sqnr_db), _db(t.bulk_sqnr_db), _db(t.through_model_sqnr_db),
            t.remedy.action if t.remedy is not None else "-"]


def format_quant_report(report: QuantReport, top: int = 10) -> str:
    """The report for people: output fidelity, the ``top`` worst tensors, and why each remedy."""
    activations = sum(t.kind == "activation" for t in report.tensors)
    lines = [f"quant-report: {len(report.tensors)} quantized tensors ({activations} activations, "
             f"{len(report.tensors) - activations} weights), {report.runs} runs"
             + (f" in {report.passes} passes" if report.passes > 1 else "") + f", {report.seconds:.2f} s", "",
             "outputs:"]
    lines += ["  " + line for line in _table(["name", "SQNR dB", "max abs err", "cos mean", "cos min", "top-1"],
                                             [_output_row(o) for o in report.outputs])]
    worst = report.worst(top)
    lines += ["", f"worst {len(worst)} tensors (A activation, W weight; SQNR in dB: alone, bulk, through the model):"]
    headers = ["tensor", "", "type", "scale", "representable", "observed", "clipped", "SQNR", "bulk", "model",
               "remedy"]
    lines += ["  " + line for line in _table(headers, [_tensor_row(t) for t in worst])]
    remedies = [t for t in worst if t.remedy is not None]
    if remedies:
        lines += ["", "remedies:"]
        lines += [f"  {t.name}: {t.remedy.action}: {t.remedy.reason}" for t in remedies]
    if report.unmatched:
        lines += ["", f"not reported ({len(report.unmatched)}):"] + [f"  {u}" for u in report.unmatched]
    return "\n".join(lines)
