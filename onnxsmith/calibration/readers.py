"""Calibration data sources: files, directories, Python iterables and onnxruntime readers.

A source yields :class:`Sample` objects: a label saying where the sample came from (a file path,
``sample 3``) and its arrays keyed by model input name. One sample is one model run, or several
when it carries more rows than the model takes at once (see
:mod:`onnxsmith.calibration.validate`).

* ``.npz`` file: one sample, arrays keyed by input name. An archive written positionally
  (``numpy.savez(path, array)``: a single ``arr_0``) is an unnamed array.
* ``.npy`` file: one unnamed array, for single-input models.
* Directory: its ``.npz`` and ``.npy`` files (not recursive) in natural order (``2`` before
  ``10``); other files are ignored.
* Python data: one dict of arrays, one array, or a list/tuple of them (re-iterable), a
  zero-argument function returning a fresh iterable (re-iterable), or any other iterable such as
  a generator (readable once).
* An onnxruntime ``CalibrationDataReader`` (anything with ``get_next()``), re-iterable when it
  has ``rewind()``. :class:`~onnxsmith.calibration.ort_adapter.OrtReaderAdapter` goes the other
  way, handing any source to onnxruntime's calibrators.

Re-iterable sources are read once more up front so that every sample is checked against the
model before anything runs (:meth:`DataSource.specs`): file sources read only the ``.npy``
headers for that, Python sources are iterated (a function is called once more). Pickled (object)
arrays are refused, so an untrusted file cannot run code.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxsmith.errors import DataInputError

__all__ = ["UNNAMED", "ArraySpec", "DataSource", "FileSource", "IterableSource", "ReaderSource",
           "Sample", "directory_source", "open_data"]

#: Key of an array not tied to an input name (``.npy`` files, bare arrays): the model's only input.
UNNAMED = ""

_SUFFIXES = (".npz", ".npy")
_POSITIONAL_KEY = re.compile(r"arr_\d+")


@dataclass(frozen=True)
class ArraySpec:
    """Element type and shape of an array, known without its data."""

    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Sample:
    """One item of calibration data.

    Attributes:
        label: Where it came from, for error messages (``data/0003.npz``, ``sample 3``).
        arrays: Arrays keyed by model input name (``UNNAMED`` for a bare array).
    """

    label: str
    arrays: Mapping[str, np.ndarray]

    def specs(self) -> dict[str, ArraySpec]:
        return {k: ArraySpec(np.asarray(a).dtype, tuple(np.shape(a))) for k, a in self.arrays.items()}


class DataSource:
    """Base class of calibration data sources.

    Attributes:
        reiterable: Whether the samples can be read more than once (needed to check them all
            before running, and for chunked collection, which reads the data once per chunk).
        description: What the source is, for messages.
    """

    reiterable: bool = True
    description: str = "calibration data"

    def __iter__(self) -> Iterator[Sample]:  # pragma: no cover - abstract
        raise NotImplementedError

    def specs(self) -> Iterator[tuple[str, dict[str, ArraySpec]]]:
        """``(label, specs)`` per sample; file sources read only headers."""
        for sample in self:
            yield sample.label, sample.specs()

    def __len__(self) -> int:  # pragma: no cover - overridden where known
        raise TypeError(f"{self.description} has no known length")


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


class FileSource(DataSource):
    """``.npz``/``.npy`` files, one sample each, in the given order."""

    def __init__(self, paths: Iterable[str | os.PathLike], description: str | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.description = description or (str(self.paths[0]) if len(self.paths) == 1 else "calibration files")
        for path in self.paths:
            if not path.is_file():
                raise DataInputError(f"calibration data file not found: {path}", "check the path")
            if path.suffix.lower() not in _SUFFIXES:
                raise DataInputError(f"{path} is not an .npz or .npy file",
                                     "save samples with numpy.savez(path, input_name=array) or numpy.save")

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Sample]:
        for path in self.paths:
            yield Sample(str(path), _read_file(path))

    def specs(self) -> Iterator[tuple[str, dict[str, ArraySpec]]]:
        for path in self.paths:
            yield str(path), _read_specs(path)


def directory_source(path: str | os.PathLike) -> FileSource:
    """The ``.npz``/``.npy`` files of a directory, in natural order.

    Raises:
        DataInputError: The directory does not exist or holds no such file.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataInputError(f"calibration data directory not found: {folder}", "check the path")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES), key=_natural_key)
    if not files:
        raise DataInputError(f"calibration data directory {folder} holds no .npz or .npy files",
                             "save one sample per file with numpy.savez(path, input_name=array)")
    return FileSource(files, description=str(folder))


def _unreadable(path: Path, error: Exception) -> DataInputError:
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        head = b""
    if not head.startswith((b"PK", b"\x93NUMPY")):  # neither a zip archive (.npz) nor an .npy header
        return DataInputError(f"{path} is not an .npz or .npy file written by numpy (it holds other content)",
                              "save the arrays with numpy.savez(path, input_name=array)")
    return DataInputError(f"cannot read calibration data {path}: {error}",
                          "give .npz/.npy files written by numpy (no pickled objects)")


def _named(arrays: dict[str, Any]) -> dict[str, Any]:
    """Maps a lone positional ``arr_0`` to ``UNNAMED``."""
    if len(arrays) == 1 and _POSITIONAL_KEY.fullmatch(next(iter(arrays))):
        return {UNNAMED: next(iter(arrays.values()))}
    return arrays


def _read_file(path: Path) -> dict[str, np.ndarray]:
    try:
        if path.suffix.lower() == ".npy":
            return {UNNAMED: np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            return _named({name: archive[name] for name in archive.files})
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _unreadable(path, e) from e


def _header(stream) -> ArraySpec:
    """Reads an ``.npy`` header (format 1.0 or 2.0) without the data."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if dtype.hasobject:
        raise ValueError("it holds pickled Python objects")
    return ArraySpec(dtype, tuple(shape))


def _read_specs(path: Path) -> dict[str, ArraySpec]:
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as stream:
                return {UNNAMED: _header(stream)}
        specs = {}
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    with archive.open(member) as stream:
                        specs[member[:-4]] = _header(stream)
        return _named(specs)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _unreadable(path, e) from e


def _as_arrays(item: Any, label: str) -> dict[str, np.ndarray]:
    if isinstance(item, np.ndarray):
        return {UNNAMED: item}
    if isinstance(item, Mapping):
        out = {}
        for key, value in item.items():
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise DataInputError(f"{label}: array '{key}' holds Python objects",
                                     "give numeric numpy arrays keyed by input name")
            out[str(key)] = array
        return out
    raise DataInputError(f"{label} is a {type(item).__name__}, not a dict of arrays",
                         "yield dicts mapping input names to numpy arrays (or arrays for single-input models)")


class IterableSource(DataSource):
    """Samples from Python: a list/tuple, a function returning a fresh iterable, or an iterable."""

    def __init__(self, items: Iterable[Any] | Callable[[], Iterable[Any]], description: str = "calibration data") -> None:
        self.description = description
        self._items = items
        self.reiterable = isinstance(items, (list, tuple)) or callable(items)
        self._consumed = False

    def __len__(self) -> int:
        if isinstance(self._items, (list, tuple)):
            return len(self._items)
        return super().__len__()

    def __iter__(self) -> Iterator[Sample]:
        if not self.reiterable:
            if self._consumed:
                raise DataInputError(f"{self.description} can be read only once and was already read",
                                     "pass a list, a directory, or a function returning a fresh iterator")
            self._consumed = True
        items = self._items() if callable(self._items) else self._items
        for index, item in enumerate(items):
            label = f"sample {index}"
            yield Sample(label, _as_arrays(item, label))


class ReaderSource(DataSource):
    """An onnxruntime ``CalibrationDataReader`` (``get_next()`` returning a dict or None)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.description = f"{type(reader).__name__} reader"
        self.reiterable = callable(getattr(reader, "rewind", None))
        self._started = False

    def __iter__(self) -> Iterator[Sample]:
        if self._started:
            if not self.reiterable:
                raise DataInputError(f"the {self.description} can be read only once and was already read",
                                     "give the reader a rewind() method, or pass a list or a directory")
            self.reader.rewind()
        self._started = True
        index = 0
        while (item := self.reader.get_next()) is not None:
            if isinstance(item, Mapping) and not item:
                break  # onnxruntime's own calibrators also stop on an empty dict
            label = f"reader sample {index}"
            yield Sample(label, _as_arrays(item, label))
            index += 1


def open_data(data: Any) -> DataSource:
    """A :class:`DataSource` for any supported kind of calibration data (see module docstring).

    Raises:
        DataInputError: A missing path, an empty directory, or an unsupported object.
    """
    if isinstance(data, DataSource):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            return directory_source(path)
        if not path.exists():
            raise DataInputError(f"calibration data not found: {path}", "give an .npz/.npy file or a directory of them")
        return FileSource([path])
    if callable(getattr(data, "get_next", None)):
        return ReaderSource(data)
    if isinstance(data, (np.ndarray, Mapping)):
        return IterableSource([data])
    if callable(data) or isinstance(data, Iterable):
        return IterableSource(data)
    raise DataInputError(f"cannot read calibration data from a {type(data).__name__}",
                         "give a directory or file of .npz/.npy, a list or iterator of dicts of arrays, "
                         "or a CalibrationDataReader")
