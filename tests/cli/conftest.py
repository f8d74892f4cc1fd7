"""Fixtures for the command-line tests: an in-process runner and small model files."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from onnxsmith.cli import main
from onnxsmith.ir import GraphBuilder, save


@dataclass
class CliResult:
    """Exit code and captured output of one CLI run."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture
def console_script() -> str:
    """Path of the installed ``optimize-graph`` script (in the bin folder next to this python)."""
    path = Path(sys.executable).parent / "optimize-graph"
    assert path.is_file(), f"the console script is not installed at {path}: pip install the package"
    return str(path)


@pytest.fixture
def cli(capsys):
    """Runs ``optimize-graph ARGS`` in-process: ``cli("inspect", path)`` -> CliResult."""

    def run(*argv: object) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def build_debris_model(weight_offset: float = 0.0):
    """y = relu(x @ w + b) with exporter debris: two Identities and a dead branch."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", ["N", 4])
    w = b.initializer("w", np.arange(12, dtype=np.float32).reshape(4, 3) / 10 + weight_offset)
    bias = b.initializer("b", np.array([0.5, -1.0, 0.25], np.float32))
    h = b.Identity(b.Add(b.MatMul(b.Identity(x), w), bias))
    b.Neg(h)  # dead: nothing uses it
    b.output(b.Relu(h), "y")
    return b.build()


@pytest.fixture
def write_model():
    """``write_model(path, weight_offset=0.0)``: saves the debris model (weights shifted) to ``path``."""

    def write(path: Path, weight_offset: float = 0.0) -> Path:
        save(build_debris_model(weight_offset), path)
        return path

    return write


@pytest.fixture
def model_path(tmp_path: Path, write_model) -> Path:
    return write_model(tmp_path / "model.onnx")


@pytest.fixture
def snapshot():
    """``snapshot(path)``: bytes and modification time, to check that a file was not touched."""

    def take(path: Path) -> tuple[bytes, int]:
        return path.read_bytes(), path.stat().st_mtime_ns

    return take
