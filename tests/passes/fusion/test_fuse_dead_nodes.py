"""``fuse`` removes the nodes its rewrites leave without users, and counts them."""

from __future__ import annotations

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager

COLLAPSIBLE = """<ir_version: 9, opset_import: ["" : 17]>
g (float[2,3,4] x) => (float[6,4] y) <int64[2] flat = {6, 4}> {
  shape = Shape (x)
  r = Reshape (x, shape)
  y = Reshape (r, flat)
}"""


def test_the_shape_subgraph_a_rewrite_no_longer_reads_is_removed():
    model = parse_text(COLLAPSIBLE)
    report = PassManager("fuse", verify="numeric").run(model, PassContext())
    assert [node.op_type for node in model.graph] == ["Reshape"]
    (record,) = report.records
    assert record.stats["applied"]["reshape-reshape"] == 1
    assert record.stats["removed_nodes"] == 1


def test_nothing_to_fuse_removes_nothing():
    model = parse_text(COLLAPSIBLE.replace("  shape = Shape (x)\n", "").replace("Reshape (x, shape)", "Relu (x)"))
    report = PassManager("fuse").run(model, PassContext())
    (record,) = report.records
    assert not record.modified and record.stats["removed_nodes"] == 0


def test_a_node_without_users_is_removed_even_where_nothing_fused():
    model = parse_text(COLLAPSIBLE.replace("Reshape (x, shape)", "Relu (x)"))
    report = PassManager("fuse").run(model, PassContext())
    (record,) = report.records
    assert record.modified and record.stats["removed_nodes"] == 1
    assert [node.op_type for node in model.graph] == ["Relu", "Reshape"]
