"""Golden tests for rules: a model before, the expected model after, both in ONNX text.

``assert_rewrites(rules, before, after)`` parses ``before``, applies the rules to a fixed point,
compares the result with ``after`` structurally (the ONNX text of both, without the value_info
annotations that inference adds; node and value names count) and, by default, checks with
onnxruntime that both compute the same outputs on generated inputs. ``assert_no_rewrite`` is the
negative form: no rule applies and the model is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx
import onnx.printer
import onnx_ir as ir

from onnxsmith.ir.text import parse_text
from onnxsmith.passes.base import Tolerance
from onnxsmith.passes.rewrite.driver import RewriteStats, apply_rules
from onnxsmith.passes.rewrite.rule import Rule, RuleSet
from onnxsmith.verify import compare_outputs, generate_inputs, verify_structure
from onnxsmith.verify._session import run_model

__all__ = ["assert_no_rewrite", "assert_rewrites", "canonical_text"]


def _strip_value_info(graph: onnx.GraphProto) -> None:
    del graph.value_info[:]
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _strip_value_info(attr.g)
            for sub in attr.graphs:
                _strip_value_info(sub)


def canonical_text(model: ir.Model) -> str:
    """ONNX text of ``model`` without value_info (types of intermediate values)."""
    proto = ir.to_proto(model)
    _strip_value_info(proto.graph)
    for function in proto.functions:
        del function.value_info[:]
    return onnx.printer.to_text(proto)


def assert_rewrites(rules: RuleSet | Iterable[Rule], before: str, after: str, *, numeric: bool = True,
                    tolerance: Tolerance | None = None) -> RewriteStats:
    """Asserts that ``rules`` turn model ``before`` into model ``after``; returns the statistics."""
    model = parse_text(before)
    reference = parse_text(before) if numeric else None
    stats = apply_rules(model, rules)
    verify_structure(model, where="after rewriting")
    expected, actual = canonical_text(parse_text(after)), canonical_text(model)
    assert actual == expected, f"rewritten model differs from the expected one:\n{actual}\n--- expected ---\n{expected}"
    if reference is not None:
        inputs = generate_inputs(reference)
        names = [v.name for v in reference.graph.outputs]
        diffs = compare_outputs(run_model(reference, inputs), run_model(model, inputs), names, tolerance or Tolerance())
        bad = [d.describe() for d in diffs if not d.ok]
        assert not bad, "rewritten model computes different outputs: " + "; ".join(bad)
    return stats


def assert_no_rewrite(rules: RuleSet | Iterable[Rule], before: str) -> RewriteStats:
    """Asserts that no rule applies to model ``before`` (and it stays the same); returns the statistics."""
    model = parse_text(before)
    original = canonical_text(model)
    stats = apply_rules(model, rules)
    assert stats.rewrites == 0, f"expected no rewrite, got {stats.applied}"
    assert canonical_text(model) == original, "the model changed although no rule applied"
    return stats
