"""Training checkpoints: one ``.npz`` holding everything a run needs to continue bit for bit.

Layout: one array per carried value (parameters and optimizer state, keyed ``value/<name>``) and
``meta``, a 0-d string array holding JSON: the format version, the number of updates applied
(``step``), the position in the data (``epoch`` and the next ``batch`` in it), the shuffling
``seed`` and the schedule's description (the learning rate itself is a function of ``step``).

Writes are atomic: the archive goes to a temporary file in the same folder, is flushed to disk,
then renamed over the destination, so an interrupted write (Ctrl-C, a full disk) leaves the
previous checkpoint as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxsmith.errors import DataInputError, OutputError

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint"]

_FORMAT = 1
_VALUE_PREFIX = "value/"


@dataclass
class Checkpoint:
    """The state of a training run between two updates.

    Attributes:
        values: Parameters and optimizer state by training-graph input name.
        step: Updates applied so far.
        epoch: The epoch the next batch belongs to.
        batch: Index of the next batch in that epoch.
        seed: Seed of the data order.
        schedule: The learning-rate schedule's description.
    """

    values: dict[str, np.ndarray]
    step: int = 0
    epoch: int = 0
    batch: int = 0
    seed: int = 0
    schedule: dict[str, object] = field(default_factory=dict)

    def meta(self) -> dict[str, object]:
        """Everything but the arrays, as plain data."""
        return {"format": _FORMAT, "step": self.step, "epoch": self.epoch, "batch": self.batch, "seed": self.seed,
                "schedule": self.schedule}


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> None:
    """Writes ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename).

    Raises:
        OutputError: The folder cannot be written.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    arrays: Mapping[str, np.ndarray] = {_VALUE_PREFIX + k: v for k, v in checkpoint.values.items()}
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise OutputError(f"cannot write the checkpoint in {folder}: {e.strerror}", "choose another path") from e
    try:
        with os.fdopen(fd, "wb") as stream:
            np.savez(stream, meta=np.array(json.dumps(checkpoint.meta())), **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Reads a checkpoint written by :func:`save_checkpoint`.

    Raises:
        DataInputError: The file is missing, unreadable or not such a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise DataInputError(f"checkpoint not found: {path}", "check the path, or start without --resume")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            values = {name[len(_VALUE_PREFIX):]: archive[name] for name in archive.files
                      if name.startswith(_VALUE_PREFIX)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataInputError(f"{path} is not a readable training checkpoint: {e}",
                             "give a checkpoint written by 'optimize-graph train --checkpoint'") from e
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise DataInputError(f"{path} is not a training checkpoint of format {_FORMAT}")
    return Checkpoint(values, int(meta["step"]), int(meta["epoch"]), int(meta["batch"]), int(meta["seed"]),
                      dict(meta["schedule"]))
