"""Rendering reports for people (aligned text tables) and for programs (JSON).

Every function here returns a string; printing is the CLI's job. JSON output is strict: non-finite
floats (an infinite error when shapes differ) become the strings ``"inf"``, ``"-inf"``, ``"nan"``.
"""

from __future__ import annotations

import dataclasses
import json
import inspect
import math
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from onnxsmith.optimize import OptimizeResult
from onnxsmith.passes import Pass
from onnxsmith.passes.base import ALL
from onnxsmith.passes.registry import Pipeline
from onnxsmith.summary import ModelSummary

__all__ = [
    "format_bytes",
    "format_diffs",
    "format_op_changes",
    "format_optimize_result",
    "format_pass_detail",
    "format_pass_list",
    "format_pipeline_detail",
    "format_rule_stats",
    "format_seconds",
    "format_summary",
    "option_rows",
    "pass_to_dict",
    "pipeline_to_dict",
    "to_json",
]


def format_bytes(n: int | None) -> str:
    """``532 B``, ``19.9 KiB``, ``1.2 GiB``."""
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_seconds(seconds: float) -> str:
    """``0.42 ms``, ``12.3 ms``, ``4.56 s``."""
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _format_error(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Aligned columns; column indices in ``right`` are right-aligned; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            last = i == len(cells) - 1
            if i in right:
                out.append(str(cell).rjust(widths[i]))
            else:
                out.append(str(cell) if last else str(cell).ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _stat_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k} {_stat_value(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "(" + ", ".join(map(_stat_value, value)) + ")"
    return str(value)


def _says_nothing(value: Any) -> bool:
    """Zero counts and empty collections (also once their zero entries are dropped) say nothing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    if isinstance(value, Mapping):
        return all(_says_nothing(v) for v in value.values())
    return isinstance(value, (list, tuple, set, frozenset)) and not value


def _without_zeros(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_zeros(v) for k, v in value.items() if not _says_nothing(v)}
    return value


def _stats_text(stats: Mapping[str, Any]) -> str:
    """``key=value`` pairs, leaving out zero counts and empty collections (they say nothing)."""
    shown = {k: _without_zeros(v) for k, v in stats.items() if not _says_nothing(v)}
    return ", ".join(f"{key}={_stat_value(value)}" for key, value in shown.items())


def format_diffs(diffs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per-output table of max abs/rel errors (``OutputDiff.to_dict()`` entries)."""
    rows = []
    for d in diffs:
        verdict = "yes" if d["ok"] else f"NO: {d['problem']}" if d.get("problem") else "NO"
        rows.append([d["name"], _format_error(d["max_abs"]), _format_error(d["max_rel"]), verdict])
    return _table(["output", "max abs err", "max rel err", "within tolerance"], rows, right=(1, 2))


def format_optimize_result(result: OptimizeResult) -> str:
    """The report table printed after ``optimize-graph IN OUT`` (and by the demo)."""
    report = result.report
    rows = []
    for r in report.records:
        rows.append([r.spec, "yes" if r.modified else "no", format_seconds(r.seconds),
                     f"{r.nodes_before} -> {r.nodes_after}",
                     f"{format_bytes(r.bytes_before)} -> {format_bytes(r.bytes_after)}",
                     _stats_text({k: v for k, v in r.stats.items() if k not in _RULE_STATS})])
    first, last = report.records[0], report.records[-1]
    rows.append(["total", "yes" if report.modified else "no", format_seconds(report.seconds),
                 f"{result.nodes_before} -> {result.nodes_after}",
                 f"{format_bytes(first.bytes_before)} -> {format_bytes(last.bytes_after)}",
                 "" if report.verify == "none" else "time includes verification"])
    lines = _table(["pass", "changed", "time", "nodes", "weights", "stats"], rows, right=(2,))
    lines.insert(-1, "-" * max(len(line) for line in lines))
    for r in report.records:
        lines.extend(format_rule_stats(r.spec, r.stats))
        lines.extend(format_op_changes(r.spec, r.ops_before, r.ops_after))
    lines.append(f"file: {result.input_path} ({format_bytes(result.file_bytes_before)}) -> "
                 f"{result.output_path} ({format_bytes(result.file_bytes_after)})")
    lines.extend(_verification_lines(report.verify, report.numeric))
    return "\n".join(lines)


#: Statistics of rewrite passes (``RewriteStats``) shown per rule rather than in the stats column.
_RULE_STATS = frozenset({"applied", "rejected", "reasons"})

#: How many rejection reasons per rule the text report lists (``--json`` has them all).
_REASONS_SHOWN = 3


def format_rule_stats(spec: str, stats: Mapping[str, Any]) -> list[str]:
    """Per rule of a rewrite pass: rewrites applied, candidates rejected, and the most frequent reasons.

    Rules that neither applied nor met a candidate (their ops were nowhere) are left out.
    """
    applied: Mapping[str, int] = stats.get("applied") or {}
    reasons: Mapping[str, Mapping[str, int]] = stats.get("reasons") or {}
    rows = []
    for rule in [*applied, *(r for r in reasons if r not in applied)]:
        why = sorted((reasons.get(rule) or {}).items(), key=lambda kv: (-kv[1], kv[0]))
        if not applied.get(rule) and not why:
            continue
        shown = "; ".join(f"{text} ({n})" for text, n in why[:_REASONS_SHOWN])
        if len(why) > _REASONS_SHOWN:
            shown += f"; and {len(why) - _REASONS_SHOWN} more reasons"
        rows.append([rule, str(applied.get(rule, 0)), str(sum(n for _, n in why)), shown])
    if not rows:
        return []
    table = _table(["rule", "applied", "rejected", "why rejected"], rows, right=(1, 2))
    return [f"rules of {spec}:", *("  " + line for line in table)]


def format_op_changes(spec: str, before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    """The ops whose count a pass changed, ``Op before -> after``, most changed first (none: no line)."""
    changed = [(op, before.get(op, 0), after.get(op, 0)) for op in sorted({*before, *after})
               if before.get(op, 0) != after.get(op, 0)]
    if not changed:
        return []
    changed.sort(key=lambda c: (-abs(c[2] - c[1]), c[0]))
    return [f"ops changed by {spec}: " + ", ".join(f"{op} {old} -> {new}" for op, old, new in changed)]


def _verification_lines(level: str, numeric: Sequence[Mapping[str, Any]] | None) -> list[str]:
    if level == "none":
        return ["verification: none (--verify none)"]
    if level == "structural":
        return ["verification: structural checks passed after every changed pass"]
    lines = ["verification: numeric, outputs compared with the input model after every changed pass"]
    lines.extend("  " + line for line in format_diffs(numeric or []))
    return lines


def format_summary(s: ModelSummary) -> str:
    """The text of ``optimize-graph inspect``."""
    lines = []
    if s.path is not None:
        lines.append(f"model:        {s.path} ({format_bytes(s.file_bytes)})")
    lines.append(f"ir_version:   {s.ir_version}")
    lines.append(f"producer:     {s.producer or '-'}")
    lines.append("opsets:       " + ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in s.opsets.items()))
    lines.append(f"graph:        {s.graph_name or '-'}: {s.nodes} nodes ({s.subgraphs} subgraphs), "
                 f"{s.initializers} initializers")
    external = f", {format_bytes(s.external_bytes)} external in {', '.join(s.external_files)}" \
        if s.external_files else ", no external data"
    lines.append(f"tensors:      {format_bytes(s.inline_bytes)} inline{external}")
    for label, values in (("inputs:", s.inputs), ("outputs:", s.outputs)):
        if not values:
            lines.append(f"{label:<14}none")
        for i, v in enumerate(values):
            lines.append(f"{label if i == 0 else '':<14}{v.name}: {v.describe()}")
    if s.functions:
        for i, f in enumerate(s.functions):
            label = "functions:" if i == 0 else ""
            lines.append(f"{label:<14}{f.domain}::{f.name} ({f.nodes} nodes)")
    else:
        lines.append(f"{'functions:':<14}none")
    if s.metadata:
        lines.append("metadata:     " + ", ".join(f"{k}={v}" for k, v in s.metadata.items()))
    if s.largest_tensors:
        lines.append("largest tensors:")
        rows = [[t.name, f"{t.dtype}[{','.join(map(str, t.shape))}]", format_bytes(t.nbytes),
                 "external" if t.external else "inline"] for t in s.largest_tensors]
        lines.extend("  " + line for line in _table(["name", "type", "size", "stored"], rows, right=(2,)))
    if s.ops:
        lines.append("ops:")
        rows = [[op, str(n)] for op, n in s.ops.items()]
        lines.extend("  " + line for line in _table(["op", "count"], rows, right=(1,)))
    return "\n".join(lines)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + "|".join(map(str, typing.get_args(tp)))
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _attribute_docs(cls: type) -> dict[str, str]:
    """``name -> description`` from the ``Attributes:`` section of a Google-style class docstring."""
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    try:
        start = lines.index("Attributes:") + 1
    except ValueError:
        return docs
    name = None
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break  # the next section
        entry = re.match(r"^ {4}(\w+)(?: \(.*?\))?: (.*)$", line)
        if entry:
            name, docs[entry[1]] = entry[1], entry[2].strip()
        elif name and line.strip():
            docs[name] += " " + line.strip()
    return {key: text.replace("``", "") for key, text in docs.items()}


def option_rows(cls: type[Pass]) -> list[dict[str, Any]]:
    """The options of a pass: kebab-case name, type, default and help.

    The help is the field's ``metadata["help"]``, else its entry in the ``Attributes:`` section of
    the Options class docstring.
    """
    if not dataclasses.is_dataclass(cls.Options):
        return []
    hints = typing.get_type_hints(cls.Options)
    docs = _attribute_docs(cls.Options)
    return [{"name": f.name.replace("_", "-"), "type": _type_name(hints.get(f.name, f.type)),
             "default": _default(f), "help": f.metadata.get("help", docs.get(f.name, ""))}
            for f in dataclasses.fields(cls.Options)]


def _show_default(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(map(str, value)) or "(empty)"
    if value == "":
        return '""'
    return "none" if value is None else str(value)


def _option_text(option: Mapping[str, Any]) -> str:
    text = f"{option['name']}: {option['type']} = {_show_default(option['default'])}"
    return f"{text}  ({option['help']})" if option["help"] else text


def _properties(props: frozenset[str]) -> str | list[str]:
    return "all" if props == ALL else sorted(props)


def pass_to_dict(cls: type[Pass]) -> dict[str, Any]:
    """A pass's help, options and contract as plain data."""
    return {
        "name": cls.name,
        "summary": cls.summary(),
        "doc": (cls.__doc__ or "").strip(),
        "options": option_rows(cls),
        "requires": _properties(cls.requires),
        "provides": _properties(cls.provides),
        "preserves": _properties(cls.preserves),
        "after": list(cls.after),
        "before": list(cls.before),
        "tolerance": {"rtol": cls.tolerance.rtol, "atol": cls.tolerance.atol},
        "module": cls.__module__,
    }


def pipeline_to_dict(pipeline: Pipeline, expansion: str) -> dict[str, Any]:
    """A named pipeline's help, its spec and the fully expanded pass list."""
    return {"name": pipeline.name, "help": pipeline.help, "spec": pipeline.spec, "expansion": expansion}


def format_pass_list(passes: Mapping[str, type[Pass]], pipelines: Mapping[str, Pipeline],
                     expansions: Mapping[str, str]) -> str:
    """``optimize-graph passes``: every pass with its options, every pipeline with its expansion."""
    width = max((len(n) for n in [*passes, *pipelines]), default=0) + 2
    lines = [f"passes ({len(passes)}):"]
    for name, cls in passes.items():
        lines.append(f"  {name:<{width}}{cls.summary()}")
        lines.extend(f"  {'':<{width}}  {_option_text(option)}" for option in option_rows(cls))
    lines.append("")
    lines.append(f"pipelines ({len(pipelines)}):")
    for name, pipeline in pipelines.items():
        lines.append(f"  {name:<{width}}{pipeline.help}")
        lines.append(f"  {'':<{width}}  = {expansions[name]}")
    lines.append("")
    lines.append("Options go in braces: fold-constants{max-size=1048576},cse")
    lines.append("Details of one pass or pipeline: optimize-graph passes NAME")
    return "\n".join(lines)


def format_pass_detail(cls: type[Pass]) -> str:
    """``optimize-graph passes NAME`` for a pass."""
    info = pass_to_dict(cls)
    lines = [f"{cls.name} (pass): {info['summary']}"]
    rest = "\n".join(info["doc"].splitlines()[1:]).strip()
    if rest:
        lines += ["", *("  " + line.strip() if line.strip() else "" for line in rest.splitlines()), ""]
    lines.append("options:" if info["options"] else "options: none")
    lines.extend(f"  {_option_text(o)}" for o in info["options"])

    def names(value: str | list[str]) -> str:
        return value if isinstance(value, str) else ", ".join(value) or "-"

    lines.append(f"requires: {names(info['requires'])}   provides: {names(info['provides'])}   "
                 f"preserves: {names(info['preserves'])}")
    lines.append(f"runs after: {names(info['after'])}   runs before: {names(info['before'])}")
    lines.append(f"tolerance: rtol={cls.tolerance.rtol:g}, atol={cls.tolerance.atol:g}")
    lines.append(f"defined in: {cls.__module__}")
    return "\n".join(lines)


def format_pipeline_detail(pipeline: Pipeline, resolved: Sequence[Pass]) -> str:
    """``optimize-graph passes NAME`` for a named pipeline: its help and each pass it runs."""
    lines = [f"{pipeline.name} (pipeline): {pipeline.help}", f"  = {pipeline.spec}", "", "runs, in order:"]
    width = max(len(p.spec()) for p in resolved) + 2
    lines.extend(f"  {p.spec():<{width}}{p.summary()}" for p in resolved)
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_safe(dataclasses.asdict(value))
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _json_safe(value.item())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def to_json(value: Any) -> str:
    """Strict JSON text (no NaN/Infinity literals) for reports, summaries and listings."""
    return json.dumps(_json_safe(value), indent=2, allow_nan=False)
