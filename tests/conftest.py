"""Shared pytest fixtures."""

from __future__ import annotations

import pytest

from onnxsmith.passes import registry


@pytest.fixture
def scratch_registry():
    """Registers test passes and removes them afterwards, so tests do not leak into each other."""
    added: list[str] = []

    def add(name: str) -> str:
        added.append(name)
        return name

    yield add
    for name in added:
        registry.unregister(name)
