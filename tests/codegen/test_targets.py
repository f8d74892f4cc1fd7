"""Targets: registry, op tables derived from onnxruntime, static legality, fusion and quantization data."""

from __future__ import annotations

import json

import onnx_ir as ir
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from onnxsmith.codegen import (
    FUSION_FAMILIES,
    Kernel,
    QuantConstraints,
    Target,
    UnknownTargetError,
    get_target,
    list_targets,
    target_of,
)
from onnxsmith.codegen.optable import OPEN
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import PassContext

CONTRIB_FUSION_OPS = ("FusedConv", "FusedMatMul", "Gelu", "FastGelu", "BiasGelu", "SkipLayerNormalization",
                      "Attention", "MultiHeadAttention", "EmbedLayerNormalization")


def test_registry_lists_the_four_targets_and_each_loads():
    assert list_targets() == ["generic", "cpu", "cuda", "tensorrt"]
    for name in list_targets():
        target = get_target(name)
        assert target.name == name
        summary = json.loads(json.dumps(target.to_dict()))
        assert summary["ops"]["count"] > 100, name


@pytest.mark.parametrize(("name", "expected"), [
    ("cpuu", "unknown target 'cpuu' (did you mean 'cpu'?)"),
    ("nnapi", "unknown target 'nnapi' (known targets: generic, cpu, cuda, tensorrt)"),
])
def test_unknown_target_is_a_one_line_error_with_a_hint(name, expected):
    with pytest.raises(UnknownTargetError) as info:
        get_target(name)
    assert str(info.value) == expected


def test_target_of_reads_the_pass_context():
    assert target_of(PassContext(target="tensorrt")) is get_target("tensorrt")
    with pytest.raises(UnknownTargetError):
        target_of(PassContext(target="gpu"))


def test_cpu_op_table_is_onnxruntimes_cpu_kernel_registry():
    registered = {(d.domain, d.op_name) for d in ort_state.get_all_opkernel_def()
                  if d.provider == "CPUExecutionProvider"}
    cpu = get_target("cpu")
    assert cpu.ops.ops("com.microsoft") == {op for domain, op in registered if domain == "com.microsoft"}
    assert cpu.ops.ops("") == {op for domain, op in registered if domain == ""}
    assert "onnxruntime" in cpu.ops.source


@pytest.mark.parametrize(("domain", "op", "opset"), [
    ("com.microsoft", "FusedConv", 1), ("com.microsoft", "Gelu", 1), ("com.microsoft", "QLinearConv", 1),
    ("com.microsoft", "MatMulNBits", 1), ("", "QLinearConv", 13), ("", "Abs", 12), ("ai.onnx", "Conv", 21),
    ("", "HardSwish", 17),  # no kernel: onnxruntime inlines the ONNX function
    ("", "Constant", 17),  # becomes an initializer when the model loads
])
def test_cpu_supports_real_ops(domain, op, opset):
    assert get_target("cpu").supports_op(domain, op, opset)


@pytest.mark.parametrize(("domain", "op", "opset", "reason"), [
    ("com.microsoft", "MadeUpFusedThing", 1, "com.microsoft::MadeUpFusedThing is unknown to onnxruntime"),
    ("", "LayerNormalization", 16, None),  # served by onnxruntime's own ONNX-domain kernel since v1
    ("com.microsoft", "BiasSoftmax", 1, "has no kernel for com.microsoft::BiasSoftmax(1)"),  # CUDA-only
])
def test_cpu_reasons(domain, op, opset, reason):
    found = get_target("cpu").why_unsupported(domain, op, opset)
    assert found == reason if reason is None else reason in found


def test_kernels_serve_since_versions_by_onnxruntimes_rule():
    assert Kernel("", "Abs", 6, 12).serves(6) and Kernel("", "Abs", 6, 12).serves(12)
    assert not Kernel("", "Abs", 6, 12).serves(13)
    assert Kernel("", "Abs", 13).serves(13)
    assert not Kernel("", "Abs", 13, OPEN).serves(14)  # an open kernel serves only its own version
    assert not Kernel("", "Abs", 13).serves(12)


def test_generic_is_standard_onnx_with_versions():
    generic = get_target("generic")
    assert generic.supports_op("", "LayerNormalization", 17)
    assert generic.why_unsupported("", "LayerNormalization", 16) == "LayerNormalization does not exist at opset 16"
    assert generic.supports_op("", "Upsample", 9)
    assert not generic.supports_op("", "Upsample", 10)  # deprecated at 10
    assert "unknown to standard ONNX" in generic.why_unsupported("com.microsoft", "Gelu", 1)


def test_hand_written_targets_hold_their_constraints():
    cuda, trt = get_target("cuda"), get_target("tensorrt")
    assert not cuda.supports_op("", "QLinearConv", 13)
    assert not trt.supports_op("", "MatMulInteger", 13)
    assert trt.supports_op("com.microsoft", "EPContext", 1)
    assert not trt.supports_op("com.microsoft", "FusedConv", 1)
    for op in CONTRIB_FUSION_OPS:  # every contrib op a cpu/cuda fusion family emits has a kernel there
        assert get_target("cpu").supports_op("com.microsoft", op, 1), op
        assert cuda.supports_op("com.microsoft", op, 1), op


def _model_with_contrib_node() -> ir.Model:
    return parse_text("""
        <ir_version: 9, opset_import: ["" : 17, "com.microsoft" : 1]>
        g (float[2, 4] x) => (float[2, 4] y) {
            r = Relu(x)
            y = com.microsoft.Gelu(r)
        }
    """, check=False)


def test_unsupported_nodes_finds_a_contrib_node_under_generic_only():
    model = _model_with_contrib_node()
    [found] = get_target("generic").unsupported_nodes(model)
    assert (found.op, found.opset) == ("com.microsoft::Gelu", 1)
    assert get_target("cpu").unsupported_nodes(model) == []
    assert get_target("generic").supports(model.graph.node(0), model.opset_imports)
    assert not get_target("generic").supports(model.graph.node(1), model.opset_imports)


def test_unsupported_nodes_looks_into_subgraphs_and_local_functions():
    model = parse_text("""
        <ir_version: 9, opset_import: ["" : 17, "local" : 1]>
        g (bool c, float[2] x) => (float[2] y) {
            y = If(c) <then_branch = t () => (float[2] a) { a = Relu(x) },
                       else_branch = e () => (float[2] b) { b = com.microsoft.FastGelu(x) }>
            z = local.Twice(x)
        }
        <domain: "local", opset_import: ["" : 17, "com.microsoft" : 1]>
        Twice (u) => (v) { v = com.microsoft.BiasGelu(u, u) }
    """, check=False)
    ops = sorted(u.op for u in get_target("generic").unsupported_nodes(model))
    assert ops == ["com.microsoft::BiasGelu", "com.microsoft::FastGelu"]  # not the call local::Twice


def test_a_domain_the_model_does_not_import_is_reported():
    b = GraphBuilder(opset=17)
    b.output(b.op("Gelu", b.input("x", shape=[2]), _domain="com.microsoft"))
    [found] = get_target("cpu").unsupported_nodes(b.build(infer_types=False))
    assert found.reason == "the model does not import domain 'com.microsoft'"


def test_fusion_families():
    cpu = get_target("cpu")
    assert cpu.fusions | cpu.opt_in_fusions == set(FUSION_FAMILIES)
    assert not cpu.allows_fusion("attention") and cpu.allows_fusion("attention", named=True)
    assert not get_target("generic").allows_fusion("attention", named=True)  # opt-in needs the target to run it
    generic = get_target("generic")
    assert generic.allows_fusion("conv-bn") and not generic.allows_fusion("conv-activation")
    assert not get_target("tensorrt").allows_fusion("attention")
    with pytest.raises(ValueError, match="unknown fusion family 'conv-bm'"):
        generic.allows_fusion("conv-bm")
    with pytest.raises(ValueError, match="unknown fusion families"):
        Target("x", "CPUExecutionProvider", "", frozenset({"nope"}), generic.op_table_source, generic.quant_source)


def test_cpu_quantization_types_come_from_onnxruntime_kernels():
    quant = get_target("cpu").quant
    T = ir.DataType
    assert {T.UINT8, T.INT8, T.INT16, T.UINT16} <= quant.activation_dtypes
    assert {T.INT8, T.INT4} <= quant.weight_dtypes
    assert quant.formats == {"qdq", "qoperator"}
    assert {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear",
            "com.microsoft::QAttention", "com.microsoft::MatMulNBits"} <= quant.integer_ops
    assert (quant.preferred_activation, quant.preferred_weight) == (T.UINT8, T.INT8)


def test_tensorrt_wants_symmetric_int8_qdq():
    quant = get_target("tensorrt").quant
    assert quant.formats == {"qdq"}
    assert quant.symmetric_activations and quant.symmetric_weights
    assert quant.activation_dtypes == {ir.DataType.INT8}
    assert not quant.integer_ops


def test_quant_constraints_validate_themselves():
    T = ir.DataType
    with pytest.raises(ValueError, match="unknown quantization formats"):
        QuantConstraints(frozenset({"qlinear"}), frozenset({T.INT8}), frozenset({T.INT8}), T.INT8, T.INT8)
    with pytest.raises(ValueError, match="preferred"):
        QuantConstraints(frozenset({"qdq"}), frozenset({T.INT8}), frozenset({T.INT8}), T.UINT8, T.INT8)


def test_kernel_type_constraints_are_kept():
    kernels = get_target("cpu").ops.kernels_for("", "MatMulInteger", 13)
    assert kernels
    for kernel in kernels:
        assert set(kernel.types("T1")) | set(kernel.types("T2")) <= {"tensor(uint8)", "tensor(int8)"}
        assert kernel.types("T3") == ("tensor(int32)",)


def test_cpu_kernels_match_every_cpu_registration_of_onnxruntime():
    """The table converts an op's registrations on first lookup: all of them, ranges and types exact."""
    expected: dict[tuple[str, str], list[tuple[int, int, dict[str, list[str]]]]] = {}
    for d in ort_state.get_all_opkernel_def():
        if d.provider == "CPUExecutionProvider":
            domain = "" if d.domain == "ai.onnx" else d.domain
            expected.setdefault((domain, d.op_name), []).append((*d.version_range, d.type_constraints))
    kernels = get_target("cpu").ops.kernels
    assert set(kernels) == set(expected) and len(kernels) == len(expected)
    assert ("com.microsoft", "MadeUpFusedThing") not in kernels
    assert kernels.get(("com.microsoft", "MadeUpFusedThing")) is None
    for key, registrations in expected.items():
        found = kernels[key]
        assert kernels[key] is found  # converted once
        assert [(k.domain, k.op_type, k.first, k.last) for k in found] == [(*key, a, b) for a, b, _ in registrations]
        for kernel, (_, _, constraints) in zip(found, registrations):
            assert {name: list(kernel.types(name)) for name in constraints} == constraints
