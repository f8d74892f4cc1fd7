"""Embedding tables in quantize-dynamic and quantize-weights: golden forms per target, declines,
exactness and the error bound, what onnxruntime runs, and composition after qdq."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from onnxsmith.codegen import ep_check, get_target
from onnxsmith.errors import PassOptionError
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import PassContext, PassManager
from onnxsmith.passes.quant import CalibrationSetup
from onnxsmith.passes.quant.scales import dequantize, quantize_blockwise, quantize_weight
from onnxsmith.passes.rewrite.testing import canonical_text
from onnxsmith.verify._session import run_model

T = ir.DataType

# Rows k / 16 and k / 4 with max |k| = 127: narrow symmetric int8 scales 1/16 and 1/4, q = k.
K = [127, -127, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
GATHER = """<ir_version: 8, opset_import: ["" : OPSET]>
g (int64[3] ids) => (float[3,16] y) <float[2,16] emb = {TABLE}> {
  [gather] y = Gather(emb, ids)
}"""


def _gather_text(k: list[float] = K, opset: int = 17) -> str:
    table = ", ".join(str(v / d) for d in (16, 4) for v in k)
    return GATHER.replace("OPSET", str(opset)).replace("TABLE", table)


def _run(text_or_model, spec: str, target: str = "cpu", ctx: PassContext | None = None):
    model = parse_text(text_or_model) if isinstance(text_or_model, str) else text_or_model
    report = PassManager(spec, verify="structural").run(model, ctx or PassContext(target=target))
    return model, report.records[0]


def _assert_text(model: ir.Model, expected: str) -> None:
    assert canonical_text(model) == canonical_text(parse_text(expected))


def _ints(values: list[int]) -> str:
    return ", ".join(map(str, values))


def test_dynamic_cpu_table_becomes_gather_block_quantized_per_row():
    model, record = _run(_gather_text(), "quantize-dynamic")
    stored = _ints([k + 128 for k in K] * 2)  # int8 shifted to uint8 with the kernel's default zero point 128
    _assert_text(model, f"""<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (int64[3] ids) => (float[3,16] y) <uint8[2,16] emb_q8 = {{{stored}}}, float[2,1] emb_scales = {{0.0625, 0.25}}> {{
  [gather_GatherBlockQuantized] y = com.microsoft.GatherBlockQuantized <bits = 8, block_size = 16> (emb_q8, ids,
                                                                                                   emb_scales)
}}""")
    assert record.stats["applied"]["dynamic-gather"] == 1


def test_dynamic_generic_table_gathers_int8_rows_and_their_scales():
    model, _ = _run(_gather_text(), "quantize-dynamic", "generic")
    _assert_text(model, f"""<ir_version: 8, opset_import: ["" : 17]>
g (int64[3] ids) => (float[3,16] y) <int8[2,16] emb_quantized = {{{_ints(K * 2)}}}, float[2,1] emb_scale = {{0.0625, 0.25}}> {{
  [gather_Gather] gather_Gather_out = Gather(emb_quantized, ids)
  [gather_Cast] gather_Cast_out = Cast <to = 1> (gather_Gather_out)
  [gather_Gather_1] gather_Gather_1_out = Gather(emb_scale, ids)
  [gather_Mul] y = Mul(gather_Cast_out, gather_Gather_1_out)
}}""")


@pytest.mark.parametrize("target", ["cpu", "generic"])
def test_dynamic_per_tensor_table_is_dequantized_after_the_gather(target):
    model, _ = _run(_gather_text(), "quantize-dynamic{per-channel=false}", target)
    first_row = [int(np.rint(k / 4)) for k in K]  # the whole table's scale is the second row's, 1/4
    _assert_text(model, f"""<ir_version: 8, opset_import: ["" : 17]>
g (int64[3] ids) => (float[3,16] y) <int8[2,16] emb_quantized = {{{_ints(first_row + K)}}}, float emb_scale = {{0.25}}> {{
  [gather_Gather] gather_Gather_out = Gather(emb_quantized, ids)
  [gather_DequantizeLinear] y = DequantizeLinear(gather_Gather_out, emb_scale)
}}""")


def test_weights_cpu_4bit_table_packs_two_values_per_byte():
    # max |k| = 7.5: scale 1/16 and 1/4 for symmetric uint4 (zero point 8); q = rint(k) + 8
    k4 = [-7.5, 7, 0, 1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6, -7]
    model, record = _run(_gather_text(k4), "quantize-weights{block-size=16}")
    # pairs (low, high): (0, 15), (8, 9), (10, 11), (12, 13), (14, 7), (6, 5), (4, 3), (2, 1)
    packed = _ints([240, 152, 186, 220, 126, 86, 52, 18] * 2)
    _assert_text(model, f"""<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
g (int64[3] ids) => (float[3,16] y) <uint8[2,8] emb_q4 = {{{packed}}}, float[2,1] emb_scales = {{0.0625, 0.25}}> {{
  [gather_GatherBlockQuantized] y = com.microsoft.GatherBlockQuantized <bits = 4, block_size = 16> (emb_q4, ids,
                                                                                                   emb_scales)
}}""")
    assert record.stats["applied"] == {"weights-matmul": 0, "weights-gather": 1, "weights-embed-layer-norm": 0}


def test_weights_generic_table_is_blockwise_dequantized_after_the_gather():
    k8 = [-127.5, 127, *K[2:]]  # max |k| = 127.5: scale 1/16 and 1/4 for symmetric int8; -127.5 -> -128
    model, _ = _run(_gather_text(k8, opset=21), "quantize-weights{bits=8;block-size=16}", "generic")
    _assert_text(model, f"""<ir_version: 8, opset_import: ["" : 21]>
g (int64[3] ids) => (float[3,16] y)
  <int8[2,16] emb_quantized = {{{_ints([-128, 127, *K[2:]] * 2)}}}, float[2,1] emb_scale = {{0.0625, 0.25}}> {{
  [gather_Gather] gather_Gather_out = Gather(emb_quantized, ids)
  [gather_Gather_1] gather_Gather_1_out = Gather(emb_scale, ids)
  [gather_DequantizeLinear] y = DequantizeLinear <axis = -1, block_size = 16> (gather_Gather_out, gather_Gather_1_out)
}}""")


# --- exactness and the error bound, every form ----------------------------------------------------

ROWS, COLUMNS = 40, 48  # three blocks of 16 per row: an odd count, so 4-bit zero points pad a byte
IDS = np.array([[0, 3, 39, -1, 7], [12, 12, 5, 0, -40]], np.int64)  # repeats and negative indices


def _table_model(opset: int = 17, columns: int = COLUMNS, seed: int = 0) -> tuple[ir.Model, np.ndarray]:
    rng = np.random.default_rng(seed)
    # rows of very different ranges, some all-positive (asymmetric zero points away from the midpoint)
    table = rng.standard_normal((ROWS, columns)) * rng.uniform(0.01, 3.0, (ROWS, 1)) + rng.uniform(0, 2, (ROWS, 1))
    b = GraphBuilder(opset)
    ids = b.input("ids", "int64", list(IDS.shape))
    b.output(b.Gather(b.initializer("emb", table.astype(np.float32)), ids, _name="gather"), "y")
    return b.build(), table.astype(np.float32)


def _reference(table: np.ndarray, dtype: T, granularity: str, symmetric: bool, narrow: bool) -> np.ndarray:
    """The table through the scales module's quantize/dequantize (what DequantizeLinear of it gives)."""
    if granularity == "block":
        q, params = quantize_blockwise(table, dtype, axis=1, block_size=16, symmetric=symmetric)
    else:
        q, params = quantize_weight(table, dtype, axis=0 if granularity == "row" else None, symmetric=symmetric,
                                    narrow=narrow)
    return dequantize(q, params)


def _step(table: np.ndarray, granularity: str, symmetric: bool, levels: float) -> np.ndarray:
    """The quantization step of every element, from its group's own range."""
    groups = {"tensor": table.reshape(1, 1, -1), "row": table[:, None, :],
              "block": table.reshape(ROWS, -1, 16)}[granularity]
    if symmetric:
        step = np.abs(groups).max(axis=-1, keepdims=True) / levels
    else:
        step = (np.maximum(groups.max(axis=-1, keepdims=True), 0) - np.minimum(groups.min(axis=-1, keepdims=True), 0)) / levels
    return np.broadcast_to(step, groups.shape).reshape(table.shape)


FORMS = [  # spec, target, opset, ops, (dtype, granularity, symmetric, narrow), levels
    ("quantize-dynamic", "cpu", 17, ["GatherBlockQuantized"], (T.INT8, "row", True, True), 127),
    ("quantize-dynamic{weight-dtype=uint8;symmetric=false}", "cpu", 17, ["GatherBlockQuantized"],
     (T.UINT8, "row", False, False), 255),
    ("quantize-dynamic", "generic", 17, ["Gather", "Cast", "Gather", "Mul"], (T.INT8, "row", True, True), 127),
    ("quantize-dynamic{symmetric=false}", "generic", 17, ["Gather", "Cast", "Gather", "Sub", "Gather", "Mul"],
     (T.INT8, "row", False, False), 255),
    ("quantize-dynamic{per-channel=false}", "cpu", 17, ["Gather", "DequantizeLinear"], (T.INT8, "tensor", True, True),
     127),
    ("quantize-dynamic{per-channel=false;weight-dtype=uint8;symmetric=false}", "generic", 17,
     ["Gather", "DequantizeLinear"], (T.UINT8, "tensor", False, False), 255),
    ("quantize-weights{bits=8;block-size=16}", "cpu", 17, ["GatherBlockQuantized"], (T.UINT8, "block", True, False),
     127.5),
    ("quantize-weights{bits=4;block-size=16}", "cpu", 17, ["GatherBlockQuantized"], (T.UINT4, "block", True, False),
     7.5),
    ("quantize-weights{bits=4;block-size=16;symmetric=false}", "cpu", 17, ["GatherBlockQuantized"],
     (T.UINT4, "block", False, False), 15),
    ("quantize-weights{bits=8;block-size=16}", "generic", 21, ["Gather", "Gather", "DequantizeLinear"],
     (T.INT8, "block", True, False), 127.5),
    ("quantize-weights{bits=8;block-size=16;symmetric=false}", "generic", 21,
     ["Gather", "Gather", "Gather", "DequantizeLinear"], (T.UINT8, "block", False, False), 255),
]


@pytest.mark.parametrize(("spec", "target", "opset", "ops", "scheme", "levels"), FORMS)
def test_rows_are_exactly_the_dequantized_table_within_half_a_step(spec, target, opset, ops, scheme, levels):
    model, table = _table_model(opset)
    _, record = _run(model, spec, target)
    assert [n.op_type for n in model.graph] == ops
    actual = run_model(model, {"ids": IDS})[0]
    np.testing.assert_array_equal(actual, _reference(table, *scheme)[IDS])  # DequantizeLinear's own float32 result
    error = np.abs(actual - table[IDS])
    step = _step(table, scheme[1], scheme[2], levels)[IDS]
    assert np.all(error <= step / 2 + 4 * np.spacing(np.abs(table[IDS]))) and error.max() > 0
    _, again = _run(model, spec, target)  # the stored scales are not tables to quantize in turn
    assert not again.modified


@pytest.mark.parametrize(("spec", "kernel"), [("quantize-dynamic", "com.microsoft::GatherBlockQuantized"),
                                              ("quantize-weights", "com.microsoft::GatherBlockQuantized")])
def test_onnxruntime_runs_the_cpu_form_as_one_kernel(spec, kernel):
    model, _ = _table_model()
    _run(model, spec)
    report = ep_check(model, get_target("cpu"), {"ids": IDS})
    assert report.ok, report.format()
    assert report.optimized_ops == {kernel: 1}, report.format()


def test_onnxruntime_keeps_the_generic_form_on_the_gathered_rows():
    model, _ = _table_model()
    _run(model, "quantize-dynamic", "generic")
    report = ep_check(model, get_target("cpu"), {"ids": IDS})
    assert report.ok, report.format()
    # no DequantizeLinear of the whole table appears; the float table is gone
    assert report.optimized_ops == {"Gather": 2, "Cast": 1, "Mul": 1}, report.format()
    assert "emb" not in model.graph.initializers


# --- declines ---------------------------------------------------------------------------------------


def _shared_table() -> ir.Model:
    """Tied embeddings: the table is gathered and also multiplied (an LM head)."""
    b = GraphBuilder(17)
    ids = b.input("ids", "int64", [3])
    table = b.initializer("emb", np.ones((4, 16), np.float32))
    hidden = b.Gather(table, ids, _name="gather")
    b.output(b.MatMul(hidden, b.Transpose(table, perm=[1, 0], _name="tied")), "y")
    return b.build()


def _parameter_lookup() -> ir.Model:
    """Blockwise DequantizeLinear of gathered integers by gathered float scales (a quantized table's form)."""
    b = GraphBuilder(21)
    ids = b.input("ids", "int64", [3])
    rows = b.Gather(b.initializer("q", np.ones((4, 32), np.int8)), ids)
    scales = b.Gather(b.initializer("s", np.ones((4, 16), np.float32)), ids, _name="gather")
    b.output(b.DequantizeLinear(rows, scales, axis=-1, block_size=2), "y")
    return b.build()


@pytest.mark.parametrize(("case", "model", "spec", "target", "reason"), [
    ("shared table", _shared_table, "quantize-dynamic", "cpu", "the table is also used by tied"),
    ("gather axis 1", lambda: parse_text(_gather_text().replace("Gather(", "Gather <axis = 1> (")), "quantize-dynamic",
     "cpu", "gathers along axis 1"),
    ("3-d table", lambda: parse_text(_gather_text().replace("float[2,16] emb", "float[2,1,16] emb")),
     "quantize-dynamic", "cpu", "table has shape [2, 1, 16]"),
    ("short rows", lambda: parse_text(_gather_text().replace("float[2,16] emb", "float[4,8] emb")),
     "quantize-dynamic", "generic", "rows of 8 elements are too short"),
    ("excluded", lambda: parse_text(_gather_text()), "quantize-dynamic{exclude=gather}", "cpu", "excluded by"),
    ("not selected", lambda: parse_text(_gather_text()), "quantize-weights{op-types=MatMul}", "cpu",
     "op type Gather is not in op-types"),
    ("quantization parameters", _parameter_lookup, "quantize-weights{bits=8}", "generic",
     "the gathered values are quantization parameters"),
    ("4-bit on generic", lambda: parse_text(_gather_text(opset=21)), "quantize-weights", "generic",
     "no 4-bit kernel"),
    ("opset 17 on generic", lambda: parse_text(_gather_text()), "quantize-weights{bits=8}", "generic",
     "needs opset 21, the model imports 17"),
    ("odd rows in 4 bits", lambda: parse_text(_gather_text(K + [1]).replace("16]", "17]")), "quantize-weights",
     "cpu", "do not pack into 4-bit pairs"),
])
def test_declines_say_why(case, model, spec, target, reason):
    model = model()
    before = canonical_text(model)
    ctx = PassContext(target=target)
    name = spec.split("{")[0]
    options = spec[len(name):].strip("{}")
    _, record = _run(model, f"{name}{{explain=true{';' + options if options else ''}}}", ctx=ctx)
    assert not record.modified and canonical_text(model) == before
    assert any(reason in line for line in ctx.trace[name]), ctx.trace


def test_unknown_op_types_are_one_line_errors():
    with pytest.raises(PassOptionError, match="op-types Conv cannot be quantized weight-only"):
        _run(_gather_text(), "quantize-weights{op-types=Conv}")


# --- after qdq ----------------------------------------------------------------------------------------


def test_qdq_stores_tables_as_int8_blocks():
    rng = np.random.default_rng(0)
    b = GraphBuilder(17)
    ids = b.input("ids", "int64", ["N", 6])
    hidden = b.Gather(b.initializer("emb", rng.standard_normal((50, 32)).astype(np.float32)), ids, _name="gather")
    w = b.initializer("w", (rng.standard_normal((32, 16)) * 0.3).astype(np.float32))
    b.output(b.MatMul(hidden, w, _name="mm"), "y")
    model = b.build()
    data = [{"ids": rng.integers(0, 50, (2, 6)).astype(np.int64)} for _ in range(4)]
    expected = run_model(model, data[0])[0]

    ctx = PassContext(target="cpu")
    CalibrationSetup(data).store(ctx)
    report = PassManager("qdq", verify="structural").run(model, ctx)

    assert report.records[-1].stats["applied"] == {"weights-matmul": 0, "weights-gather": 1,
                                                   "weights-embed-layer-norm": 0}
    assert "emb" not in model.graph.initializers
    check = ep_check(model, get_target("cpu"), data[0])
    assert check.ok, check.format()
    assert check.optimized_ops.get("com.microsoft::GatherBlockQuantized") == 1, check.format()
    assert check.optimized_ops.get("com.microsoft::MatMulIntegerToFloat") == 1, check.format()
    actual = run_model(model, data[0])[0]
    assert np.abs(actual - expected).max() < 0.05 * np.abs(expected).max()


@pytest.mark.parametrize(("dtype", "bits"), [(np.int8, 8), (np.int8, 4)])
def test_signed_values_shift_to_the_unsigned_bytes_of_a_wide_add(dtype, bits):
    from onnxsmith.passes.quant.embedding import _to_unsigned

    low, offset = -(1 << (bits - 1)), 1 << (bits - 1)
    values = np.arange(low, -low, dtype=dtype).reshape(-1, 2)
    shifted = _to_unsigned(values, offset)
    assert shifted.dtype == np.uint8
    np.testing.assert_array_equal(shifted, values.astype(np.int64) + offset)
    assert _to_unsigned(np.array(low, dtype), offset) == 0
    np.testing.assert_array_equal(values, np.arange(low, -low, dtype=dtype).reshape(-1, 2))  # input untouched
