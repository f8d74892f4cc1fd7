"""onnxsmith defers sympy (which onnx_ir imports but only symbolic-dimension arithmetic uses) and re-exported names."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_importing_the_cli_does_not_import_sympy():
    out = _run(
        """
        import sys
        import onnxsmith.cli
        from onnxsmith._lazy_imports import is_deferred
        print(is_deferred("sympy"), is_deferred("onnx_ir._symbolic_shapes"), "sympy.core" in sys.modules)
        """
    )
    assert out == "True True False"


def test_symbolic_dimensions_and_user_imports_of_sympy_still_work():
    out = _run(
        """
        import onnxsmith
        import onnx_ir as ir
        print(ir.SymbolicDim("N") + 1, ir.SymbolicDim("max(N, 3)")._expr)
        import sympy
        import sympy.core
        from onnxsmith._lazy_imports import is_deferred
        print(sympy.Symbol("x") * 2, isinstance(sympy.Symbol("x"), sympy.core.Expr), is_deferred("sympy"))
        """
    )
    assert out.splitlines() == ["N + 1 Max(3, N)", "2*x True False"]


def test_a_user_who_imported_sympy_first_gets_it_untouched():
    out = _run(
        """
        import sympy
        real = sympy
        import onnxsmith
        import sys
        print(sys.modules["sympy"] is real)
        """
    )
    assert out == "True"


def test_the_cli_imports_gradient_rules_and_the_quant_report_only_when_used():
    out = _run(
        """
        import sys
        import onnxsmith.cli
        from onnxsmith.passes import list_passes
        print("build-gradients" in list_passes(), "tune-quant" in list_passes())
        print("onnxsmith.passes.train.gradients" in sys.modules, "onnxsmith.quant_report" in sys.modules)
        from onnxsmith.passes.train import registered_ops
        print("MatMul" in registered_ops(), "onnxsmith.passes.train.gradients" in sys.modules)
        """
    )
    assert out.splitlines() == ["True True", "False False", "True True"]


def test_a_user_rule_for_an_op_with_a_built_in_rule_is_refused_before_the_built_ins_load():
    out = _run(
        """
        from onnxsmith.passes.train import gradient
        try:
            gradient("MatMul")(lambda ctx, node, grads: grads)
        except ValueError as e:
            print(e)
        """
    )
    assert out == "a gradient rule for MatMul is already registered"


def test_lazy_exports_import_a_name_on_first_use_and_keep_it():
    import types

    from onnxsmith._lazy_imports import lazy_exports

    package = types.ModuleType("fake_package")
    namespace = vars(package)
    package.__getattr__, package.__dir__ = lazy_exports(namespace, {"JSONDecoder": "json.decoder"})
    assert "JSONDecoder" not in namespace and "JSONDecoder" in dir(package)
    import json.decoder

    assert package.JSONDecoder is json.decoder.JSONDecoder
    assert namespace["JSONDecoder"] is json.decoder.JSONDecoder  # later lookups read the namespace
    with pytest.raises(AttributeError, match="module 'fake_package' has no attribute 'nope'"):
        package.nope
