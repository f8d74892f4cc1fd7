"""release_inputs: every input None, the node gone from its inputs' uses, other readers kept."""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.ir import _release
from onnxsmith.ir._private import agrees


def test_release_matches_replacing_each_input_by_none():
    assert _release.release_inputs is _release._release_directly  # this onnx_ir: the direct path is checked and used
    a, b = ir.Value(name="a"), ir.Value(name="b")
    node = ir.Node("", "Sum", [a, b, None, a, b])
    keeper = ir.Node("", "Add", [b, a])
    _release.release_inputs(node)
    assert node.inputs == (None,) * 5
    assert [(u.node, u.idx) for u in a.uses()] == [(keeper, 1)]
    assert [(u.node, u.idx) for u in b.uses()] == [(keeper, 0)]


def test_another_layout_falls_back_to_the_public_method(monkeypatch):
    def broken(node):
        node._inputs = ()

    monkeypatch.setattr(_release, "_release_directly", broken)
    assert not agrees(_release._same_end_state)
