"""Learning-rate schedules: values at known points, and their option checks."""

from __future__ import annotations

import math

import pytest

from onnxsmith.errors import PipelineError
from onnxsmith.train import Schedule


def test_constant_is_the_base_rate_everywhere():
    schedule = Schedule("constant", 0.1, total=10)
    assert [schedule(t) for t in (0, 5, 9, 50)] == [0.1] * 4


def test_cosine_starts_at_the_rate_halves_midway_and_ends_near_the_floor():
    schedule = Schedule("cosine", 0.2, total=100, min_lr=0.02)
    assert schedule(0) == pytest.approx(0.2)
    assert schedule(50) == pytest.approx(0.11)  # floor + half the span
    assert schedule(99) == pytest.approx(0.02 + 0.18 * (1 + math.cos(math.pi * 99 / 100)) / 2)
    assert schedule(500) == schedule(99)  # past the end: the last value


def test_warmup_rises_linearly_to_the_rate_then_follows_the_cosine():
    schedule = Schedule("warmup-cosine", 1.0, total=14, warmup=4)
    assert [schedule(t) for t in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert schedule(4) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.5)  # 5 of the 10 cosine steps
    values = [schedule(t) for t in range(4, 14)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("kwargs, words", [
    ({"kind": "step"}, "unknown learning-rate schedule"),
    ({"lr": 0.0}, "positive"),
    ({"kind": "cosine", "min_lr": 2.0}, "minimum learning rate"),
    ({"kind": "cosine", "warmup": 3}, "warmup-cosine"),
    ({"kind": "warmup-cosine", "warmup": 10, "total": 10}, "leave nothing"),
])
def test_bad_schedules_are_one_line_errors(kwargs, words):
    with pytest.raises(PipelineError, match=words):
        Schedule(**{"lr": 0.1, "total": 10, **kwargs})
