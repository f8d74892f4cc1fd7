"""Evaluation during training: the inference model run with the trainer's current parameters.

The inference model is copied with its trained initializers also made graph inputs (their
values stay as defaults), so one onnxruntime session serves every evaluation: the trainer's
parameter OrtValues are bound as those inputs directly, without copies and without rebuilding
the model. Metrics: top-1 ``accuracy`` (argmax over the last axis) when the targets are integer
class labels, else the mean squared error ``mse`` against them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import DataInputError, ModelInputError, UnsupportedError, did_you_mean, first_line
from onnxsmith.train.dataset import Dataset
from onnxsmith.train.trainer import Trainer

__all__ = ["Evaluator"]


class Evaluator:
    """Measures the inference model on held-out data with a trainer's current parameters.

    Args:
        model: The inference model the training graph was built from (not modified).
        data: Held-out rows: the model's inputs and the targets.
        targets: Name of the targets' array in ``data``.
        output: The model output compared with the targets (the only output when empty).
        batch_size: Rows per run.
        parameters: Names of the initializers the trainer trains.

    Raises:
        ModelInputError: ``output`` is not an output, or a parameter is not an initializer.
        DataInputError: ``data`` lacks a model input or the targets.
    """

    def __init__(self, model: ir.Model, data: Dataset, *, targets: str, parameters: list[str], output: str = "",
                 batch_size: int = 256) -> None:
        import onnxruntime as ort

        model = model.clone()
        graph = model.graph
        outputs = [v.name for v in graph.outputs]
        if output and output not in outputs:
            raise ModelInputError(f"the model has no output '{output}'", did_you_mean(output, outputs))
        self.output = output or outputs[0]
        self.inputs = [v.name for v in graph.inputs if v.const_value is None]
        self._dtypes = {v.name: np.dtype(v.dtype.numpy()) for v in graph.inputs}
        data.check_inputs([*self.inputs, targets])
        for name in parameters:
            value = graph.initializers.get(name)
            if value is None:
                raise ModelInputError(f"the training parameter '{name}' is not an initializer of the inference model")
            graph.inputs.append(value)
        self.parameters = list(parameters)
        self.data = data
        self.targets = targets
        self.batch_size = batch_size
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise UnsupportedError(f"onnxruntime cannot load the model for evaluation: {first_line(e)}") from e

    def __call__(self, trainer: Trainer) -> Mapping[str, float]:
        """The metric over all of ``data`` with the parameters ``trainer`` holds now."""
        bound = trainer.bound_values()
        predictions = []
        for batch in self.data.batches(self.batch_size, shuffle=False):
            binding = self.session.io_binding()
            for name in self.inputs:
                binding.bind_cpu_input(name, np.ascontiguousarray(batch[name].astype(self._dtypes[name], copy=False)))
            for name in self.parameters:
                binding.bind_ortvalue_input(name, bound[name])
            binding.bind_output(self.output, "cpu")
            self.session.run_with_iobinding(binding)
            predictions.append(np.array(binding.get_outputs()[0].numpy(), copy=True))
        predicted = np.concatenate(predictions)
        targets = self.data.arrays[self.targets]
        if targets.dtype.kind in "iu":
            if predicted.shape[:-1] != targets.shape:
                raise DataInputError(f"the labels '{self.targets}' have shape {list(targets.shape)}, the output "
                                     f"'{self.output}' {list(predicted.shape)}", "give one class label per row")
            return {"accuracy": float((predicted.argmax(-1) == targets).mean())}
        return {"mse": float(np.mean((predicted - targets) ** 2))}

