"""The decomposed GELU forms that exporters write, as patterns shared by the GELU families.

Exact GELU is ``0.5 * x * (1 + erf(x / sqrt(2)))``; its tanh approximation is
``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))``. Exporters differ in where they
put the ``0.5`` and how they write ``x / sqrt(2)`` and the cube; with ``A`` the ``1 + erf(...)`` or
``1 + tanh(...)`` factor, the patterns here cover (Mul and Add match either operand order):

=============  ===========================  =============================================
placement      product                      written by
=============  ===========================  =============================================
``xa-half``    ``(x * A) * 0.5``            TorchScript ``F.gelu`` (erf), torch tanh form
``x-ahalf``    ``x * (A * 0.5)``            dynamo ``F.gelu``, jax2tf (magika's tanh form)
``xhalf-a``    ``(x * 0.5) * A``            Keras/TensorFlow, Hugging Face ``gelu_new``
=============  ===========================  =============================================

``x / sqrt(2)`` is ``Div(x, sqrt(2))`` or ``Mul(x, 1/sqrt(2))``. The cube term ``k * x^3`` is
``Mul(Pow(x, 3), k)`` (``pow``), ``Mul(Mul(x, Mul(x, x)), k)`` (``torch``) or
``Mul(x, Mul(x, Mul(x, k)))`` (``jax``). Constants are recognised within a relative ``1e-6`` of
their exact value (so float32 roundings of ``sqrt(2)`` count), must hold a single element, and
must not have a higher rank than ``x`` (a ``[1, 1, 1]`` one would broadcast a lower-rank ``x``).

``erf_forms``/``tanh_forms`` give ``(suffix, pattern)`` pairs capturing ``x`` (and the scaling
node ``scale`` of the erf form, whose operand order the pattern cannot pin: see
:func:`check_erf_scale`); a family turns each into a rule with its own rewrite.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxsmith.passes.rewrite import Const, Decline, Match, Op, Var
from onnxsmith.passes.rewrite import ShapePolicy as S
from onnxsmith.passes.rewrite.constants import constant_shape

__all__ = ["FLOAT32", "check_constants", "check_erf_scale", "erf_forms", "tanh_forms"]

FLOAT32 = frozenset({ir.DataType.FLOAT})

SQRT_2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
KAPPA = 0.044715

#: Names of the constants a GELU pattern captures (checked against ``x``'s rank).
_CONSTANTS = ("half", "one", "scale_value", "beta", "kappa", "three")


def _equals(expected: float, label: str) -> Callable[[np.ndarray], bool]:
    """A Const predicate: one element, within a relative 1e-6 of ``expected``."""

    def predicate(array: np.ndarray) -> bool:
        return array.size == 1 and bool(np.isclose(float(array.reshape(())), expected, rtol=1e-6, atol=0.0))

    predicate.__name__ = f"equals_{label}"
    return predicate


def _const(name: str, value: float, label: str) -> Const:
    return Const(name, shape=S.ANY, where=_equals(value, label))


def _scalar(name: str) -> Const:
    return Const(name, shape=S.ANY, where=_one_element)


def _one_element(array: np.ndarray) -> bool:
    return array.size == 1


def _placements(a: Op) -> list[tuple[str, Op]]:
    """The three placements of the 0.5 around ``x * a`` (see the module docstring)."""
    return [
        ("xa-half", Op("Mul", Op("Mul", Var("x", dtype=FLOAT32), a), _const("half", 0.5, "0.5"))),
        ("x-ahalf", Op("Mul", Var("x", dtype=FLOAT32), Op("Mul", a, _const("half", 0.5, "0.5")))),
        ("xhalf-a", Op("Mul", Op("Mul", Var("x", dtype=FLOAT32), _const("half", 0.5, "0.5")), a)),
    ]


def erf_forms() -> list[tuple[str, Op]]:
    """``(suffix, pattern)`` for every placement of exact (erf) GELU."""
    scaled = Op({"Div", "Mul"}, Var("x"), _scalar("scale_value"), _commutative=True, _name="scale")
    a = Op("Add", Op("Erf", scaled), _const("one", 1.0, "1"))
    return _placements(a)


def _cubes() -> list[tuple[str, Op]]:
    kappa = _const("kappa", KAPPA, "0.044715")
    return [
        ("pow", Op("Mul", Op("Pow", Var("x"), _const("three", 3.0, "3")), kappa)),
        ("torch", Op("Mul", Op("Mul", Var("x"), Op("Mul", Var("x"), Var("x"))), kappa)),
        ("jax", Op("Mul", Var("x"), Op("Mul", Var("x"), Op("Mul", Var("x"), kappa)))),
    ]


def tanh_forms() -> list[tuple[str, Op]]:
    """``(suffix, pattern)`` for every placement and cube form of tanh-approximated GELU."""
    forms = []
    for cube_name, cube in _cubes():
        inner = Op("Mul", Op("Add", Var("x"), cube), _const("beta", SQRT_2_OVER_PI, "sqrt_2_over_pi"))
        a = Op("Add", Op("Tanh", inner), _const("one", 1.0, "1"))
        forms += [(f"{placement}-{cube_name}", pattern) for placement, pattern in _placements(a)]
    return forms


def check_constants(m: Match) -> Decline | None:
    """Declines when a matched constant has a higher rank than ``x`` (it would broadcast ``x``)."""
    x = m["x"]
    assert x is not None
    rank = x.shape.rank() if x.shape is not None else None
    for name in _CONSTANTS:
        value = m[name] if name in m else None
        if value is None:
            continue
        dims = constant_shape(value)
        if len(dims) > (1 if rank is None else rank):
            where = "x's rank is unknown" if rank is None else f"x has rank {rank}"
            return Decline(f"constant '{value.name}' has shape {list(dims)} and {where}: it may broadcast x")
    return None


def check_erf_scale(m: Match) -> Decline | None:
    """Declines unless the ``scale`` node is ``Div(x, sqrt(2))`` or ``Mul(x, 1/sqrt(2))``."""
    node = m.node("scale")
    c = float(m.const("scale_value").reshape(()))
    if node.op_type == "Div":
        if node.inputs[0] is not m["x"]:
            return Decline(f"Div '{node.name}' divides a constant by x")
        expected, label = SQRT_2, "sqrt(2)"
    else:
        expected, label = 1.0 / SQRT_2, "1/sqrt(2)"
    if not math.isclose(c, expected, rel_tol=1e-6):
        return Decline(f"{node.op_type} '{node.name}' scales x by {c!r}, not {label}")
    return None
