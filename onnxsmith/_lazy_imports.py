"""Defer imports until something uses them: sympy (through onnx_ir), and names packages re-export.

onnx_ir imports sympy at module level, but only symbolic-dimension arithmetic (``SymbolicDim + 1``)
and the parsing of dimension expressions ever touch it. Importing sympy costs about 0.3 s and 33 MiB:
a third of onnxsmith's start-up time and a fifth of the peak memory of quantizing a small model.

Before onnx_ir is imported, ``sys.modules`` gets stand-ins for ``sympy`` and for onnx_ir's
expression parser (which reads ``sympy.Max`` and friends when it is imported). A stand-in's first
attribute lookup imports the real module, puts it in ``sys.modules`` and copies its namespace into
the stand-in, so every later lookup, ours, onnx_ir's or a user's, reads the real objects directly.
If onnx_ir changes where it uses sympy, the only effect is that sympy is imported eagerly again.

(``importlib.util.LazyLoader`` does not serve here: on Python 3.11 the ``import sympy`` statement of
a second importer reads ``__spec__``, which already triggers the load.)
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

DEFERRED_MODULES = ("sympy", "onnx_ir._symbolic_shapes")


def defer_imports(names: tuple[str, ...] = DEFERRED_MODULES) -> None:
    """Register a stand-in for each module of ``names`` that is not imported yet.

    A top-level module that is not installed gets no stand-in (the real import error stays).
    Submodules are not looked up, as that would import their package.
    """
    for name in names:
        if name in sys.modules:
            continue
        if "." in name:
            if name.partition(".")[0] in sys.modules:
                continue  # the package is imported: the submodule is imported or never will be
            spec = importlib.machinery.ModuleSpec(name, None)
        else:
            spec = importlib.util.find_spec(name)
            if spec is None:
                continue
        sys.modules[name] = _stand_in(name, spec)


def is_deferred(name: str) -> bool:
    """Whether ``name`` is still a stand-in whose real module has not been imported."""
    module = sys.modules.get(name)
    return module is not None and vars(module).get("__onnxsmith_deferred__", False)


def _stand_in(name: str, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
    stand_in = types.ModuleType(name, f"{name}, imported on first use (see onnxsmith._lazy_imports)")
    stand_in.__spec__ = spec
    stand_in.__onnxsmith_deferred__ = True  # type: ignore[attr-defined]

    def __getattr__(attribute: str) -> object:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        real = importlib.import_module(name)
        namespace = vars(stand_in)
        namespace.pop("__getattr__", None)
        namespace.pop("__onnxsmith_deferred__", None)
        namespace.update(vars(real))
        return getattr(real, attribute)

    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    return stand_in


def lazy_exports(namespace: dict[str, Any], exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) for names it re-exports on first use.

    ``namespace`` is the package's ``globals()``; ``exports`` maps each name to the module that
    defines it. The first lookup of a name imports that module and keeps the value in the
    package's namespace, so later lookups are plain attribute reads.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(module), name)
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
