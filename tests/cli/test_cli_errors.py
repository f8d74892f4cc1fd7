"""Bad input of every kind: one line on stderr, a non-zero exit, the input untouched."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from onnxsmith.cli import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE
from onnxsmith.errors import PassFailedError


def assert_one_line_error(result, code: int = EXIT_USAGE, *, contains: str = "") -> str:
    assert result.code == code, (result.code, result.err)
    assert [line for line in result.out.splitlines() if not line.startswith("pipeline: ")] == []
    assert len(result.err_lines) == 1, result.err
    line = result.err_lines[0]
    assert line.startswith("optimize-graph: error: "), line
    assert "Traceback" not in result.err
    assert contains in line, line
    return line


def _write_checker_failure(path: Path) -> None:
    node = oh.make_node("Relu", ["undefined"], ["y"])
    graph = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    path.write_bytes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]).SerializeToString())


@pytest.mark.parametrize(("make", "contains"), [
    (lambda p, m: None, "model file not found"),
    (lambda p, m: p.write_text("hello, I am not a model\n"), "is not an ONNX model"),
    (lambda p, m: p.write_bytes(m.read_bytes()[: m.stat().st_size // 2]), "is not an ONNX model"),
    (lambda p, m: _write_checker_failure(p), "fails the ONNX checker"),
], ids=["missing", "not-onnx", "truncated-protobuf", "checker"])
def test_bad_model_file(cli, model_path, tmp_path, make, contains):
    bad = tmp_path / "bad.onnx"
    make(bad, model_path)
    before = bad.read_bytes() if bad.exists() else None

    result = cli(bad, tmp_path / "out.onnx")

    assert_one_line_error(result, contains=contains)
    assert not (tmp_path / "out.onnx").exists()
    assert (bad.read_bytes() if bad.exists() else None) == before


@pytest.mark.parametrize(("passes", "contains"), [
    ("remove-unusd", "did you mean 'remove-unused'?"),
    ("cleanup,", "empty item"),
    ("fold-constants{no-such-option=1}", "has no option 'no-such-option'"),
    ("fold-constants{max-size=big}", "must be an integer, got 'big'"),
], ids=["unknown-pass", "syntax", "unknown-option", "option-type"])
def test_bad_pipeline(cli, model_path, tmp_path, snapshot, passes, contains):
    before = snapshot(model_path)

    result = cli(model_path, tmp_path / "out.onnx", "--passes", passes)

    assert_one_line_error(result, contains=contains)
    assert snapshot(model_path) == before


def test_output_equal_to_input_is_refused(cli, model_path, snapshot):
    before = snapshot(model_path)
    spelled_differently = model_path.parent / "." / model_path.name

    for out in (model_path, spelled_differently):
        result = cli(model_path, out, "--json")
        assert_one_line_error(result, contains="is the input model")
    assert snapshot(model_path) == before


def test_output_through_a_symlink_to_the_input_is_refused(cli, model_path, tmp_path, snapshot):
    link = tmp_path / "link.onnx"
    link.symlink_to(model_path)
    before = snapshot(model_path)

    assert_one_line_error(cli(model_path, link), contains="is the input model")
    assert snapshot(model_path) == before


@pytest.mark.parametrize("where", ["missing-folder", "file-as-folder", "folder-as-output", "unwritable"])
def test_output_not_writable(cli, model_path, tmp_path, snapshot, where):
    (tmp_path / "plain-file").write_text("x")
    out = {
        "missing-folder": tmp_path / "no" / "such" / "out.onnx",
        "file-as-folder": tmp_path / "plain-file" / "out.onnx",
        "folder-as-output": tmp_path,
        "unwritable": Path("/proc/out.onnx"),  # unwritable even for root
    }[where]
    before = snapshot(model_path)

    result = cli(model_path, out, "--json")

    assert_one_line_error(result)
    assert snapshot(model_path) == before


@pytest.mark.parametrize(("arrays", "contains"), [
    ({"z": np.ones((2, 4), np.float32)}, "has no array for model input 'x'"),
    ({"x": np.ones((2, 4), np.float32), "extra": np.ones(1)}, "array 'extra' that is not a model input"),
    ({"x": np.ones((2, 4), np.float64)}, "has dtype float64, the model input is float"),
    ({"x": np.ones((2, 5), np.float32)}, "has shape [2, 5], the model input is [N,4]"),
    ({"x": np.ones((4,), np.float32)}, "has shape [4]"),
], ids=["missing-name", "extra-name", "dtype", "shape", "rank"])
def test_bad_inputs_npz(cli, model_path, tmp_path, snapshot, arrays, contains):
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    before = snapshot(model_path)

    result = cli(model_path, tmp_path / "out.onnx", "--inputs", data)

    assert_one_line_error(result, contains=contains)
    assert snapshot(model_path) == before
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(("content", "contains"), [
    (None, "input data file not found"),
    (b"not a zip file", "is not an .npz archive"),
], ids=["missing", "not-npz"])
def test_unreadable_inputs_file(cli, model_path, tmp_path, content, contains):
    data = tmp_path / "data.npz"
    if content is not None:
        data.write_bytes(content)

    assert_one_line_error(cli(model_path, tmp_path / "out.onnx", "--inputs", data), contains=contains)


def test_npy_instead_of_npz(cli, model_path, tmp_path):
    data = tmp_path / "data.npy"
    np.save(data, np.ones((2, 4), np.float32))

    assert_one_line_error(cli(model_path, tmp_path / "out.onnx", "--inputs", data), contains="not an .npz archive")


@pytest.mark.parametrize("argv", [
    ["--no-such-flag"],
    ["--verify", "sometimes"],
    ["--target", "abacus"],
    ["--inputs", "data.npz", "--verify", "structural"],
    ["-v", "-q"],
], ids=["unknown-flag", "verify-level", "target", "inputs-without-numeric", "verbose-and-quiet"])
def test_usage_errors_exit_2_with_one_line(cli, model_path, tmp_path, argv):
    result = cli(model_path, tmp_path / "out.onnx", *argv)

    line = assert_one_line_error(result)
    assert line.endswith("(see 'optimize-graph --help')")


def test_missing_arguments(cli):
    assert_one_line_error(cli(), contains="the following arguments are required: IN, OUT")


def test_unknown_plugin(cli, model_path, tmp_path):
    result = cli(model_path, tmp_path / "out.onnx", "--load", tmp_path / "nope.py")

    assert_one_line_error(result, contains="plugin file not found")


def test_failing_pass_exits_3_and_writes_nothing(cli, model_path, tmp_path, snapshot, scratch_registry):
    plugin = tmp_path / "boom.py"
    plugin.write_text(
        "from onnxsmith import register_pass\n"
        f"@register_pass('{scratch_registry('boom')}')\n"
        "def boom(model, ctx):\n"
        "    '''Always fails.'''\n"
        "    raise ValueError('kaboom')\n")
    before = snapshot(model_path)

    result = cli(model_path, tmp_path / "out.onnx", "--load", plugin, "--passes", "boom")

    assert_one_line_error(result, PassFailedError.exit_code, contains="pass 'boom' failed: ValueError: kaboom")
    assert not (tmp_path / "out.onnx").exists()
    assert snapshot(model_path) == before


def test_debug_shows_the_traceback(cli, model_path, tmp_path):
    result = cli(model_path, tmp_path / "out.onnx", "--passes", "nope", "--debug")

    assert result.code == EXIT_USAGE
    assert "Traceback" in result.err
    assert result.err_lines[-1].startswith("optimize-graph: error: unknown pass 'nope'")


def test_unexpected_exception_is_an_internal_error(cli, model_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr("onnxsmith.summary.summarize", broken)

    result = cli("inspect", model_path)

    assert result.code == EXIT_INTERNAL
    assert result.err_lines == ["optimize-graph: internal error: RuntimeError: something nobody expected "
                                "(rerun with --debug for the traceback, and report it)"]


def test_ctrl_c_exits_130_and_leaves_no_output(cli, model_path, tmp_path, snapshot, scratch_registry):
    plugin = tmp_path / "interrupt.py"
    plugin.write_text(
        "from onnxsmith import register_pass\n"
        f"@register_pass('{scratch_registry('interrupt')}')\n"
        "def interrupt(model, ctx):\n"
        "    '''Pretends the user pressed Ctrl-C.'''\n"
        "    raise KeyboardInterrupt\n")
    before = snapshot(model_path)

    result = cli(model_path, tmp_path / "out.onnx", "--load", plugin, "--passes", "interrupt", "-q")

    assert result.code == EXIT_INTERRUPTED
    assert result.err_lines == ["optimize-graph: interrupted; nothing was written"]
    assert sorted(os.listdir(tmp_path)) == ["interrupt.py", "model.onnx"]
    assert snapshot(model_path) == before
