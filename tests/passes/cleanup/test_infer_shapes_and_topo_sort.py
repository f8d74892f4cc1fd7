"""infer-shapes (annotations, honest ``modified``, properties) and topo-sort (stable, subgraphs)."""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.ir import parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.cleanup.topo_sort import is_sorted

HEADER = '<ir_version: 8, opset_import: ["" : 17]>'


def test_infer_shapes_annotates_values_and_provides_shapes(helpers):
    model = parse_text(f"""{HEADER}
        g (float[N, 4] x, bool c) => (float[N, 2, 2] y) <int64[3] s = {{0, 2, 2}}> {{
            r = Reshape(x, s)
            y = If(c) <
                then_branch = t () => (float[N, 2, 2] o) {{
                    inner = Neg(r)
                    o = Relu(inner)
                }},
                else_branch = e () => (float[N, 2, 2] o2) {{ o2 = Identity(r) }}
            >
        }}""")
    ctx = PassContext()
    report = PassManager("infer-shapes").run(model, ctx)
    assert report.modified and "shapes" in ctx.properties
    r = next(iter(model.graph)).outputs[0]
    assert (r.dtype, str(r.shape)) == (ir.DataType.FLOAT, "[N,2,2]")
    then_branch = list(model.graph)[1].attributes["then_branch"].as_graph()
    inner = next(iter(then_branch)).outputs[0]
    assert (inner.dtype, str(inner.shape)) == (ir.DataType.FLOAT, "[N,2,2]")
    assert not helpers.run("infer-shapes", model).modified


def test_later_passes_keep_the_shapes_property():
    ctx = PassContext()
    model = parse_text(f"""{HEADER}
        g (float[2] x) => (float[2] y) {{ y = Relu(x) }}""")
    PassManager("infer-shapes,fold-constants,eliminate-noops,cse,dedup-initializers,remove-unused,topo-sort"
                ).run(model, ctx)
    assert {"shapes", "topologically-sorted"} <= ctx.properties


UNSORTED = f"""{HEADER}
    g (float[2] x, bool c) => (float[2] y) {{
        a = Relu(x)
        y = Add(b, d)
        b = Neg(a)
        d = If(c) <
            then_branch = t () => (float[2] o) {{
                o = Add(late, e)
                e = Exp(a)
            }},
            else_branch = f () => (float[2] o2) {{ o2 = Identity(a) }}
        >
        late = Sqrt(a)
    }}"""


def test_topo_sort_orders_graphs_and_subgraphs_stably(helpers):
    model = parse_text(UNSORTED, check=False)
    assert not is_sorted(model.graph)
    report = helpers.run("topo-sort", model, verify="none")
    assert report.modified
    assert [n.outputs[0].name for n in model.graph] == ["a", "b", "late", "d", "y"]
    then_branch = list(model.graph)[3].attributes["then_branch"].as_graph()
    assert [n.outputs[0].name for n in then_branch] == ["e", "o"]
    assert is_sorted(model.graph)
    helpers.assert_idempotent("topo-sort", model)


def test_topo_sort_leaves_a_sorted_graph_alone(helpers):
    model = parse_text(f"""{HEADER}
        g (float[2] x) => (float[2] y) {{
            b = Neg(x)
            a = Relu(x)
            y = Add(a, b)
        }}""")
    report = helpers.run("topo-sort", model)
    assert not report.modified
    assert [n.outputs[0].name for n in model.graph] == ["b", "a", "y"]


def test_an_unsorted_subgraph_alone_makes_the_graph_unsorted(helpers):
    model = parse_text(f"""{HEADER}
        g (float[2] x, bool c) => (float[2] y) {{
            y = If(c) <
                then_branch = t () => (float[2] o) {{
                    o = Neg(e)
                    e = Exp(x)
                }},
                else_branch = f () => (float[2] o2) {{ o2 = Identity(x) }}
            >
        }}""", check=False)
    assert not is_sorted(model.graph)
    assert helpers.run("topo-sort", model, verify="none").records[0].stats == {"moved_nodes": 2}
