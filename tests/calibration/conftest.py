"""Fixtures for the calibration tests."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx_ir as ir
import pytest
from calib_models import conv_net, mlp, two_inputs


@pytest.fixture
def mlp_model() -> ir.Model:
    return mlp()


@pytest.fixture
def conv_model() -> ir.Model:
    return conv_net()


@pytest.fixture
def two_input_model() -> ir.Model:
    return two_inputs()


@pytest.fixture
def profiled_sessions(monkeypatch, tmp_path) -> Callable[[Any], dict[str, tuple[str, int]]]:
    """Calibration sessions built in the test profile their runs; returns a reader of a session's
    node events: node name -> (kernel op type, start time in microseconds)."""
    session_module = importlib.import_module("onnxsmith.calibration.session")
    plain = session_module.session_options

    def profiled(threads):
        options = plain(threads=threads)
        options.enable_profiling, options.profile_file_prefix = True, str(tmp_path / "calib")
        return options

    monkeypatch.setattr(session_module, "session_options", profiled)

    def node_events(session) -> dict[str, tuple[str, int]]:
        events = json.loads(Path(session.end_profiling()).read_text())
        return {e["name"].removesuffix("_kernel_time"): (e["args"]["op_name"], e["ts"]) for e in events
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")}

    return node_events
