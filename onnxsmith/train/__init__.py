"""Training ONNX models in onnxruntime: fine-tuning and quantization-aware training.

- :func:`train` fine-tunes an inference model on data and returns it with trained weights
  (``fit.py``); :func:`training_graph` builds the ``build-gradients`` training graph it runs;
- :class:`Trainer` runs a training graph step by step with the parameters and optimizer state
  kept in bound OrtValues, epochs, schedules, evaluation, checkpoints (``trainer.py``);
- :class:`Dataset` (``dataset.py``), :class:`Schedule` (``schedules.py``), checkpoints
  (``checkpoint.py``), :class:`Evaluator` (``evaluate.py``), :class:`ProgressBar` (``progress.py``);
- :func:`write_back` puts trained parameters into the inference model (``writeback.py``);
- :func:`qat` fine-tunes a QDQ model through its fake quantization and folds it again (``qat.py``).
"""

from __future__ import annotations

from onnxsmith.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from onnxsmith.train.dataset import Dataset
from onnxsmith.train.evaluate import Evaluator
from onnxsmith.train.fit import TrainConfig, TrainOutcome, train, training_graph
from onnxsmith.train.progress import ProgressBar
from onnxsmith.train.qat import fake_quant_form, fold_fake_quant, qat
from onnxsmith.train.schedules import SCHEDULES, Schedule
from onnxsmith.train.trainer import FitResult, StepInfo, Trainer, TrainingError, TrainingInterrupted
from onnxsmith.train.writeback import write_back

__all__ = [
    "SCHEDULES",
    "Checkpoint",
    "Dataset",
    "Evaluator",
    "FitResult",
    "ProgressBar",
    "Schedule",
    "StepInfo",
    "TrainConfig",
    "TrainOutcome",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "fake_quant_form",
    "fold_fake_quant",
    "load_checkpoint",
    "qat",
    "save_checkpoint",
    "train",
    "training_graph",
    "write_back",
]
