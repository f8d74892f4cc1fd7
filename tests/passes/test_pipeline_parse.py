"""Pipeline strings: parsing, option typing, named pipelines, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxsmith.errors import PassOptionError, PipelineError
from onnxsmith.passes import Pass, PassResult, build_pipeline, parse_pipeline, pipeline_string, register_pass
from onnxsmith.passes.registry import register_pipeline


@dataclass
class _Opts:
    max_size: int = 100
    ratio: float = 0.5
    enabled: bool = True
    rules: list[str] = field(default_factory=list)
    mode: Literal["fast", "exact"] = "fast"


@pytest.fixture
def configurable(scratch_registry):
    name = scratch_registry("t-configurable")

    @register_pass(name=name)
    class Configurable(Pass):
        """A pass with options of every kind."""

        Options = _Opts

        def run(self, model, ctx):
            return PassResult(False)

    return name


def test_parse_plain_and_braced_items():
    assert parse_pipeline("a,b{x=1},c") == [("a", {}), ("b", {"x": "1"}), ("c", {})]


def test_parse_list_values_and_separators():
    items = parse_pipeline("fuse{rules=conv-bn,gelu;max-iterations=10}")
    assert items == [("fuse", {"rules": "conv-bn,gelu", "max-iterations": "10"})]
    assert parse_pipeline("p{a=1 b=2}") == [("p", {"a": "1", "b": "2"})]


@pytest.mark.parametrize("text, fragment", [
    ("", "empty pipeline"),
    ("a,,b", "empty item"),
    ("a{x=1", "missing '}'"),
    ("a}x", "unbalanced"),
    ("a{x=1}b", "text after"),
    ("a{{x=1}}", "nested braces"),
    ("a{x}", "has no value"),
    ("a{x=1;x=2}", "given twice"),
])
def test_parse_errors_are_one_line(text, fragment):
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_options_are_typed(configurable):
    (p,) = build_pipeline(f"{configurable}{{max-size=2e3;ratio=0.25;enabled=false;rules=a,b;mode=exact}}")
    assert p.options == _Opts(max_size=2000, ratio=0.25, enabled=False, rules=["a", "b"], mode="exact")
    assert pipeline_string([p]) == f"{configurable}{{max-size=2000;ratio=0.25;enabled=false;rules=a,b;mode=exact}}"


@pytest.mark.parametrize("options, fragment", [
    ("max-sise=3", "did you mean 'max-size'"),
    ("max-size=1.5", "must be an integer"),
    ("max-size=abc", "must be an integer"),
    ("enabled=maybe", "true or false"),
    ("mode=slow", "must be one of fast, exact"),
])
def test_bad_options_name_the_problem(configurable, options, fragment):
    with pytest.raises(PassOptionError) as info:
        build_pipeline(f"{configurable}{{{options}}}")
    assert fragment in str(info.value)
    assert configurable in str(info.value)


def test_unknown_pass_suggests_closest(configurable):
    with pytest.raises(PipelineError, match="did you mean 't-configurable'"):
        build_pipeline("t-configurabel")


def test_named_pipelines_expand_and_refuse_options(configurable, scratch_registry):
    register_pipeline(scratch_registry("t-pipe"), f"{configurable}{{max-size=1}},{configurable}", "test pipeline")
    passes = build_pipeline("t-pipe")
    assert [p.options.max_size for p in passes] == [1, 100]
    with pytest.raises(PipelineError, match="takes no options"):
        build_pipeline("t-pipe{a=1}")


def test_self_including_pipeline_is_an_error(scratch_registry):
    register_pipeline(scratch_registry("t-loop"), "t-loop", "loops")
    with pytest.raises(PipelineError, match="nest deeper"):
        build_pipeline("t-loop")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab-{}=,; x1", max_size=30))
def test_parser_never_crashes(text):
    try:
        parse_pipeline(text)
    except PipelineError as e:
        assert "\n" not in str(e)
