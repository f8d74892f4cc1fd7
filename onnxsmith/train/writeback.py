"""Writing trained parameters back into the inference model.

The training graph is a by-product: what a user keeps is the model they started from with new
weights. :func:`write_back` copies the inference model and replaces each named initializer's
value with the trained array -- same name, element type and shape, so the graph, its opsets,
metadata and everything else stay exactly as they were. ``build-gradients`` keeps initializer
names as the names of the parameter inputs, which is what ties the two graphs together.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import ModelInputError, did_you_mean

__all__ = ["write_back"]


def write_back(model: ir.Model, parameters: Mapping[str, np.ndarray]) -> ir.Model:
    """A copy of ``model`` whose initializers named in ``parameters`` hold those values.

    Args:
        model: The inference model (not modified).
        parameters: Trained values by initializer name (e.g. :meth:`Trainer.parameters`).

    Raises:
        ModelInputError: A name is not an initializer of ``model``, or a value's element type
            or shape differs from the initializer's.
    """
    result = model.clone()
    initializers = result.graph.initializers
    for name, array in parameters.items():
        value = initializers.get(name)
        if value is None or value.const_value is None:
            raise ModelInputError(f"the inference model has no initializer '{name}' to write the trained value to",
                                  did_you_mean(name, list(initializers)))
        old = value.const_value
        array = np.asarray(array)
        if ir.DataType.from_numpy(array.dtype) != old.dtype or tuple(array.shape) != tuple(old.shape.numpy()):
            raise ModelInputError(f"the trained value of '{name}' is {array.dtype}{list(array.shape)}, the initializer "
                                  f"{old.dtype.name.lower()}{list(old.shape.numpy())}",
                                  "train a training graph built from this model")
        value.const_value = ir.tensor(np.ascontiguousarray(array), name=name)
    return result
