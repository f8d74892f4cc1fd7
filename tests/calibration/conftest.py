"""Fixtures for the calibration tests."""

from __future__ import annotations

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
