"""Ranges as data: ranges.json round trip, hand edits, validation, identity and resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
from calib_models import mlp, mlp_data

from onnxsmith.calibration import CONTEXT_KEY, RangeRecord, Ranges, calibrate, value_identities
from onnxsmith.errors import DataInputError, OnnxsmithError, OutputError
from onnxsmith.ir import GraphBuilder, parse_text
from onnxsmith.passes import PassContext


@pytest.fixture(scope="module")
def ranges() -> Ranges:
    return calibrate(mlp(), mlp_data(4), calibrator="percentile", percentile=99.9)


def _load_text(tmp_path, text: str) -> Ranges:
    path = tmp_path / "ranges.json"
    path.write_text(text)
    return Ranges.load_json(path)


def _load_values(tmp_path, values: dict) -> Ranges:
    return _load_text(tmp_path, json.dumps({"format": "onnxsmith.ranges", "version": 1, "values": values}))


# -- round trip and editing ---------------------------------------------------------------------

def test_round_trip_keeps_everything(tmp_path, ranges):
    ranges.save_json(tmp_path / "ranges.json")
    loaded = Ranges.load_json(tmp_path / "ranges.json")
    assert loaded.to_dict() == ranges.to_dict()
    assert loaded.calibration["method"] == "percentile" and loaded.calibration["percentile"] == 99.9
    assert loaded["relu_out"].identity == ranges["relu_out"].identity
    assert [p.name for p in tmp_path.iterdir()] == ["ranges.json"]  # no temporary file left


def test_per_channel_round_trip(tmp_path):
    per_channel = calibrate(mlp(), mlp_data(2), per_channel=True, axis=-1)
    per_channel.save_json(tmp_path / "r.json")
    loaded = Ranges.load_json(tmp_path / "r.json")
    assert loaded.to_dict() == per_channel.to_dict()
    lo, hi = loaded["mm1_out"].bounds()
    assert lo.shape == (32,) and np.all(lo <= hi)


def test_file_has_one_record_per_line(tmp_path, ranges):
    ranges.save_json(tmp_path / "ranges.json")
    lines = (tmp_path / "ranges.json").read_text().splitlines()
    assert sum(line.lstrip().startswith('"relu_out": {"min"') for line in lines) == 1
    assert len(lines) == len(ranges) + 7


def test_hand_edited_file_loads_with_the_edit(tmp_path, ranges):
    ranges.save_json(tmp_path / "ranges.json")
    data = json.loads((tmp_path / "ranges.json").read_text())
    data["values"]["relu_out"]["max"] = 6
    data["values"]["extra"] = {"min": -1, "max": 1}
    edited = _load_text(tmp_path, json.dumps(data, indent=4))
    assert edited["relu_out"].max == 6.0
    assert edited["extra"] == RangeRecord(-1.0, 1.0)
    assert edited["extra"].calibrator == "manual" and edited["extra"].identity is None


def test_save_to_a_missing_folder_is_an_output_error(tmp_path, ranges):
    with pytest.raises(OutputError, match="cannot write ranges to .*nowhere"):
        ranges.save_json(tmp_path / "nowhere" / "ranges.json")


# -- validation on load -------------------------------------------------------------------------

@pytest.mark.parametrize("record, message", [
    ({"max": 1}, r"values\[\"v\"\]: missing 'min'"),
    ({"min": "a", "max": 1}, r"values\[\"v\"\]\.min: expected a finite number or a non-empty list of them, "
                             r"got the string 'a'"),
    ({"min": 2, "max": 1}, r"values\[\"v\"\]: min is greater than max"),
    ({"min": [0, 1], "max": [1, 2]}, r"per-channel min/max lists need an 'axis'"),
    ({"min": [0, 1], "max": [1], "axis": 1}, r"must be lists of the same length"),
    ({"min": 0, "max": 1, "axis": 1}, r"'axis' is set but min and max are single numbers"),
    ({"min": 0, "max": 1, "mx": 2}, r"unknown field 'mx' \(fields are: min, max, axis"),
    ({"min": 0, "max": 1, "num_samples": -1}, r"num_samples: expected a non-negative integer"),
    ({"min": 0, "max": 1, "identity": {"op": "Relu"}}, r"identity: expected .* with a string cone"),
    ([0, 1], r"values\[\"v\"\]: expected an object with 'min' and 'max', got a list"),
])
def test_bad_records_are_named(tmp_path, record, message):
    with pytest.raises(DataInputError, match=message):
        _load_values(tmp_path, {"v": record})


def test_bad_files_are_named(tmp_path):
    with pytest.raises(DataInputError, match="ranges file not found"):
        Ranges.load_json(tmp_path / "missing.json")
    with pytest.raises(DataInputError, match="is not valid JSON"):
        _load_text(tmp_path, "{not json")
    with pytest.raises(DataInputError, match="NaN is not allowed"):
        _load_text(tmp_path, '{"format": "onnxsmith.ranges", "version": 1, "values": {"v": {"min": NaN, "max": 1}}}')
    with pytest.raises(DataInputError, match="'format' must be \"onnxsmith.ranges\", got \"other\""):
        _load_text(tmp_path, '{"format": "other"}')
    with pytest.raises(DataInputError, match="unsupported version 2 .*this onnxsmith reads version 1"):
        _load_text(tmp_path, '{"format": "onnxsmith.ranges", "version": 2, "values": {}}')
    with pytest.raises(DataInputError, match="'values' must be an object of records, got a list"):
        _load_text(tmp_path, '{"format": "onnxsmith.ranges", "version": 1, "values": []}')
    with pytest.raises(DataInputError, match="expected a JSON object, got a list"):
        _load_text(tmp_path, "[]")


# -- identity and resolution --------------------------------------------------------------------

_ORIGINAL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
    two = Constant <value = float {2.0}> ()
    s = Mul (x, two)
    a = Add (s, x)
    y = Relu (a)
}
"""

# The same computation after cleanup-style edits: every name changed, the Constant folded into an
# initializer, an Identity inserted, and the commutative Add's operands swapped.
_CLEANED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] input) => (float[N, 4] output) <float two_init = {2.0}> {
    scaled = Mul (input, two_init)
    copy = Identity (scaled)
    summed = Add (input, copy)
    output = Relu (summed)
}
"""


def test_cone_hash_survives_renames_folding_identity_and_operand_order():
    before, after = value_identities(parse_text(_ORIGINAL)), value_identities(parse_text(_CLEANED))
    assert before["a"].cone == after["summed"].cone
    assert before["y"].cone == after["output"].cone
    assert before["x"].cone == after["input"].cone
    assert "two" not in before and "two_init" not in after  # constants have no identity
    assert before["y"].op == "Relu" and before["y"].node is not None


def test_resolve_matches_renamed_values_by_structure():
    ranges = calibrate(parse_text(_ORIGINAL), [{"x": np.ones((2, 4), np.float32)}], op_types=None)
    resolution = ranges.resolve(parse_text(_CLEANED))
    assert resolution.renamed == {"x": "input", "s": "scaled", "a": "summed", "y": "output"}
    assert resolution.complete
    assert resolution.records["summed"] is ranges["a"]
    assert "4 ranges matched (0 exact, 4 renamed, 0 by name only), 0 merged, 0 unmatched" in resolution.describe()


_WITH_DUPLICATES = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
    i = Identity (x)
    s = Relu (i)
    s2 = Relu (i)
    a = Add (s, s2)
    d = Dropout (a)
    y = Sigmoid (d)
}
"""

# After common-subexpression elimination and no-op removal.
_DEDUPLICATED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
    s = Relu (x)
    a = Add (s, s)
    y = Sigmoid (a)
}
"""


def test_values_merged_by_cleanup_are_reported_as_merged_not_lost():
    ranges = calibrate(parse_text(_WITH_DUPLICATES), [{"x": np.ones((2, 4), np.float32)}], op_types=None)
    resolution = ranges.resolve(parse_text(_DEDUPLICATED))
    assert resolution.merged == {"i": "x", "s2": "s", "d": "a"}
    assert sorted(resolution.exact) == ["a", "s", "x", "y"]
    assert resolution.complete
    assert "4 ranges matched (4 exact, 0 renamed, 0 by name only), 3 merged, 0 unmatched" in resolution.describe()


def test_resolve_reports_by_name_and_unmatched_records():
    model = parse_text(_ORIGINAL)
    ranges = calibrate(model, [{"x": np.ones((2, 4), np.float32)}], op_types=None)
    ranges["y"] = RangeRecord(0.0, 6.0)  # hand-written: no identity
    ranges["gone"] = RangeRecord(0.0, 1.0)
    other = ranges["a"]
    ranges["lost"] = RangeRecord(other.min, other.max, identity=type(other.identity)("Add", 0, None, "0" * 16))
    resolution = ranges.resolve(model)
    assert set(resolution.exact) == {"x", "s", "a"}
    assert resolution.by_name == ["y"]
    assert set(resolution.unmatched) == {"gone", "lost"}
    assert "no value of that name or structure" in resolution.unmatched["lost"]
    assert not resolution.complete
    assert "  unmatched: gone: no value of that name" in resolution.describe()


def test_changed_structure_upstream_falls_back_to_the_name():
    ranges = calibrate(parse_text(_ORIGINAL), [{"x": np.ones((2, 4), np.float32)}], op_types=None)
    b = GraphBuilder()
    x = b.input("x", "float32", ["N", 4])
    b.output(b.Relu(b.Sub(x, x, _name="n"), _name="relu"), "y")
    resolution = ranges.resolve(b.build())
    assert resolution.by_name == ["y"]
    assert set(resolution.unmatched) == {"s", "a"}


def test_pass_context_hand_over(ranges):
    ctx = PassContext()
    with pytest.raises(OnnxsmithError, match="no calibration ranges in the pass context"):
        Ranges.from_context(ctx)
    ranges.store(ctx)
    assert Ranges.from_context(ctx) is ranges and CONTEXT_KEY in ctx.properties


def test_identity_digests_are_blake2b_of_the_parts_whatever_module_computes_them():
    """ranges.json files written before the digest stopped going through hashlib still resolve."""
    import hashlib

    from onnxsmith.calibration import identity

    parts = ("Conv", "x", 3, None)
    expected = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).hexdigest()
    assert identity._digest(*parts) == expected
