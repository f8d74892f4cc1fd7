"""quantize-weights: MatMulNBits layout, golden forms per target, declines, the error bound, and
what onnxruntime runs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.errors import PassOptionError
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant._nbits import pack_blocks, pack_zero_points
from onnxsmith.passes.quant.scales import dequantize, matmul_error_bound, quantize_blockwise
from onnxsmith.passes.rewrite.testing import canonical_text
from onnxsmith.verify import check_pass, models
from onnxsmith.verify._session import run_model

T = ir.DataType

# One column of 16: 0..7, -1..-7 and 7.5; max |w| = 7.5 gives scale 7.5 / 7.5 = 1 for symmetric int4.
COLUMN = [*range(8), *range(-1, -8, -1), 7.5]
MATMUL = """<ir_version: 8, opset_import: ["" : OPSET]>
g (float[2,16] x) => (float[2,1] y) <float[16,1] w = {W}> {
  [mm] y = MatMul(x, w)
}"""


def _matmul_text(opset: int = 17, column: list[float] = COLUMN) -> str:
    return MATMUL.replace("OPSET", str(opset)).replace("W", ", ".join(map(str, column)))


def _run(text_or_model, spec: str = "quantize-weights", target: str = "cpu", ctx: PassContext | None = None):
    model = parse_text(text_or_model) if isinstance(text_or_model, str) else text_or_model
    report = PassManager(spec, verify="structural").run(model, ctx or PassContext(target=target))
    return model, report.records[0]


def test_pack_blocks_puts_the_lower_k_index_in_the_low_nibble():
    q = np.array([[1, 2], [3, 4], [5, 6]], np.uint8)  # K = 3, N = 2
    zero = np.array([[8, 9]], np.uint8)  # one block of 4 per column; the 4th element is padding
    packed = pack_blocks(q, 4, 4, zero)
    assert packed.shape == (2, 1, 2)
    assert packed.tolist() == [[[1 | 3 << 4, 5 | 8 << 4]], [[2 | 4 << 4, 6 | 9 << 4]]]
    assert pack_blocks(q, 8, 4, zero).tolist() == [[[1, 3, 5, 8]], [[2, 4, 6, 9]]]


def test_pack_zero_points_packs_along_blocks():
    zero = np.array([[1, 2], [3, 4], [5, 6]], np.uint8)  # 3 blocks, N = 2
    assert pack_zero_points(zero, 4).tolist() == [[1 | 3 << 4, 5], [2 | 4 << 4, 6]]
    assert pack_zero_points(zero, 8).tolist() == [[1, 3, 5], [2, 4, 6]]


def test_cpu_matmul_becomes_matmul_nbits():
    model, record = _run(_matmul_text(), "quantize-weights{block-size=16}")
    # q = w + 8 (7.5 rounds to 8 and saturates at 15); pairs (low, high) = (8, 9), (10, 11) ...
    expected = """<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (float[2,16] x) => (float[2,1] y)
  <uint8[1,1,8] w_q4 = {152, 186, 220, 254, 103, 69, 35, 241}, float[1,1] w_scales = {1.0}> {
  [mm_MatMulNBits] y = com.microsoft.MatMulNBits <K = 16, N = 1, bits = 4, block_size = 16> (x, w_q4, w_scales)
}"""
    assert canonical_text(model) == canonical_text(parse_text(expected))
    assert record.stats["applied"] == {"weights-matmul": 1, "weights-gather": 0, "weights-embed-layer-norm": 0}


def test_generic_int8_is_blockwise_dequantize_linear():
    column = [v * 17 for v in COLUMN]  # max |w| = 127.5: scale 1 for symmetric int8, q = rint(w)
    model, _ = _run(_matmul_text(21, column), "quantize-weights{bits=8;block-size=16}", "generic")
    q = ", ".join(str(min(int(np.rint(v)), 127)) for v in column)
    expected = f"""<ir_version: 8, opset_import: ["" : 21]>
g (float[2,16] x) => (float[2,1] y) <int8[16,1] w_q8 = {{{q}}}, float[1,1] w_scale = {{1.0}}> {{
  [mm_DequantizeLinear] mm_DequantizeLinear_out = DequantizeLinear <axis = 0, block_size = 16> (w_q8, w_scale)
  [mm_MatMul] y = MatMul(x, mm_DequantizeLinear_out)
}}"""
    assert canonical_text(model) == canonical_text(parse_text(expected))


def _model(k: int, n: int, seed: int = 0, opset: int = 21, infer_types: bool = True) -> tuple[ir.Model, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, n)) * rng.uniform(0.1, 2.0, n)).astype(np.float32)
    b = GraphBuilder(opset)
    x = b.input("a", "float32", [2, 3, k])
    b.output(b.MatMul(b.Relu(x), b.initializer("w", w), _name="mm"), "y", "float32")
    return b.build(infer_types=infer_types), w


@pytest.mark.parametrize("target", ["cpu", "generic"])
@pytest.mark.parametrize(("bits", "symmetric"), [(4, True), (4, False), (8, True), (8, False)])
@pytest.mark.parametrize(("k", "block_size"), [(80, 32), (64, 64), (40, 16)])
def test_result_is_a_matmul_by_the_dequantized_weight_within_the_bound(target, bits, symmetric, k, block_size):
    model, w = _model(k, 24)
    a = np.random.default_rng(1).standard_normal((2, 3, k)).astype(np.float32)
    expected = run_model(model, {"a": a})[0]
    _run(model, f"quantize-weights{{bits={bits};block-size={block_size};symmetric={str(symmetric).lower()}}}", target)
    assert "MatMulNBits" in {n.op_type for n in model.graph} or target == "generic"
    actual = run_model(model, {"a": a})[0]
    # numpy reference: the same blockwise RTN, then a float MatMul
    dtype = {(4, True): T.INT4, (4, False): T.UINT4, (8, True): T.INT8, (8, False): T.UINT8}[bits, symmetric]
    q, params = quantize_blockwise(w, dtype, axis=0, block_size=block_size, symmetric=symmetric)
    relu = np.maximum(a, 0)
    np.testing.assert_allclose(actual, relu @ dequantize(q, params), rtol=1e-4, atol=1e-4)
    step = np.repeat(params.scale, block_size, axis=0)[:k]
    bound = matmul_error_bound(relu, np.abs(w), 0.0, step)
    assert np.all(np.abs(actual - expected) <= bound + 1e-5 * (relu @ np.abs(w)) + 1e-5)


@pytest.mark.parametrize("target", ["cpu", "generic"])
def test_onnxruntime_runs_matmul_nbits(target):
    model, _ = _model(64, 16)
    _run(model, target=target)
    report = ep_check(model, get_target("cpu"))
    assert report.ok, report.format()
    # on generic, onnxruntime fuses the blockwise DequantizeLinear and MatMul into MatMulNBits itself
    assert report.optimized_ops.get("com.microsoft::MatMulNBits") == 1, report.format()
    assert "MatMul" not in report.optimized_ops and not report.qdq_left


def test_untyped_activations_are_quantized():
    model, _ = _model(32, 8, opset=17, infer_types=False)
    _, record = _run(model)
    assert record.stats["applied"] == {"weights-matmul": 1, "weights-gather": 0, "weights-embed-layer-norm": 0}


def test_generic_needs_opset_21():
    model = parse_text(_matmul_text(17))
    ctx = PassContext(target="generic")
    _, record = _run(model, "quantize-weights{explain=true}", ctx=ctx)
    assert not record.modified
    assert any("needs opset 21, the model imports 17" in line for line in ctx.trace["quantize-weights"]), ctx.trace


@pytest.mark.parametrize(("options", "message"), [
    ("bits=3", "bits must be 4 or 8"),
    ("block-size=24", "power of two >= 16"),
    ("block-size=8", "power of two >= 16"),
    ("accuracy-level=5", "accuracy-level must be in 0..4"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(PassOptionError, match=message):
        _run(_matmul_text(), f"quantize-weights{{{options}}}")


@pytest.mark.parametrize(("text", "spec", "reason"), [
    (_matmul_text(), "exclude=mm", "excluded by 'mm'"),
    (_matmul_text().replace("float[16,1] w = {", "float[1,16,1] w = {"), "", "weight has shape [1, 16, 1]"),
    ("""<ir_version: 8, opset_import: ["" : 17]>
g (float[2,16] x, float[16,1] w) => (float[2,1] y) { [mm] y = MatMul(x, w) }""", "", "not a constant"),
])
def test_declines_say_why(text, spec, reason):
    model = parse_text(text)
    before = canonical_text(model)
    ctx = PassContext(target="cpu")
    _, record = _run(model, "quantize-weights{explain=true" + (f";{spec}" if spec else "") + "}", ctx=ctx)
    assert not record.modified and canonical_text(model) == before
    assert any(reason in line for line in ctx.trace["quantize-weights"]), ctx.trace


@pytest.mark.parametrize(("target", "opset"), [("cpu", 17), ("generic", 21)])
def test_second_run_changes_nothing(target, opset):
    model, _ = _run(_matmul_text(opset), target=target)
    _, record = _run(model, target=target)
    assert not record.modified


def test_pass_contract_on_random_models():
    """Structure, tolerance, idempotence and save/load on random MatMul models (cpu: MatMulNBits)."""
    check_pass("quantize-weights", models=models(["MatMul", "Gemm", "Relu", "Add"], max_nodes=6, dynamic=False),
               max_examples=10, context=lambda model: PassContext(target="cpu"))
