"""Conformance run: a shared scratch folder and the summary line at the end of the session."""

from __future__ import annotations

import pytest
from conformance_tally import TALLY


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One scratch folder for every case's files (each case overwrites the previous one's)."""
    return str(tmp_path_factory.mktemp("conformance"))


def pytest_terminal_summary(terminalreporter) -> None:
    if TALLY.cases:
        terminalreporter.write_sep("-", "onnx backend conformance")
        terminalreporter.write_line(TALLY.summary())
        for line in TALLY.broken_by_cleanup:
            terminalreporter.write_line(f"  broken by cleanup: {line}")
