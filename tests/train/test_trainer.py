"""Trainer: learning, buffers that never leave onnxruntime, checkpoints, resume, Ctrl-C, write-back."""

from __future__ import annotations

import numpy as np
import pytest

from onnxsmith.errors import DataInputError, ModelInputError
from onnxsmith.passes import PassManager
from onnxsmith.train import (
    Dataset,
    Schedule,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
    train,
    training_graph,
    write_back,
)
from onnxsmith.verify._session import make_session

CONFIG = TrainConfig(lr=0.02, epochs=4, batch_size=16, schedule="cosine")


def fit(trainer: Trainer, data: Dataset, **kwargs) -> list[float]:
    schedule = Schedule("cosine", 0.02, total=4 * data.num_batches(16))
    return trainer.fit(data, epochs=4, batch_size=16, schedule=schedule, **kwargs).losses


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_training_reduces_the_loss_and_learns_the_blobs(mlp, blobs, optimizer):
    config = TrainConfig(optimizer=optimizer, lr=0.05, momentum=0.9 if optimizer == "sgd" else 0.0, epochs=6,
                         batch_size=16, schedule="warmup-cosine", warmup=3, clip_norm=5.0)
    outcome = train(mlp, blobs, config, eval_data=blobs)
    losses = outcome.result.losses
    assert np.mean(losses[:3]) > 5 * np.mean(losses[-3:])
    assert outcome.result.evaluations[-1][1]["accuracy"] > 0.95
    assert outcome.result.step == 6 * 8


def test_carried_values_stay_in_two_alternating_ortvalue_buffers(mlp, blobs):
    trainer = Trainer(training_graph(mlp, CONFIG))
    batch = next(Dataset(blobs).batches(16))
    pointers, first = [], trainer.bound_values()["w1"]
    for _ in range(4):
        pointers.append({name: value.data_ptr() for name, value in trainer.bound_values().items()})
        trainer.train_step(batch, 0.01)
    assert pointers[0] == pointers[2] and pointers[1] == pointers[3]
    assert all(pointers[0][name] != pointers[1][name] for name in pointers[0])
    assert trainer.bound_values()["w1"] is first  # the very same OrtValue objects, swapped, never rebuilt


def test_a_resumed_run_ends_exactly_where_the_uninterrupted_one_does(mlp, blobs, tmp_path):
    data = Dataset(blobs)
    whole = Trainer(training_graph(mlp, CONFIG))
    fit(whole, data)

    path = tmp_path / "run.ckpt.npz"
    first = Trainer(training_graph(mlp, CONFIG))
    steps_per_epoch = data.num_batches(16)

    def stop_mid_epoch(info):
        if info.step == 2 * steps_per_epoch + 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match=f"checkpoint {path} .step {2 * steps_per_epoch}. is intact"):
        fit(first, data, checkpoint=path, checkpoint_every=5, on_step=stop_mid_epoch)
    saved = load_checkpoint(path)
    assert (saved.step, saved.epoch, saved.batch) == (2 * steps_per_epoch, 2, 0)  # epoch end comes after step 10

    resumed = Trainer(training_graph(mlp, CONFIG))
    losses = fit(resumed, data, checkpoint=path, resume=True)
    assert resumed.step == whole.step == len(losses) + saved.step
    for name, value in whole.values().items():
        np.testing.assert_array_equal(resumed.values()[name], value, err_msg=name)


def test_ctrl_c_leaves_the_last_checkpoint_loadable_and_writes_no_output(mlp, blobs, tmp_path):
    path, out = tmp_path / "ckpt.npz", tmp_path / "out.onnx"

    def interrupt(info):
        if info.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(mlp, blobs, TrainConfig(epochs=3, batch_size=16, checkpoint_every=3), checkpoint=path, on_step=interrupt)
    assert load_checkpoint(path).step == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]  # no temporary files, no output
    assert not out.exists()


def test_an_interrupted_checkpoint_write_keeps_the_previous_file(mlp, blobs, tmp_path, monkeypatch):
    from onnxsmith.train import checkpoint as module

    path = tmp_path / "ckpt.npz"
    trainer = Trainer(training_graph(mlp, CONFIG))
    data = Dataset(blobs)
    schedule = Schedule("constant", 0.01, total=100)
    trainer.fit(data, epochs=1, batch_size=16, schedule=schedule, checkpoint=path)
    before = path.read_bytes()

    def savez_then_interrupt(stream, **arrays):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(module.np, "savez", savez_then_interrupt)
    with pytest.raises(TrainingInterrupted):
        trainer.fit(data, epochs=2, batch_size=16, schedule=schedule, checkpoint=path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


def test_write_back_gives_the_inference_model_the_trained_forward(mlp, blobs):
    outcome = train(mlp, blobs, CONFIG)
    trained = outcome.model
    assert [n.op_type for n in trained.graph] == [n.op_type for n in mlp.graph]
    parameters = {name: trained.graph.initializers[name].const_value.numpy() for name in ("w1", "b1", "w2", "b2")}
    assert not np.array_equal(parameters["w1"], mlp.graph.initializers["w1"].const_value.numpy())

    forward = training_graph(mlp, CONFIG)  # the training graph's forward: its logits with the trained parameters
    forward.graph.outputs.append(next(v for n in forward.graph for v in n.outputs if v.name == "logits"))
    hyper = {"lr": np.array(0.0, np.float32), "step": np.array(0, np.int64)}
    feeds = {"x": blobs["x"], "labels": blobs["labels"], **hyper, **parameters}
    feeds.update({f"{p}_{s}": np.zeros_like(a) for p, a in parameters.items() for s in ("m", "v")})
    expected = make_session(forward).run(["logits"], feeds)[0]
    np.testing.assert_allclose(make_session(trained).run(None, {"x": blobs["x"]})[0], expected, rtol=1e-6, atol=1e-6)


def test_write_back_refuses_values_that_do_not_fit(mlp):
    with pytest.raises(ModelInputError, match="no initializer 'w9'"):
        write_back(mlp, {"w9": np.zeros(2, np.float32)})
    with pytest.raises(ModelInputError, match="float64"):
        write_back(mlp, {"w1": np.zeros((2, 8))})


def test_clip_norm_scales_the_update_to_the_global_norm(mlp, blobs):
    grads_model = mlp.clone()
    PassManager("build-gradients{loss-fn=cross-entropy}").run(grads_model)
    batch = {"x": blobs["x"][:16], "labels": blobs["labels"][:16]}
    names = [v.name for v in grads_model.graph.outputs]
    g = dict(zip(names, make_session(grads_model).run(None, batch)))
    norm = np.sqrt(sum(float(np.sum(g[f"{p}_grad"].astype(np.float64) ** 2)) for p in ("w1", "b1", "w2", "b2")))
    limit = norm / 4
    clipped = Trainer(training_graph(mlp, TrainConfig(optimizer="sgd", clip_norm=limit)))
    before = clipped.parameters()
    clipped.train_step(batch, 1.0)
    for p, value in clipped.parameters().items():
        np.testing.assert_allclose(before[p] - value, g[f"{p}_grad"] * limit / (norm + 1e-6), rtol=1e-4, atol=1e-6)


def test_missing_training_inputs_are_named(mlp, blobs):
    with pytest.raises(DataInputError, match="no array for the training input.*labels"):
        train(mlp, {"x": blobs["x"]}, CONFIG)
    with pytest.raises(DataInputError, match="no array 'digit'"):
        train(mlp, blobs, CONFIG, labels="digit")


def test_clip_norm_needs_an_optimizer_and_a_positive_norm(mlp):
    from onnxsmith.errors import PassOptionError

    with pytest.raises(PassOptionError, match="'clip-norm' needs an optimizer"):
        PassManager("build-gradients{loss-fn=cross-entropy;clip-norm=1}").run(mlp.clone())
    with pytest.raises(PassOptionError, match="clip-norm must be >= 0"):
        PassManager("build-gradients{loss-fn=cross-entropy;optimizer=sgd;clip-norm=-1}").run(mlp.clone())


def test_a_provider_the_trainer_cannot_use_is_refused_before_onnxruntime_falls_back(mlp):
    import onnxruntime

    from onnxsmith.errors import UnsupportedError
    from onnxsmith.train.fit import training_graph

    training = training_graph(mlp, CONFIG)
    with pytest.raises(UnsupportedError, match="runs on CPUExecutionProvider or CUDAExecutionProvider, not 'Foo'"):
        Trainer(training, provider="Foo")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(UnsupportedError, match="CUDAExecutionProvider is not in this onnxruntime build"):
            Trainer(training, provider="CUDAExecutionProvider")


def test_a_batch_the_fixed_batch_axis_cannot_take_names_the_remedy(mlp, blobs):
    import onnx_ir as ir

    from onnxsmith.train.fit import training_graph

    mlp.graph.inputs[0].shape = ir.Shape([4, 2])  # exported with a static batch of 4
    trainer = Trainer(training_graph(mlp, CONFIG))
    with pytest.raises(DataInputError, match=r"takes shape \[4,2\], a batch of the data holds \[3, 2\].*fixed at 4"):
        trainer.train_step({"x": blobs["x"][:3], "labels": blobs["labels"][:3]}, 0.1)
    assert np.isfinite(trainer.train_step({"x": blobs["x"][:4], "labels": blobs["labels"][:4]}, 0.1))
