"""The report's stats column leaves out what says nothing."""

from __future__ import annotations

from onnxsmith.report import _stats_text


def test_zero_counts_and_empty_collections_are_left_out_at_every_level():
    stats = {"rewrites": 2, "skipped": 0, "applied": {"a": 2, "b": 0}, "rejected": {"c": {"op-type": 0}},
             "notes": []}
    assert _stats_text(stats) == "rewrites=2, applied=(a 2)"
