"""``train``: fine-tune an inference model on data and get the inference model back, trained.

The steps: build the training graph from a copy of the model (``build-gradients`` with the loss,
optimizer, freezing and clipping of a :class:`TrainConfig`), read the data (the labels array
renamed to the graph's target input), run a :class:`~onnxsmith.train.trainer.Trainer` over the
epochs with the configured schedule, and write the trained parameters back into the original
model (:func:`~onnxsmith.train.writeback.write_back`). The input model is never modified.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx_ir as ir

from onnxsmith.errors import DataInputError, PipelineError
from onnxsmith.ir.queries import dims_of
from onnxsmith.passes import PassManager
from onnxsmith.passes.train.build_gradients import BuildGradients, BuildGradientsOptions
from onnxsmith.train.dataset import Dataset
from onnxsmith.train.evaluate import Evaluator
from onnxsmith.train.schedules import Schedule
from onnxsmith.train.trainer import FitResult, StepInfo, Trainer
from onnxsmith.train.writeback import write_back

__all__ = ["TrainConfig", "TrainOutcome", "train", "training_graph"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """How to train (see ``build-gradients`` for the loss and optimizer options).

    Attributes:
        loss: Loss terms (``cross-entropy``, ``mse``, ``cosine``, ``kl-div``).
        output: The model output the loss reads (the only output when empty).
        optimizer: ``sgd`` or ``adamw``.
        lr: Base learning rate.
        epochs: Passes over the training data.
        batch_size: Rows per update.
        schedule: ``constant``, ``cosine`` or ``warmup-cosine``.
        warmup: Warmup steps (``warmup-cosine``).
        min_lr: The rate cosine schedules decay towards.
        weight_decay: SGD L2 penalty or AdamW decoupled decay (the optimizer's default when None).
        momentum: SGD momentum.
        clip_norm: Clip gradients to this global L2 norm (0: off).
        freeze: Regular expression of initializer names to keep constant.
        label_smoothing: Label smoothing of cross-entropy.
        temperature: Temperature of kl-div (distillation; the loss is scaled by its square).
        teacher: What kl-div's targets hold: the teacher's ``logits`` or its ``probs``.
        quant_scales: ``frozen`` or ``lsq`` (train fake-quantization scales).
        seed: Seed of the data order.
        drop_last: Skip each epoch's last, shorter batch.
        checkpoint_every: Also checkpoint every this many steps (0: per epoch).
        eval_every: Also evaluate every this many steps (0: per epoch).
    """

    loss: list[str] = field(default_factory=lambda: ["cross-entropy"])
    output: str = ""
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = 1e-3
    epochs: int = 1
    batch_size: int = 32
    schedule: str = "constant"
    warmup: int = 0
    min_lr: float = 0.0
    weight_decay: float | None = None
    momentum: float = 0.0
    clip_norm: float = 0.0
    freeze: str = ""
    label_smoothing: float = 0.0
    temperature: float = 1.0
    teacher: Literal["logits", "probs"] = "logits"
    quant_scales: Literal["frozen", "lsq"] = "frozen"
    seed: int = 0
    drop_last: bool = False
    checkpoint_every: int = 0
    eval_every: int = 0

    def gradient_options(self) -> BuildGradientsOptions:
        """The ``build-gradients`` options of this configuration."""
        return BuildGradientsOptions(loss_fn=list(self.loss), output=self.output, optimizer=self.optimizer,
                                     freeze=self.freeze, clip_norm=self.clip_norm, weight_decay=self.weight_decay,
                                     label_smoothing=self.label_smoothing, temperature=self.temperature,
                                     teacher=self.teacher, quant_scales=self.quant_scales,
                                     **({"momentum": self.momentum} if self.optimizer == "sgd" else {}))


@dataclass
class TrainOutcome:
    """What :func:`train` returns.

    Attributes:
        model: The inference model with the trained parameters.
        result: Losses, evaluations and the step count of the run.
        training_model: The training graph that was run.
    """

    model: ir.Model
    result: FitResult
    training_model: ir.Model


def training_graph(model: ir.Model, config: TrainConfig) -> ir.Model:
    """The training graph of a copy of ``model`` (``model`` is not modified)."""
    training = model.clone()
    PassManager([BuildGradients(config.gradient_options())]).run(training)
    return training


def train(model: ir.Model, data: Any, config: TrainConfig, *, labels: str = "labels",
          checkpoint: str | Path | None = None, resume: bool = False, eval_data: Any = None,
          on_step: Callable[[StepInfo], None] | None = None, provider: str = "CPUExecutionProvider"
          ) -> TrainOutcome:
    """Trains ``model`` on ``data``; see the module docstring.

    Args:
        model: The inference model (not modified).
        data: Training rows: anything :meth:`Dataset.read` takes, or a :class:`Dataset`; the
            model's inputs and the targets, keyed by name.
        config: Loss, optimizer, schedule and the rest.
        labels: Name of the targets' array in ``data`` (and in ``eval_data``).
        checkpoint: Checkpoint file (written per epoch; see :meth:`Trainer.fit`).
        resume: Continue from ``checkpoint``.
        eval_data: Held-out rows to evaluate on at the end of each epoch.
        on_step: Called after every step (e.g. a :class:`~onnxsmith.train.progress.ProgressBar`).
        provider: The onnxruntime execution provider to train on.

    Raises:
        OnnxsmithError: Bad options or data (one line each), a non-finite loss, or Ctrl-C
            (:class:`~onnxsmith.train.trainer.TrainingInterrupted`).
    """
    training = training_graph(model, config)
    trainer = Trainer(training, provider=provider)
    target = _target_input(model, trainer)
    rename = {labels: target} if labels != target else None
    rows = data if isinstance(data, Dataset) else Dataset.read(data, rename=rename)
    _bind_single_input(model, rows)
    _check_class_labels(model, config, rows, target)
    steps = config.epochs * rows.num_batches(config.batch_size, config.drop_last)
    if steps < 1:
        raise DataInputError(f"{rows.description} has {len(rows)} rows, fewer than one batch of {config.batch_size}")
    schedule = Schedule(config.schedule, config.lr, steps, config.warmup, config.min_lr)
    evaluate = None
    if eval_data is not None:
        held_out = eval_data if isinstance(eval_data, Dataset) else Dataset.read(eval_data)
        _bind_single_input(model, held_out)
        _check_class_labels(model, config, held_out, labels)
        evaluate = Evaluator(model, held_out, targets=labels, parameters=trainer.parameter_names,
                             output=config.output, batch_size=max(config.batch_size, 256))
    result = trainer.fit(rows, epochs=config.epochs, batch_size=config.batch_size, schedule=schedule, seed=config.seed,
                         drop_last=config.drop_last, checkpoint=checkpoint, checkpoint_every=config.checkpoint_every,
                         resume=resume, evaluate=evaluate, eval_every=config.eval_every, on_step=on_step)
    return TrainOutcome(write_back(model, trainer.parameters()), result, training)


def _target_input(model: ir.Model, trainer: Trainer) -> str:
    """The training input holding the targets: the one data input the inference model lacks."""
    model_inputs = {v.name for v in model.graph.inputs}
    targets = [name for name in trainer.data_names if name not in model_inputs]
    if len(targets) != 1:
        raise PipelineError(f"the training graph takes {len(targets)} target inputs ({', '.join(targets)}); "
                            "train() feeds one", "use one loss term, or build the graph and run Trainer yourself")
    return targets[0]


def _check_class_labels(model: ir.Model, config: TrainConfig, rows: Dataset, name: str) -> None:
    """Cross-entropy labels are class indices in ``[0, C)``: any other value would silently add nothing
    to the loss (its one-hot target row is all zeros)."""
    labels = rows.arrays.get(name)
    outputs = [v for v in model.graph.outputs if not config.output or v.name == config.output]
    if "cross-entropy" not in config.loss or labels is None or labels.size == 0 or len(outputs) != 1:
        return
    classes = (dims_of(outputs[0]) or [None])[-1]
    if not isinstance(classes, int) or labels.dtype.kind not in "iu":
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise DataInputError(f"the labels '{name}' of {rows.description} hold values in [{low}, {high}], the output "
                             f"'{outputs[0].name}' has {classes} classes",
                             f"give class indices in [0, {classes})")


def _bind_single_input(model: ir.Model, rows: Dataset) -> None:
    inputs = [v.name for v in model.graph.inputs if v.const_value is None]
    if len(inputs) == 1:
        rows.bind_unnamed(inputs[0])
