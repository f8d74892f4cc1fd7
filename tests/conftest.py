"""Shared pytest fixtures."""

from __future__ import annotations

import pytest
from hypothesis import settings

from onnxsmith.codegen._table_cache import CACHE_DIR_ENV
from onnxsmith.passes import registry

# The property tests draw the same examples on every run, so a red CI is a bug to fix and never
# a roll of the dice; `pytest --hypothesis-profile=explore` draws fresh ones to hunt for new bugs
# (hypothesis prints the failing example and how to reproduce it).
settings.register_profile("reproducible", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile("reproducible")


@pytest.fixture(autouse=True, scope="session")
def private_table_cache(tmp_path_factory):
    """Keeps the op-table cache of this session (and of the CLI processes it starts) in a temporary
    folder: the tests never read or write the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("onnxsmith-cache")))
        yield


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
