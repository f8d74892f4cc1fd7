"""Counts of what the conformance run found, printed at the end of the pytest session."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["TALLY", "Tally"]


@dataclass
class Tally:
    """Per-stage counts; a case only reaches a stage when it passed the previous one."""

    cases: int = 0
    round_trip_ok: int = 0
    reproduced_by_ort: int = 0
    reproduced_after_cleanup: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    broken_by_cleanup: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.skipped.items())) or "none"
        return (f"conformance: {self.cases} cases, {self.round_trip_ok} round-trip ok, "
                f"{self.reproduced_by_ort} reproduced by onnxruntime, "
                f"{self.reproduced_after_cleanup} reproduced after cleanup, "
                f"{sum(self.skipped.values())} skipped ({reasons})")


#: The tally of this pytest session.
TALLY = Tally()
