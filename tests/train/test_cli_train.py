"""``optimize-graph train``: end to end on a tiny model, resume, and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxsmith.cli import main
from onnxsmith.ir import load, save
from onnxsmith.verify._session import make_session


@pytest.fixture
def files(tmp_path, mlp, blobs):
    save(mlp, tmp_path / "mlp.onnx")
    data = blobs
    np.savez(tmp_path / "train.npz", x=data["x"], digit=data["labels"].astype(np.uint8))
    np.savez(tmp_path / "test.npz", x=data["x"], digit=data["labels"])
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_a_trained_inference_model(files, capsys, blobs):
    code, out, err = run(capsys, "train", files / "mlp.onnx", files / "out.onnx", "--data", files / "train.npz",
                         "--labels", "digit", "--epochs", "4", "--lr", "0.05", "--batch-size", "16",
                         "--schedule", "cosine", "--warmup", "3", "--clip-norm", "10", "--eval-data", files / "test.npz")
    assert code == 0, err
    assert "epoch 4/4 [####################] 8/8" in err and "samples/s" in err
    assert out.splitlines()[-1] == f"wrote {files / 'out.onnx'}"
    trained, original = load(files / "out.onnx"), load(files / "mlp.onnx")
    assert [n.op_type for n in trained.graph] == [n.op_type for n in original.graph]
    logits = make_session(trained).run(None, {"x": blobs["x"]})[0]
    assert (logits.argmax(1) == blobs["labels"]).mean() > 0.95
    assert "step 32: accuracy" in out


def test_json_report_and_resume_with_more_epochs(files, capsys):
    common = ["--data", files / "train.npz", "--labels", "digit", "--lr", "0.05", "--checkpoint", files / "c.npz",
              "--json"]
    code, out, _ = run(capsys, "train", files / "mlp.onnx", files / "a.onnx", "--epochs", "2", *common)
    assert code == 0 and json.loads(out)["steps"] == 8
    code, out, err = run(capsys, "train", files / "mlp.onnx", files / "b.onnx", "--epochs", "3", "--resume", *common)
    report = json.loads(out)
    assert code == 0, err
    assert (report["resumed_from"], report["steps"]) == (8, 12)


def test_frozen_initializers_keep_their_values(files, capsys):
    code, _, err = run(capsys, "train", files / "mlp.onnx", files / "out.onnx", "--data", files / "train.npz",
                       "--labels", "digit", "--freeze", "^w1$", "-q")
    assert code == 0 and err == ""
    trained, original = load(files / "out.onnx"), load(files / "mlp.onnx")
    assert np.array_equal(trained.graph.initializers["w1"].const_value.numpy(),
                          original.graph.initializers["w1"].const_value.numpy())
    assert not np.array_equal(trained.graph.initializers["w2"].const_value.numpy(),
                              original.graph.initializers["w2"].const_value.numpy())


@pytest.mark.parametrize("argv, code, words", [
    (["--labels", "nope"], 2, "has no array 'nope'"),
    ([], 2, "no array for the training input(s) labels"),
    (["--labels", "digit", "--resume"], 2, "--resume needs --checkpoint FILE"),
    (["--labels", "digit", "--warmup", "3"], 2, "--warmup goes with --schedule cosine"),
    (["--labels", "digit", "--epochs", "0"], 2, "--epochs and --batch-size must be >= 1"),
    (["--labels", "digit", "--freeze", "("], 2, "not a regular expression"),
    (["--labels", "digit", "--freeze", "."], 2, "selected no parameter"),
    (["--labels", "digit", "--output", "probs"], 2, "no output 'probs'"),
    (["--labels", "digit", "--lr", "1e9", "--optimizer", "sgd"], 3, "the loss is nan"),
    (["--labels", "digit", "--lr", "-1"], 2, "learning rate must be a positive number"),
    (["--labels", "digit", "--checkpoint", "missing.npz", "--resume"], 2, "checkpoint not found"),
])
def test_bad_input_is_one_line(files, capsys, monkeypatch, argv, code, words):
    monkeypatch.chdir(files)
    got, out, err = run(capsys, "train", "mlp.onnx", "out.onnx", "--data", "train.npz", *argv, "-q")
    lines = err.splitlines()
    assert got == code
    assert len(lines) == 1 and lines[0].startswith("optimize-graph: error: ") and words in lines[0], err
    assert not (files / "out.onnx").exists()


def test_missing_data_and_same_output_are_refused(files, capsys):
    code, _, err = run(capsys, "train", files / "mlp.onnx", files / "out.onnx", "--data", files / "none.npz")
    assert code == 2 and "training data not found" in err
    code, _, err = run(capsys, "train", files / "mlp.onnx", files / "mlp.onnx", "--data", files / "train.npz")
    assert code == 2 and "OUT is the input model" in err


def test_qat_flag_writes_a_qdq_model_with_int4_weights(qdq, blobs, tmp_path, capsys):
    import onnx_ir as ir

    save(qdq, tmp_path / "qdq.onnx")
    np.savez(tmp_path / "train.npz", **blobs)
    code, out, err = run(capsys, "train", tmp_path / "qdq.onnx", tmp_path / "qat.onnx", "--data", tmp_path / "train.npz",
                         "--qat", "--weight-bits", "4", "--epochs", "2", "--lr", "0.01", "-q")
    assert code == 0, err
    types = {v.dtype for v in load(tmp_path / "qat.onnx").graph.initializers.values()}
    assert {ir.DataType.INT4, ir.DataType.INT32} <= types
    code, _, err = run(capsys, "train", tmp_path / "qdq.onnx", tmp_path / "x.onnx", "--data", tmp_path / "train.npz",
                       "--weight-bits", "4")
    assert code == 2 and "--weight-bits goes with --qat" in err


def test_cuda_target_without_the_cuda_build_is_one_line(files, capsys, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    code, _, err = run(capsys, "train", files / "mlp.onnx", files / "out.onnx", "--data", files / "train.npz",
                       "--labels", "digit", "--target", "cuda", "-q")
    assert code != 0 and len(err.splitlines()) == 1, err
    assert "CUDAExecutionProvider is not in this onnxruntime build" in err and "install onnxruntime-gpu" in err
    assert not (files / "out.onnx").exists()


@pytest.mark.parametrize("change, words", [
    (lambda d: {**d, "digit": d["digit"] + 100}, "hold values in [100, "),
    (lambda d: {**d, "x": d["x"][:, :1]}, "the training input 'x' takes shape [N,2], a batch of the data holds"),
])
def test_data_that_does_not_fit_the_model_is_one_line(files, capsys, change, words):
    data = change(dict(np.load(files / "train.npz")))
    np.savez(files / "bad.npz", **data)
    code, _, err = run(capsys, "train", files / "mlp.onnx", files / "out.onnx", "--data", files / "bad.npz",
                       "--labels", "digit", "-q")
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (files / "out.onnx").exists()


def test_distillation_from_teacher_logits_with_a_temperature(files, capsys, blobs):
    teacher = np.eye(3, dtype=np.float32)[blobs["labels"]] * 6.0  # a confident teacher
    np.savez(files / "distill.npz", x=blobs["x"], teacher=teacher)
    code, out, err = run(capsys, "train", files / "mlp.onnx", files / "student.onnx", "--data", files / "distill.npz",
                         "--labels", "teacher", "--loss", "kl-div", "--temperature", "2", "--epochs", "4", "--lr",
                         "0.05", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["last_loss"] < report["first_loss"]
    logits = make_session(load(files / "student.onnx")).run(None, {"x": blobs["x"]})[0]
    assert (logits.argmax(1) == blobs["labels"]).mean() > 0.9


def test_qat_can_train_the_scales(qdq, blobs, tmp_path, capsys):
    save(qdq, tmp_path / "qdq.onnx")
    np.savez(tmp_path / "train.npz", **blobs)
    code, _, err = run(capsys, "train", tmp_path / "qdq.onnx", tmp_path / "qat.onnx", "--data", tmp_path / "train.npz",
                       "--qat", "--train-scales", "--epochs", "2", "--lr", "0.01", "-q")
    assert code == 0, err
    assert _scales(tmp_path / "qat.onnx") != _scales(tmp_path / "qdq.onnx")


def _scales(path) -> list[float]:
    """The first value of every float32 quantization scale of the model at ``path``."""
    return sorted(float(v.const_value.numpy().ravel()[0]) for v in load(path).graph.initializers.values()
                  if "scale" in v.name and v.const_value.numpy().dtype == np.float32)


@pytest.mark.parametrize("argv, words", [
    (["--train-scales"], "--train-scales goes with --qat"),
    (["--temperature", "2"], "--temperature and --teacher go with --loss kl-div"),
])
def test_options_that_need_another(files, capsys, argv, words):
    code, _, err = run(capsys, "train", files / "mlp.onnx", files / "out.onnx", "--data", files / "train.npz", *argv)
    assert code == 2 and words in err
