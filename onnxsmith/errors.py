"""Error types of onnxsmith.

Every error a user can cause carries a one-line message naming what is wrong and where, and a
remedy. The CLI prints ``error: <message> (<remedy>)`` and exits non-zero; tracebacks only with
``--debug``.
"""

from __future__ import annotations


class OnnxsmithError(Exception):
    """Base class: a one-line, user-facing problem with an optional remedy."""

    exit_code = 2

    def __init__(self, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        if self.remedy:
            return f"{self.message} ({self.remedy})"
        return self.message


class ModelInputError(OnnxsmithError):
    """The model file is missing, not ONNX, corrupt, invalid or hostile."""


class OutputError(OnnxsmithError):
    """The output cannot be written where asked."""


class PipelineError(OnnxsmithError):
    """A pipeline string, pass name, option or pass ordering is wrong."""


class PassOptionError(PipelineError):
    """A pass option is unknown or has a value of the wrong type."""


class PassFailedError(OnnxsmithError):
    """A pass raised or produced a model that breaks its contract."""

    exit_code = 3


class VerificationError(OnnxsmithError):
    """A model failed structural or numeric verification."""

    exit_code = 4


class UnsupportedError(OnnxsmithError):
    """The model uses something onnxsmith or onnxruntime does not support."""


class DataInputError(OnnxsmithError):
    """Input data (npz/npy) is missing, unreadable or does not fit the model."""


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first line of an error message (onnx and onnxruntime errors span many lines), shortened.

    Falls back to the exception's type name when its message is empty.
    """
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def closest(name: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """Returns the candidate closest to ``name`` (for 'did you mean' hints), or None."""
    import difflib

    found = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.5)
    return found[0] if found else None


def did_you_mean(name: str, candidates) -> str:
    """A remedy fragment: "did you mean 'x'?" or a listing hint."""
    best = closest(name, candidates)
    if best:
        return f"did you mean '{best}'?"
    return "run 'optimize-graph passes' to list them"
