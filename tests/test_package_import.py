"""Importing onnxsmith pauses the cyclic collector and leaves the collector as it found it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            check=True)
    return result.stdout.split()


def test_the_import_leaves_collection_on_and_its_objects_out_of_the_young_generation():
    enabled, young, freeze_count = _run("""
        import gc
        import onnxsmith
        print(gc.isenabled(), gc.get_count()[0] < 1000, gc.get_freeze_count())
        """)
    assert (enabled, young, freeze_count) == ("True", "True", "0")


def test_a_disabled_collector_stays_disabled():
    assert _run("""
        import gc
        gc.disable()
        import onnxsmith
        print(gc.isenabled())
        """) == ["False"]


def test_objects_the_process_froze_stay_frozen():
    frozen_before, frozen_after = _run("""
        import gc
        keep = [[] for _ in range(1000)]
        gc.freeze()
        before = gc.get_freeze_count()
        import onnxsmith
        print(before, gc.get_freeze_count())
        """)
    before, after = int(frozen_before), int(frozen_after)
    assert before > 1000
    assert before - 200 < after <= before  # still frozen (a few died meanwhile), and nothing of the import joined
