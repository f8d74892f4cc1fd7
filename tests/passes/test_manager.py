"""PassManager: contracts, ordering, verification, instrumentation and custom passes."""

from __future__ import annotations

import io
import textwrap

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.errors import PassFailedError, PipelineError, VerificationError
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import Pass, PassContext, PassManager, PassResult, register_pass
from onnxsmith.passes.registry import get_pass, load_plugin

MODEL = """
<ir_version: 9, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
    a = Identity(x)
    b = Relu(a)
    y = Neg(b)
}
"""


def _register(scratch_registry, name, fn, **contract):
    register_pass(scratch_registry(name), **contract)(fn)
    return name


def _noop(model, ctx):
    """Does nothing."""
    return False


def _negate_outputs(model, ctx):
    """Breaks equivalence on purpose: appends a Neg to the first output."""
    graph = model.graph
    out = graph.outputs[0]
    node = ir.Node("", "Neg", [out])
    graph.append(node)
    node.outputs[0].name = "broken"
    node.outputs[0].type, node.outputs[0].shape = out.type, out.shape
    graph.outputs[0] = node.outputs[0]
    return True


def _drop_identity(model, ctx):
    """Removes Identity nodes."""
    changed = False
    for node in list(model.graph):
        if node.op_type == "Identity" and not node.outputs[0].is_graph_output():
            node.outputs[0].replace_all_uses_with(node.inputs[0])
            model.graph.remove(node, safe=True)
            changed = True
    return changed


def test_report_records_each_pass(scratch_registry):
    name = _register(scratch_registry, "t-drop-identity", _drop_identity)
    report = PassManager(f"{name},{name}", verify="numeric").run(parse_text(MODEL))
    first, second = report.records
    assert (first.modified, first.nodes_before, first.nodes_after) == (True, 3, 2)
    assert (second.modified, second.nodes_before, second.nodes_after) == (False, 2, 2)
    assert report.numeric and all(d["ok"] for d in report.numeric)
    assert report.to_dict()["passes"][0]["name"] == name


def test_numeric_verification_names_the_breaking_pass(scratch_registry):
    ok = _register(scratch_registry, "t-drop-identity", _drop_identity)
    bad = _register(scratch_registry, "t-negate", _negate_outputs)
    with pytest.raises(VerificationError, match="pass 't-negate' broke numeric equivalence: output 'y' max abs err"):
        PassManager(f"{ok},{bad}", verify="numeric").run(parse_text(MODEL))


def test_structural_verification_catches_unsorted_graph(scratch_registry):
    def reverse(model, ctx):
        """Reverses node order (breaks topological order)."""
        nodes = list(model.graph)
        model.graph.remove(nodes)
        model.graph.extend(reversed(nodes))
        return True

    name = _register(scratch_registry, "t-reverse", reverse)
    with pytest.raises(VerificationError, match="after pass 't-reverse'.*not topologically sorted"):
        PassManager(name).run(parse_text(MODEL))


def test_ordering_constraint_fails_fast_with_suggestion(scratch_registry):
    first = _register(scratch_registry, "t-first", _noop)
    second = _register(scratch_registry, "t-second", _noop, after=(first,))
    with pytest.raises(PipelineError) as info:
        PassManager(f"{second},{first}").run(parse_text(MODEL))
    assert "'t-second' must run after 't-first'" in str(info.value)
    assert "suggested order: t-first,t-second" in str(info.value)


def test_missing_property_names_the_provider(scratch_registry):
    provider = _register(scratch_registry, "t-provider", _noop, provides={"t-facts"})
    needy = _register(scratch_registry, "t-needy", _noop, requires={"t-facts"})
    with pytest.raises(PipelineError, match="requires 't-facts'.*run 't-provider' before it: t-provider,t-needy"):
        PassManager(needy).run(parse_text(MODEL))
    PassManager(f"{provider},{needy}").run(parse_text(MODEL))


def test_modifying_pass_drops_unpreserved_properties(scratch_registry):
    provider = _register(scratch_registry, "t-provider", _noop, provides={"t-facts"})
    changer = _register(scratch_registry, "t-changer", _drop_identity)
    keeper = _register(scratch_registry, "t-keeper", _drop_identity, preserves="all")
    needy = _register(scratch_registry, "t-needy", _noop, requires={"t-facts"})
    with pytest.raises(PipelineError, match="requires 't-facts'"):
        PassManager(f"{provider},{changer},{needy}").run(parse_text(MODEL))
    PassManager(f"{provider},{keeper},{needy}").run(parse_text(MODEL))


def test_debug_mode_catches_a_lie_about_modified(scratch_registry):
    def liar(model, ctx):
        """Changes the model but says it did not."""
        _drop_identity(model, ctx)
        return False

    name = _register(scratch_registry, "t-liar", liar)
    with pytest.raises(PassFailedError, match="reported modified=False but changed the model"):
        PassManager(name).run(parse_text(MODEL), PassContext(debug=True))


def test_crashing_pass_is_wrapped(scratch_registry):
    def crash(model, ctx):
        """Raises."""
        raise KeyError("boom")

    name = _register(scratch_registry, "t-crash", crash)
    with pytest.raises(PassFailedError, match="pass 't-crash' failed: KeyError"):
        PassManager(name).run(parse_text(MODEL))


def test_print_ir_after(scratch_registry):
    name = _register(scratch_registry, "t-drop-identity", _drop_identity)
    stream = io.StringIO()
    PassManager(name, print_ir_after=[name], ir_stream=stream).run(parse_text(MODEL))
    assert f"IR after {name}" in stream.getvalue() and "Identity" not in stream.getvalue()
    with pytest.raises(PipelineError, match="not in the pipeline"):
        PassManager(name, print_ir_after=["nope"], ir_stream=stream)


def test_function_pass_with_options(scratch_registry):
    from dataclasses import dataclass

    @dataclass
    class ScaleOptions:
        factor: float = 2.0

    def scale_weights(model, ctx, options):
        """Multiplies every float initializer by a factor."""
        for value in model.graph.initializers.values():
            value.const_value = ir.tensor(value.const_value.numpy() * options.factor)
        return PassResult(True, {"scaled": len(model.graph.initializers)})

    name = scratch_registry("t-scale")
    register_pass(name, options=ScaleOptions)(scale_weights)
    b = GraphBuilder()
    x = b.input("x", "float32", [2])
    b.output(b.Mul(x, b.const(np.array([1.0, 3.0], np.float32), "w")), "y")
    model = b.build()
    report = PassManager(f"{name}{{factor=0.5}}").run(model)
    assert report.records[0].stats == {"scaled": 1}
    np.testing.assert_allclose(model.graph.initializers["w"].const_value.numpy(), [0.5, 1.5])


def test_pass_must_return_a_result(scratch_registry):
    def forgetful(model, ctx):
        """Returns nothing."""

    name = _register(scratch_registry, "t-forgetful", forgetful)
    with pytest.raises(PassFailedError, match="must return a PassResult"):
        PassManager(name).run(parse_text(MODEL))


def test_load_plugin_from_file(tmp_path, scratch_registry):
    scratch_registry("t-plugin-pass")
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(textwrap.dedent('''
        from onnxsmith import register_pass

        @register_pass("t-plugin-pass")
        def plugin_pass(model, ctx):
            """A pass from a plugin file."""
            return False
    '''))
    load_plugin(str(plugin))
    assert get_pass("t-plugin-pass").summary() == "A pass from a plugin file."
    with pytest.raises(PipelineError, match="plugin file not found"):
        load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(PipelineError, match="cannot import plugin"):
        load_plugin("no_such_module_xyz")


def test_entry_point_plugins_are_discovered(monkeypatch, scratch_registry):
    from importlib import metadata

    from onnxsmith.passes import Pass, registry

    class EntryPointPass(Pass):
        """Found through an entry point."""

        name = scratch_registry("t-entry-point")

        def run(self, model, ctx):
            return PassResult(False)

    class FakeEntryPoint:
        name, value = "demo", "demo:EntryPointPass"

        def load(self):
            return EntryPointPass

    monkeypatch.setattr(metadata, "entry_points", lambda group: [FakeEntryPoint()] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert get_pass("t-entry-point") is EntryPointPass


def test_registration_rules(scratch_registry):
    with pytest.raises(ValueError, match="needs a docstring"):
        register_pass(scratch_registry("t-undocumented"))(lambda model, ctx: False)
    with pytest.raises(ValueError, match="kebab-case"):
        register_pass("Bad Name")(_noop)


def _idempotent_pass(scratch_registry, name: str, body) -> str:
    """Registers a class pass declared idempotent that counts its runs in ``ctx.data[name]``."""

    class Counted(Pass):
        """Counts its runs."""

        idempotent = True

        def run(self, model, ctx):
            ctx.data[name] = ctx.data.get(name, 0) + 1
            return PassResult(body(model, ctx))

    Counted.name = scratch_registry(name)
    register_pass(Counted)
    return name


def test_idempotent_pass_is_not_rerun_on_an_unchanged_model(scratch_registry):
    counted = _idempotent_pass(scratch_registry, "t-counted", _drop_identity)
    noop = _register(scratch_registry, "t-noop", _noop)
    ctx = PassContext()
    report = PassManager(f"{counted},{noop},{counted}").run(parse_text(MODEL), ctx)
    assert ctx.data[counted] == 1
    first, _, rerun = report.records
    assert first.modified and not rerun.modified
    assert rerun.stats == {"skipped": 1} and (rerun.nodes_before, rerun.nodes_after) == (2, 2)


def test_idempotent_pass_reruns_after_a_change(scratch_registry):
    counted = _idempotent_pass(scratch_registry, "t-counted", _noop)
    drop = _register(scratch_registry, "t-drop-identity", _drop_identity)
    ctx = PassContext()
    PassManager(f"{counted},{drop},{counted}").run(parse_text(MODEL), ctx)
    assert ctx.data[counted] == 2


def test_debug_mode_reruns_an_idempotent_pass_and_catches_a_false_claim(scratch_registry):
    def always_append(model, ctx):
        _negate_outputs(model, ctx)
        model.graph.outputs[0].name = f"broken{len(model.graph)}"
        return True

    counted = _idempotent_pass(scratch_registry, "t-counted", always_append)
    with pytest.raises(PassFailedError, match="declared idempotent but changed the model"):
        PassManager(f"{counted},{counted}").run(parse_text(MODEL), PassContext(debug=True))


def test_a_pass_missing_its_inputs_fails_before_any_pass_runs():
    ran = []

    class Counting(Pass):
        name = "counting-pass"

        def run(self, model, ctx):
            ran.append(self.name)
            return PassResult(False)

    class NeedsData(Pass):
        name = "needs-data-pass"

        def check_context(self, ctx):
            if "data" not in ctx.data:
                raise PipelineError("needs-data-pass needs data", "put it in ctx.data['data']")

        def run(self, model, ctx):
            ran.append(self.name)
            return PassResult(False)

    with pytest.raises(PipelineError, match="needs data"):
        PassManager([Counting(), NeedsData()]).run(parse_text(MODEL))
    assert ran == []
    ctx = PassContext()
    ctx.data["data"] = 1
    PassManager([Counting(), NeedsData()]).run(parse_text(MODEL), ctx)
    assert ran == ["counting-pass", "needs-data-pass"]
