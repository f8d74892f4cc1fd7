"""Reading model inputs from an ``.npz`` file (``--inputs data.npz``) and checking they fit.

The archive holds one array per graph input, keyed by the input's name. Arrays must have the
input's element type exactly (no silent casts: a float64 array for a float input is an error) and
its rank; static dimensions must match, symbolic or unknown ones may take any size. Pickled
(object) arrays are refused, so an untrusted file cannot run code.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import DataInputError
from onnxsmith.summary import dtype_name, shape_dims
from onnxsmith.verify.inputs import model_inputs

__all__ = ["check_inputs", "dims_text", "load_input_data", "shape_fits"]


def load_input_data(path: str | os.PathLike, model: ir.Model) -> dict[str, np.ndarray]:
    """Reads ``path`` (an ``.npz`` archive) and checks its arrays against ``model``'s inputs.

    Raises:
        DataInputError: The file is missing or unreadable, or its arrays do not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise DataInputError(f"input data file not found: {path}", "check the --inputs path")
    unreadable = "give an .npz archive written by numpy.savez (no pickled objects)"
    if not zipfile.is_zipfile(path):
        raise DataInputError(f"{path} is not an .npz archive",
                             "save the inputs with numpy.savez(path, input_name=array, ...)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataInputError(f"cannot read input data {path}: {e}", unreadable) from e
    try:
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataInputError(f"cannot read input data {path}: {e}", unreadable) from e
    check_inputs(arrays, model, source=str(path))
    return arrays


def check_inputs(arrays: Mapping[str, np.ndarray], model: ir.Model, *, source: str = "inputs") -> None:
    """Checks that ``arrays`` supply exactly the model's inputs with fitting types and shapes.

    Raises:
        DataInputError: Naming the first input that is missing, unexpected or does not fit.
    """
    expected = {v.name: v for v in model_inputs(model)}
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise DataInputError(f"{source} has no array for model input '{missing[0]}'",
                             f"the model's inputs are: {', '.join(expected)}")
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise DataInputError(f"{source} has an array '{extra[0]}' that is not a model input",
                             f"the model's inputs are: {', '.join(expected)}")
    for name, value in expected.items():
        _check_array(name, np.asarray(arrays[name]), value, source)


def _check_array(name: str, array: np.ndarray, value: ir.Value, source: str) -> None:
    if value.dtype == ir.DataType.STRING:
        if array.dtype.kind != "U":
            raise DataInputError(f"{source}: array '{name}' has dtype {array.dtype}, the model input is string",
                                 "save it as a numpy str array")
    elif value.dtype is not None:
        want = value.dtype.numpy()
        if array.dtype != want:
            raise DataInputError(
                f"{source}: array '{name}' has dtype {array.dtype}, the model input is {dtype_name(value.dtype)}",
                f"save it as {np.dtype(want).name}")
    dims = shape_dims(value.shape)
    if dims is not None and not shape_fits(dims, array.shape):
        raise DataInputError(
            f"{source}: array '{name}' has shape {list(array.shape)}, the model input is {dims_text(dims)}",
            "give an array of the input's shape (named dimensions may take any size)")


def shape_fits(dims: Sequence[int | str | None], shape: Sequence[int]) -> bool:
    """Whether an array of ``shape`` fits an input declared with ``dims``: the same rank and every
    static dimension equal (symbolic and unknown ones take any size)."""
    return len(shape) == len(dims) and all(not isinstance(d, int) or d == n for d, n in zip(dims, shape))


def dims_text(dims: Sequence[int | str | None]) -> str:
    """``dims`` as messages show them: ``[N,3]``, ``?`` for an unknown dimension."""
    return f"[{','.join('?' if d is None else str(d) for d in dims)}]"
