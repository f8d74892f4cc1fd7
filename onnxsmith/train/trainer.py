"""``Trainer``: runs a ``build-gradients`` training graph in onnxruntime, step after step.

One step feeds a batch, the learning rate (and, for AdamW, the number of updates done) together
with the parameters and optimizer state, and receives the loss and the updated parameters and
state. The carried values never pass through numpy between steps: they live in two sets of
preallocated OrtValues, A and B, on the session's device. Step ``k`` reads set A and writes set B
(IOBinding binds ``<x>`` to A's buffer and ``<x>_new`` to B's), then the two swap roles. A buffer
is never bound as both an input and an output of one step (onnxruntime may then read values it
has already overwritten).

:meth:`Trainer.fit` adds epochs over a :class:`~onnxsmith.train.dataset.Dataset`, a
learning-rate :class:`~onnxsmith.train.schedules.Schedule`, a step callback (progress),
periodic evaluation and atomic checkpoints that a later run resumes from bit for bit. A
KeyboardInterrupt stops the run without writing anything, so the last checkpoint stays intact;
it is raised again as :class:`TrainingInterrupted`, which says where to resume from.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import DataInputError, ModelInputError, OnnxsmithError, UnsupportedError, first_line
from onnxsmith.input_data import dims_text, shape_fits
from onnxsmith.ir.queries import dims_of
from onnxsmith.passes.train.build_gradients import METADATA_KEY
from onnxsmith.codegen.nchwc import block_convolutions, nchwc_block_size
from onnxsmith.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from onnxsmith.train.dataset import Dataset
from onnxsmith.train.schedules import Schedule

__all__ = ["FitResult", "StepInfo", "Trainer", "TrainingError", "TrainingInterrupted", "session_graph"]

log = logging.getLogger(__name__)

#: The providers the Trainer keeps its values on, by device (``train --target``).
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
_CUDA = PROVIDERS["cuda"]


class TrainingError(OnnxsmithError):
    """Training cannot go on (the loss is not finite, a checkpoint does not fit the run)."""

    exit_code = 3


class TrainingInterrupted(OnnxsmithError):
    """Ctrl-C stopped training between two checkpoints; nothing was written."""

    exit_code = 130


@dataclass(frozen=True)
class StepInfo:
    """What one step did, for progress displays.

    Attributes:
        step: Updates applied so far (this one included).
        epoch: The epoch, 0-based.
        epochs: Number of epochs of the run.
        batch: The batch's index in its epoch, 0-based.
        batches: Batches per epoch.
        loss: The loss of this step's batch (before the update).
        lr: The learning rate this step used.
        samples_per_second: Rows trained per second since the run (or resume) began.
    """

    step: int
    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    lr: float
    samples_per_second: float


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` did.

    Attributes:
        losses: The loss of every step this call ran.
        evaluations: ``(step, metrics)`` for every evaluation.
        step: Updates applied in total (a resumed run counts the earlier ones).
        resumed_from: The step the run resumed from, or None.
    """

    losses: list[float] = field(default_factory=list)
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    step: int = 0
    resumed_from: int | None = None


class Trainer:
    """Runs a training graph made by ``build-gradients`` with an optimizer.

    Args:
        training_model: The training graph (its ``onnxsmith.training`` metadata names the
            parameters, the state and which output updates which input).
        provider: The onnxruntime execution provider (``CPUExecutionProvider`` or
            ``CUDAExecutionProvider``); the carried values live on its device.
        threads: Intra-op threads (0: onnxruntime's default).
        blocked_convs: On the CPU provider, run eligible convolutions in onnxruntime's blocked
            (NCHWc) layout (:mod:`~onnxsmith.codegen.nchwc`; the same convolutions with another
            summation order: equal up to float32 rounding, faster).

    Raises:
        ModelInputError: The model is not a training graph with an optimizer step.
        UnsupportedError: The provider is not one of the two, or not in this onnxruntime build;
            onnxruntime cannot load the graph.
    """

    def __init__(self, training_model: ir.Model, *, provider: str = "CPUExecutionProvider", threads: int = 0,
                 blocked_convs: bool = True) -> None:
        import onnxruntime as ort

        _check_provider(provider, ort.get_available_providers())
        info = _training_info(training_model)
        graph = training_model.graph
        inputs = {v.name: v for v in graph.inputs}
        self.parameter_names: list[str] = list(info["parameters"])
        self.updates: dict[str, str] = dict(info["updates"])
        self.loss_name: str = info["loss"]
        self._lr_name: str = info["lr"]
        self._step_name: str | None = info.get("step")
        hyper = {self._lr_name, self._step_name}
        self.data_names = [name for name in inputs if name not in self.updates and name not in hyper]
        self._input_dtypes = {name: inputs[name].dtype.numpy() for name in inputs}
        self._input_dims = {name: dims_of(inputs[name]) for name in self.data_names}
        self._device = "cuda" if provider == _CUDA else "cpu"
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Fake quantization is part of what is trained: onnxruntime must not propagate or fuse the
        # Q/DQ pairs (its QDQ propagation even breaks on the backward graph's Slices).
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(session_graph(training_model, provider, blocked_convs), options,
                                                providers=[provider])
        except Exception as e:  # onnxruntime raises its own exception types
            raise UnsupportedError(f"onnxruntime cannot load the training graph: {first_line(e)}") from e
        self.step = 0
        self._current: dict[str, object] = {}
        self._spare: dict[str, object] = {}
        self.load_values(_initial_values(graph, info, self.updates))

    # ------------------------------------------------------------------ state

    def load_values(self, values: Mapping[str, np.ndarray]) -> None:
        """Sets every carried value (parameters and optimizer state) from numpy arrays.

        Raises:
            DataInputError: A value is missing, or its element type or shape is not the input's.
        """
        from onnxruntime import OrtValue

        missing = [name for name in self.updates if name not in values]
        if missing:
            raise DataInputError(f"no value for the carried training input(s) {', '.join(missing[:5])}",
                                 "resume from a checkpoint of the same training graph")
        for name in self.updates:
            array = np.asarray(values[name])
            old = self._current.get(name)
            expected = self._input_dtypes[name]
            if array.dtype != expected or (old is not None and tuple(array.shape) != tuple(old.shape())):
                raise DataInputError(f"the value of '{name}' is {array.dtype}{list(array.shape)}, the training "
                                     f"graph needs {np.dtype(expected)}{list(old.shape()) if old is not None else ''}",
                                     "resume from a checkpoint of the same model and optimizer")
            # Buffers owned by onnxruntime: ortvalue_from_numpy would borrow the array's memory instead.
            current = OrtValue.ortvalue_from_shape_and_type(list(array.shape), array.dtype, self._device, 0)
            current.update_inplace(np.ascontiguousarray(array))
            self._current[name] = current
            self._spare[name] = OrtValue.ortvalue_from_shape_and_type(list(array.shape), array.dtype, self._device, 0)

    def values(self) -> dict[str, np.ndarray]:
        """Copies of every carried value (parameters and optimizer state) as numpy arrays."""
        return {name: np.array(value.numpy(), copy=True) for name, value in self._current.items()}

    def parameters(self) -> dict[str, np.ndarray]:
        """Copies of the trained parameters as numpy arrays, by initializer name."""
        return {name: np.array(self._current[name].numpy(), copy=True) for name in self.parameter_names}

    def bound_values(self) -> Mapping[str, object]:
        """The OrtValues that hold the carried values now (valid until the next step; do not modify)."""
        return dict(self._current)

    # ------------------------------------------------------------------ one step

    def train_step(self, batch: Mapping[str, np.ndarray], lr: float) -> float:
        """Runs one update on ``batch`` with learning rate ``lr``; returns the batch's loss.

        Raises:
            DataInputError: The batch lacks a data input or holds an array of an unusable type.
            TrainingError: The loss is not finite (the parameters are left as they were).
        """
        binding = self.session.io_binding()
        for name in self.data_names:
            binding.bind_cpu_input(name, self._feed(name, batch))
        binding.bind_cpu_input(self._lr_name, np.array(lr, dtype=self._input_dtypes[self._lr_name]))
        if self._step_name is not None:
            binding.bind_cpu_input(self._step_name, np.array(self.step, dtype=np.int64))
        binding.bind_output(self.loss_name, "cpu")  # bound first: get_outputs() follows binding order
        for name, output in self.updates.items():
            binding.bind_ortvalue_input(name, self._current[name])
            binding.bind_ortvalue_output(output, self._spare[name])
        self.session.run_with_iobinding(binding)
        loss = float(binding.get_outputs()[0].numpy())
        if not math.isfinite(loss):
            raise TrainingError(f"the loss is {loss} at step {self.step + 1}; the last finite parameters are kept",
                                "lower the learning rate, clip gradients (--clip-norm) or check the data")
        self._current, self._spare = self._spare, self._current
        self.step += 1
        return loss

    def _feed(self, name: str, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        if name not in batch:
            raise DataInputError(f"the batch has no array for the training input '{name}' (it holds "
                                 f"{', '.join(sorted(batch))})", "key the data by model input name")
        array = np.asarray(batch[name])
        expected = np.dtype(self._input_dtypes[name])
        if array.dtype != expected:
            if not np.can_cast(array.dtype, expected, "same_kind") and not (
                    array.dtype.kind in "iub" and expected.kind in "iuf"):
                raise DataInputError(f"the training input '{name}' takes {expected}, the data holds {array.dtype}",
                                     "save the array with the input's element type")
            array = array.astype(expected)
        self._check_shape(name, array)
        return np.ascontiguousarray(array)

    def _check_shape(self, name: str, array: np.ndarray) -> None:
        """Refuses a batch whose rank or static dimensions are not the training input's."""
        dims = self._input_dims.get(name)
        if dims is None or shape_fits(dims, array.shape):
            return
        fixed_batch = array.ndim == len(dims) and isinstance(dims[0], int) and shape_fits(dims[1:], array.shape[1:])
        remedy = (f"the model's batch axis is fixed at {dims[0]}: export it with a dynamic batch axis, or train "
                  f"with --batch-size {dims[0]} on a multiple of {dims[0]} rows" if fixed_batch
                  else "give arrays of the model input's shape; the first axis holds the rows")
        raise DataInputError(f"the training input '{name}' takes shape {dims_text(dims)}, a batch of the data holds "
                             f"{list(array.shape)}", remedy)

    # ------------------------------------------------------------------ a run

    def fit(self, data: Dataset, *, epochs: int, batch_size: int, schedule: Schedule, seed: int = 0,
            shuffle: bool = True, drop_last: bool = False, checkpoint: str | Path | None = None,
            checkpoint_every: int = 0, resume: bool = False,
            evaluate: Callable[[Trainer], Mapping[str, float]] | None = None, eval_every: int = 0,
            on_step: Callable[[StepInfo], None] | None = None) -> FitResult:
        """Trains for ``epochs`` epochs of ``data``.

        Args:
            data: The training rows (every data input of the graph, labels included).
            epochs: Epochs in total (a resumed run counts the ones already done).
            batch_size: Rows per update.
            schedule: The learning rate of each update.
            seed: Seed of the data order.
            shuffle: Shuffle the rows every epoch.
            drop_last: Skip the last, shorter batch of each epoch.
            checkpoint: Where to keep the checkpoint (written at the end of each epoch, every
                ``checkpoint_every`` steps and at the end).
            checkpoint_every: Also checkpoint every this many steps (0: per epoch only).
            resume: Continue from ``checkpoint`` (it must exist).
            evaluate: Called with the trainer at the end of each epoch and every ``eval_every``
                steps; returns metrics by name.
            eval_every: Evaluate every this many steps too (0: per epoch only).
            on_step: Called after every step (progress display).

        Raises:
            TrainingInterrupted: Ctrl-C; the last checkpoint written is intact.
            TrainingError: A non-finite loss, or a checkpoint made for another run.
            DataInputError: The data lacks a training input, or the checkpoint is unreadable.
        """
        if epochs < 1 or batch_size < 1:
            raise DataInputError(f"epochs and batch size must be >= 1, got {epochs} and {batch_size}")
        if resume and checkpoint is None:
            raise DataInputError("resuming needs a checkpoint file", "give --checkpoint FILE with --resume")
        data.check_inputs(self.data_names)
        batches = data.num_batches(batch_size, drop_last)
        if batches == 0:
            raise DataInputError(f"{data.description} has {len(data)} rows, fewer than one batch of {batch_size}",
                                 "lower the batch size")
        result = FitResult()
        epoch, start = 0, 0
        if resume:
            epoch, start = self._resume(Path(checkpoint), seed, schedule)
            result.resumed_from = self.step
        state = _RunState(self, checkpoint, seed, schedule)
        began, samples = time.perf_counter(), 0
        try:
            for epoch in range(epoch, epochs):
                for index, batch in enumerate(data.batches(batch_size, epoch=epoch, seed=seed, shuffle=shuffle,
                                                           drop_last=drop_last, start=start), start=start):
                    lr = schedule(self.step)
                    loss = self.train_step(batch, lr)
                    result.losses.append(loss)
                    samples += len(next(iter(batch.values())))
                    position = (epoch, index + 1) if index + 1 < batches else (epoch + 1, 0)
                    if on_step is not None:
                        rate = samples / max(time.perf_counter() - began, 1e-9)
                        on_step(StepInfo(self.step, epoch, epochs, index, batches, loss, lr, rate))
                    if checkpoint_every and self.step % checkpoint_every == 0 and position[1]:
                        state.save(*position)
                    if evaluate is not None and eval_every and self.step % eval_every == 0 and position[1]:
                        result.evaluations.append(state.evaluate(evaluate))
                start = 0
                state.save(epoch + 1, 0)
                if evaluate is not None:
                    result.evaluations.append(state.evaluate(evaluate))
        except KeyboardInterrupt:
            raise TrainingInterrupted(f"interrupted after step {self.step}; nothing was written"
                                      + (f", the checkpoint {checkpoint} (step {state.saved_step}) is intact"
                                         if state.saved_step is not None else ""),
                                      "rerun with --resume to continue" if state.saved_step is not None else None
                                      ) from None
        result.step = self.step
        return result

    def _resume(self, path: Path, seed: int, schedule: Schedule) -> tuple[int, int]:
        saved = load_checkpoint(path)
        if saved.seed != seed or saved.schedule != schedule.describe():
            raise TrainingError(f"the checkpoint {path} was written by a run with another data seed or schedule "
                                f"({saved.schedule}, seed {saved.seed})",
                                "resume with the same --epochs, --lr, --schedule, --warmup and --seed")
        self.load_values(saved.values)
        self.step = saved.step
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, saved.step, saved.epoch, saved.batch)
        return saved.epoch, saved.batch


class _RunState:
    """Checkpointing and evaluation during one :meth:`Trainer.fit` call."""

    def __init__(self, trainer: Trainer, path: str | Path | None, seed: int, schedule: Schedule) -> None:
        self.trainer = trainer
        self.path = Path(path) if path is not None else None
        self.seed = seed
        self.schedule = schedule
        self.saved_step: int | None = None

    def save(self, epoch: int, batch: int) -> None:
        if self.path is None:
            return
        trainer = self.trainer
        save_checkpoint(Checkpoint(trainer.values(), trainer.step, epoch, batch, self.seed, self.schedule.describe()),
                        self.path)
        self.saved_step = trainer.step
        log.info("checkpoint %s: step %d", self.path, trainer.step)

    def evaluate(self, evaluate: Callable[[Trainer], Mapping[str, float]]) -> tuple[int, dict[str, float]]:
        metrics = {name: float(value) for name, value in evaluate(self.trainer).items()}
        log.info("step %d: %s", self.trainer.step, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return self.trainer.step, metrics


def _check_provider(provider: str, available: list[str]) -> None:
    """Refuses a provider the Trainer cannot keep its values on, or one this onnxruntime lacks
    (onnxruntime itself would fall back to the CPU with a warning, or fail on the first buffer)."""
    if provider not in PROVIDERS.values():
        raise UnsupportedError(f"the Trainer runs on {' or '.join(PROVIDERS.values())}, not '{provider}'",
                               "train on the CPU or CUDA provider")
    if provider not in available:
        raise UnsupportedError(f"{provider} is not in this onnxruntime build (available: {', '.join(available)})",
                               "install onnxruntime-gpu in place of onnxruntime, or train on the CPU")


def session_graph(training_model: ir.Model, provider: str = "CPUExecutionProvider", blocked_convs: bool = True
                  ) -> bytes:
    """The serialized graph the Trainer gives onnxruntime: ``training_model``, with blocked
    convolutions on the CPU provider where onnxruntime has them (the model itself is not changed)."""
    proto = ir.to_proto(training_model)
    convs = {"Conv", "ConvTranspose"}
    if not blocked_convs or provider != "CPUExecutionProvider" or not any(n.op_type in convs for n in proto.graph.node):
        return proto.SerializeToString()
    block = nchwc_block_size()
    if block is None:
        return proto.SerializeToString()
    copy = ir.serde.deserialize_model(proto)
    rewritten = block_convolutions(copy, block)
    log.debug("%d convolutions run in onnxruntime's blocked layout (block %d)", rewritten, block)
    return ir.to_proto(copy).SerializeToString() if rewritten else proto.SerializeToString()


def _training_info(model: ir.Model) -> dict:
    text = model.metadata_props.get(METADATA_KEY)
    if text is None:
        raise ModelInputError("the model is not a training graph (no onnxsmith.training metadata)",
                              "build it with build-gradients{loss-fn=...;optimizer=...}, or use train()")
    info = json.loads(text)
    if "updates" not in info:
        raise ModelInputError("the training graph outputs gradients, not an optimizer step",
                              "build it with build-gradients{optimizer=sgd|adamw}")
    return info


def _initial_values(graph: ir.Graph, info: dict, updates: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Parameters from their initializers, optimizer state as zeros of its parameter's shape."""
    initializers = graph.initializers
    values = {}
    for name in info["parameters"]:
        tensor = initializers[name].const_value if name in initializers else None
        if tensor is None:
            raise ModelInputError(f"the training graph has no initial value for the parameter '{name}'")
        values[name] = tensor.numpy()
    for state, parameter in info.get("state", {}).items():
        values[state] = np.zeros_like(values[parameter])
    missing = [name for name in updates if name not in values]
    if missing:
        raise ModelInputError(f"the training graph carries {', '.join(missing)} with no initial value")
    return values
