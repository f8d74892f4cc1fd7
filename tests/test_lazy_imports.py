"""onnxsmith defers sympy, which onnx_ir imports but only symbolic-dimension arithmetic uses."""

from __future__ import annotations

import subprocess
import sys
import textwrap


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
