"""Deferred built-in passes: ``onnxsmith.passes`` names them without importing their modules, and the
names lead to the modules that register them."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import textwrap

import pytest

import onnxsmith.passes
from onnxsmith.errors import PipelineError
from onnxsmith.passes import Pass, get_pass, list_passes, list_pipelines, register_pass, registry


def _run(code: str) -> str:
    """Runs ``code`` in a fresh interpreter (nothing imported yet) and returns its stdout."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()


def _deferred_table() -> dict[str, str]:
    """The table ``onnxsmith.passes`` declares, read in a fresh interpreter (this one resolved it)."""
    out = _run("""
        import json
        from onnxsmith.passes import registry
        print(json.dumps(registry._DEFERRED))
        """)
    import json

    return json.loads(out)


def test_every_deferred_name_is_registered_by_its_module_and_every_built_in_is_known():
    table = _deferred_table()
    assert {"fuse", "quantize-dynamic", "qdq", "build-gradients"} <= set(table)
    for module in pkgutil.walk_packages(onnxsmith.passes.__path__, "onnxsmith.passes."):
        importlib.import_module(module.name)  # every module of the package: nothing left unregistered
    passes, pipelines = list_passes(), list_pipelines()
    for name, module in table.items():
        if name in passes:
            assert passes[name].__module__ == module, name
        else:
            assert name in pipelines and module == "onnxsmith.passes.quant", name
    built_in = {n for n, cls in passes.items() if cls.__module__.startswith("onnxsmith.passes.")} | set(pipelines)
    eager = {n for n, cls in passes.items() if cls.__module__.startswith("onnxsmith.passes.cleanup")} | {"cleanup"}
    assert built_in - eager == set(table)
    assert not registry._DEFERRED


def test_a_dynamic_quantization_pipeline_imports_only_its_passes():
    out = _run("""
        import sys
        from onnxsmith.passes import build_pipeline
        from onnxsmith.passes.registry import is_known
        passes = build_pipeline("cleanup,fuse,quantize-dynamic")
        print(passes[-1].name, is_known("annotate-quant"), is_known("qdq"), is_known("no-such-pass"))
        print(sorted(m for m in ("onnxsmith.calibration", "onnxsmith.passes.quant.annotate",
                                 "onnxsmith.passes.train", "onnxsmith.passes.fusion") if m in sys.modules))
        """)
    assert out.splitlines() == ["quantize-dynamic True True False", "['onnxsmith.passes.fusion']"]


def test_a_deferred_pipeline_resolves_to_its_passes():
    out = _run("""
        from onnxsmith.passes import build_pipeline, pipeline_string
        print(pipeline_string(build_pipeline("qdq")).split(",")[:3])
        """)
    assert out == "['prepare-quant', 'annotate-quant', 'insert-qdq']"


def test_an_unknown_pass_is_one_line_suggesting_a_deferred_name_without_importing_it():
    out = _run("""
        import sys
        from onnxsmith.errors import PipelineError
        from onnxsmith.passes import get_pass
        try:
            get_pass("quantize-dynamc")
        except PipelineError as e:
            print(e)
        print("onnxsmith.passes.quant.dynamic" in sys.modules)
        """)
    assert out.splitlines() == ["unknown pass 'quantize-dynamc' (did you mean 'quantize-dynamic'?)", "False"]


def test_a_user_pass_cannot_take_a_deferred_built_in_name(scratch_registry):
    class Impostor(Pass):
        """Claims a built-in's name."""

        name = "lower-qoperator"

        def run(self, model, ctx):
            raise AssertionError("never runs")

    with pytest.raises(ValueError, match="already registered"):
        register_pass(Impostor)
    assert get_pass("lower-qoperator").__module__ == "onnxsmith.passes.quant.qoperator"
    with pytest.raises(PipelineError, match="is a pipeline, not a pass"):
        get_pass("qdq-auto")


def test_the_quant_package_exports_its_names_on_first_use():
    out = _run("""
        import sys
        import onnxsmith.passes.quant as quant
        print("onnxsmith.passes.quant.annotate" in sys.modules, "CalibrationSetup" in dir(quant))
        from onnxsmith.passes.quant import AnnotateQuant, quantize
        print(AnnotateQuant.name, quantize.__module__, "onnxsmith.passes.quant.annotate" in sys.modules)
        try:
            quant.NoSuchName
        except AttributeError as e:
            print(e)
        """)
    assert out.splitlines() == [
        "False True",
        "annotate-quant onnxsmith.passes.quant.scales True",
        "module 'onnxsmith.passes.quant' has no attribute 'NoSuchName'",
    ]
