"""Training data: named arrays with a common first (row) axis, cut into shuffled minibatches.

A :class:`Dataset` holds the arrays in memory (fine-tuning sets of images, token ids and labels).
It is read from anything :func:`~onnxsmith.calibration.readers.open_data` accepts -- an ``.npz``
file, a directory of them, a dict of arrays, a list or iterable of dicts -- by concatenating the
samples' arrays along axis 0, and renaming keys on the way (``--labels digit`` feeds the array
``digit`` to the training graph's ``labels`` input).

Epoch ``e`` visits the rows in the order of ``default_rng([seed, e]).permutation(n)`` (or in
order without shuffling) and cuts it into batches of ``batch_size`` rows, the last one shorter
unless ``drop_last``. The order depends only on ``(seed, e)``, so a run resumed at batch ``k`` of
epoch ``e`` sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from onnxsmith.calibration.readers import UNNAMED, open_data
from onnxsmith.errors import DataInputError

__all__ = ["Dataset"]


class Dataset:
    """Named arrays sharing their first axis, the rows.

    Args:
        arrays: The arrays by name (at least one; every one with the same number of rows).
        description: What the data is, for messages.

    Raises:
        DataInputError: No array, a 0-d array, or arrays with different numbers of rows.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], description: str = "training data") -> None:
        self.description = description
        self.arrays = {name: np.asarray(a) for name, a in arrays.items()}
        if not self.arrays:
            raise DataInputError(f"{description} holds no arrays", "give arrays keyed by model input name")
        rows = {name: a.shape[0] if a.ndim else None for name, a in self.arrays.items()}
        if None in rows.values() or len(set(rows.values())) != 1:
            shown = ", ".join(f"{name}: {n if n is not None else 'a scalar'}" for name, n in rows.items())
            raise DataInputError(f"the arrays of {description} must share their first axis (rows): {shown}",
                                 "give one row per example in every array")

    @classmethod
    def read(cls, data: Any, rename: Mapping[str, str] | None = None) -> Dataset:
        """Reads every sample of ``data`` (see the module docstring) and concatenates them.

        Args:
            data: Anything :func:`~onnxsmith.calibration.readers.open_data` accepts.
            rename: Keys to rename (``{"digit": "labels"}``); a key the data lacks is an error.

        Raises:
            DataInputError: The data cannot be read, is empty, the samples hold different
                keys, or a key to rename is missing.
        """
        if isinstance(data, (str, os.PathLike)) and not os.path.exists(data):
            raise DataInputError(f"training data not found: {data}", "give an .npz file or a directory of them")
        source = open_data(data)
        description = str(data) if isinstance(data, (str, os.PathLike)) else "the training data"
        parts: dict[str, list[np.ndarray]] = {}
        for sample in source:
            if parts and set(sample.arrays) != set(parts):
                raise DataInputError(f"{sample.label} holds {sorted(sample.arrays)}, the samples before it "
                                     f"{sorted(parts)}", "give every sample the same arrays")
            for name, array in sample.arrays.items():
                parts.setdefault(name, []).append(np.asarray(array))
        if not parts:
            raise DataInputError(f"{description} holds no samples", "check the data path")
        arrays = {name: chunks[0] if len(chunks) == 1 else np.concatenate(chunks) for name, chunks in parts.items()}
        for old, new in (rename or {}).items():
            if old not in arrays:
                raise DataInputError(f"{description} has no array '{old}' (it holds "
                                     f"{', '.join(sorted(k or '<unnamed>' for k in arrays))})",
                                     "name the array that holds the labels")
            arrays[new] = arrays.pop(old)
        return cls(arrays, description)

    def __len__(self) -> int:
        return next(iter(self.arrays.values())).shape[0]

    def bind_unnamed(self, name: str) -> None:
        """Gives the unnamed array (an ``.npy`` file, ``numpy.savez(path, array)``) the input name ``name``."""
        if UNNAMED in self.arrays:
            self.arrays[name] = self.arrays.pop(UNNAMED)

    def check_inputs(self, names: list[str]) -> None:
        """Raises DataInputError unless every one of ``names`` has an array."""
        missing = [n for n in names if n not in self.arrays]
        if missing:
            raise DataInputError(f"{self.description} has no array for the training input(s) {', '.join(missing)} "
                                 f"(it holds {', '.join(sorted(self.arrays))})",
                                 "key the arrays by model input name; name the labels with --labels")

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """Batches per epoch."""
        return len(self) // batch_size if drop_last else -(-len(self) // batch_size)

    def batches(self, batch_size: int, *, epoch: int = 0, seed: int = 0, shuffle: bool = True,
                drop_last: bool = False, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """The batches of epoch ``epoch`` from batch number ``start`` on (see the module docstring)."""
        if batch_size < 1:
            raise DataInputError(f"the batch size must be >= 1, got {batch_size}")
        n = len(self)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        for index in range(start, self.num_batches(batch_size, drop_last)):
            rows = order[index * batch_size:(index + 1) * batch_size]
            yield {name: np.ascontiguousarray(array[rows]) for name, array in self.arrays.items()}
