"""check_pass / check_contract accept correct passes and catch each kind of broken one."""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir
import pytest

from onnxsmith.errors import PipelineError
from onnxsmith.ir import parse_text
from onnxsmith.passes import Pass, PassResult, register_pass
from onnxsmith.verify import PassContractViolation, check_contract, check_pass
from onnxsmith.verify.strategies import models

SMALL = models(ops={"Add", "Relu", "Mul", "Identity"}, redundancy=("identity-chains",), max_nodes=5)
ADDS = models(ops={"Add"}, redundancy=(), max_nodes=3)

MODEL = parse_text("""
<ir_version: 9, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
    a = Identity(x)
    b = Identity(a)
    y = Add(b, x)
}
""")


class RemoveIdentities(Pass):
    """Removes Identity nodes whose output is not a graph output (a correct pass)."""

    name = "t-remove-identities"

    def run(self, model: ir.Model, ctx) -> PassResult:
        removed = 0
        for node in list(model.graph):
            if node.op_type == "Identity" and not node.outputs[0].is_graph_output():
                node.outputs[0].replace_all_uses_with(node.inputs[0])
                model.graph.remove(node, safe=True)
                removed += 1
        return PassResult(removed > 0, {"removed": removed})


class AddToSub(Pass):
    """Breaks equivalence: turns Add into Sub."""

    name = "t-add-to-sub"

    def run(self, model, ctx):
        adds = [n for n in model.graph if n.op_type == "Add"]
        for node in adds:
            node.op_type = "Sub"
        return PassResult(bool(adds))


class GrowForever(Pass):
    """Not idempotent: puts another Identity in front of the first output on every run."""

    name = "t-grow"

    def run(self, model, ctx):
        out = model.graph.outputs[0]
        node = ir.Node("", "Identity", [out], num_outputs=1)
        model.graph.append(node)
        new = node.outputs[0]
        new.name, out.name = out.name, f"{out.name}_inner{len(model.graph)}"
        new.type, new.shape = out.type, out.shape
        model.graph.outputs[0] = new
        return PassResult(True)


class Unsort(Pass):
    """Breaks structure: moves the producer of the last node's input after that node."""

    name = "t-unsort"

    def run(self, model, ctx):
        last = list(model.graph)[-1]
        producers = [v.producer() for v in last.inputs if v is not None and v.producer() is not None]
        if not producers:
            return PassResult(False)
        model.graph.remove(producers[0])
        model.graph.append(producers[0])
        return PassResult(True)


class Sneaky(Pass):
    """Dishonest: renames nodes but reports no change."""

    name = "t-sneaky"

    def run(self, model, ctx):
        for i, node in enumerate(model.graph):
            node.name = f"renamed_{i}"
        return PassResult(False)


class StaleShapes(Pass):
    """Leaves a wrong declared shape behind (the ONNX checker's shape inference catches it)."""

    name = "t-stale-shapes"

    def run(self, model, ctx):
        out = model.graph.outputs[0]
        out.shape = ir.Shape([7] * (len(out.shape) + 1)) if out.shape is not None else ir.Shape([7])
        return PassResult(True)


class DropsOutput(Pass):
    """Breaks the interface: removes the last graph output."""

    name = "t-drops-output"

    def run(self, model, ctx):
        model.graph.outputs.pop()
        return PassResult(True)


class Crashes(Pass):
    """Raises on models with an Add."""

    name = "t-crashes"

    def run(self, model, ctx):
        if any(n.op_type == "Add" for n in model.graph):
            raise KeyError("boom")
        return PassResult(False)


def test_a_correct_pass_satisfies_the_contract():
    check_pass(RemoveIdentities, models=SMALL, max_examples=30)
    check_contract(RemoveIdentities(), MODEL)
    assert len(MODEL.graph) == 3, "check_contract must not change the model it was given"


@pytest.mark.parametrize("broken, clause, fragment", [
    (AddToSub, "numeric", "max abs err"),
    (GrowForever, "idempotent", "second run reported modified=True"),
    (Unsort, "structure", "not topologically sorted"),
    (Sneaky, "honest", "modified=False but changed the model"),
    (StaleShapes, "structure", "ONNX checker rejects"),
    (DropsOutput, "numeric", "is gone"),
    (Crashes, "runs", "KeyError: 'boom'"),
])
def test_each_broken_pass_is_caught_with_the_model_text(broken, clause, fragment):
    with pytest.raises(PassContractViolation) as caught:
        check_pass(broken, models=ADDS, max_examples=20)
    violation = caught.value
    assert violation.pass_name == broken.name and violation.clause == clause
    message = str(violation)
    assert fragment in message
    assert "--- model before the" in message and "Add (" in message


def test_idempotence_failures_show_the_second_run():
    with pytest.raises(PassContractViolation) as caught:
        check_contract(GrowForever, MODEL)
    assert "--- model before the second run ---" in str(caught.value)
    assert "--- change made by the second run" in str(caught.value)


def test_violation_shows_the_change_as_a_diff():
    with pytest.raises(PassContractViolation) as caught:
        check_contract(AddToSub, MODEL)
    assert "-   y = Add (b, x)" in str(caught.value) and "+   y = Sub (b, x)" in str(caught.value)


def test_registered_passes_by_name_with_options_and_requirements(scratch_registry):
    @dataclass
    class RenameOptions:
        prefix: str = "n"

    seen: list[set[str]] = []

    @register_pass(name=scratch_registry("t-provide-names"))
    class ProvideNames(Pass):
        """Provides the 't-named' property (changes nothing)."""

        provides = frozenset({"t-named"})

        def run(self, model, ctx):
            return PassResult(False)

    @register_pass(name=scratch_registry("t-rename"))
    class Rename(Pass):
        """Needs 't-named'; names unnamed nodes with a prefix."""

        Options = RenameOptions
        requires = frozenset({"t-named"})

        def run(self, model, ctx):
            seen.append(set(ctx.properties))
            changed = False
            for i, node in enumerate(model.graph):
                if not node.name.startswith(self.options.prefix):
                    node.name, changed = f"{self.options.prefix}{i}", True
            return PassResult(changed)

    check_pass("t-rename", models=SMALL, max_examples=5, options={"prefix": "renamed_"})
    assert seen and all("t-named" in s for s in seen)
    assert ProvideNames.name == "t-provide-names"


def test_a_requirement_nobody_provides_is_a_clear_error(scratch_registry):
    @register_pass(name=scratch_registry("t-needy"))
    class Needy(Pass):
        """Needs something no pass provides."""

        requires = frozenset({"t-unobtainable"})

        def run(self, model, ctx):
            return PassResult(False)

    with pytest.raises(PipelineError, match="requires 't-unobtainable', which no registered pass provides"):
        check_pass("t-needy", models=SMALL, max_examples=1)


def test_options_only_go_with_a_class_or_name():
    with pytest.raises(TypeError, match="not to a configured Pass instance"):
        check_pass(RemoveIdentities(), options={"x": 1})
