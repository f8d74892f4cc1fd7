"""Why a rule did not apply: reason kinds and lazily formatted failure records.

The matcher records a :class:`Failure` every time an attempt stops. Formatting a message costs far
more than recording it, so a failure keeps a template and its arguments and is only turned into
text when someone asks (the tracer, ``explain``). Each failure carries a *progress* score; when a
rule has several ways to match (commutative operands), the failures with the highest progress are
the informative ones ("furthest failure", as in parsers).

Progress tiers: a structural failure scores how many informative pattern elements (ops, constants)
had matched and how far into the checks of the failing element it got; the later stages of an
attempt (sharing check, ``check``, ``rewrite``) always outrank it, in the order in which they run.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import onnx_ir as ir

__all__ = ["CANDIDATE_REASONS", "Failure", "Reason", "describe", "node_label", "value_label"]


class Reason(str, enum.Enum):
    """The kind of a failed match attempt (the key of the ``rejected`` statistics)."""

    OP_TYPE = "op-type"
    ARITY = "inputs"
    ABSENT_INPUT = "absent-input"
    ATTRIBUTE = "attribute"
    SCOPE = "scope"
    NOT_CONSTANT = "not-constant"
    CONST_SHAPE = "const-shape"
    CONST_VALUE = "const-value"
    DTYPE = "dtype"
    PREDICATE = "predicate"
    BINDING = "binding"
    SHARED_INTERMEDIATE = "shared-intermediate"
    CHECK = "check"
    DECLINED = "declined"

    def __str__(self) -> str:
        return self.value


#: Progress scores of the stages after a structural match, in the order they run.
SHARED_PROGRESS = 1_000_000
CHECK_PROGRESS = SHARED_PROGRESS + 1
DECLINED_PROGRESS = SHARED_PROGRESS + 2


def value_label(value: ir.Value | None) -> str:
    """``'name'`` of a value (``<absent>`` for a missing optional input)."""
    if value is None:
        return "<absent>"
    return f"'{value.name}'" if value.name else "<unnamed value>"


def node_label(node: ir.Node) -> str:
    """``MatMul 'mm'``, or ``MatMul (-> 'out')`` for an unnamed node."""
    op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
    if node.name:
        return f"{op} '{node.name}'"
    first = node.outputs[0] if node.outputs else None
    return f"{op} (-> {value_label(first)})" if first is not None else op


def describe(arg: Any) -> str:
    """Text for a template argument: nodes and values get labels, the rest ``str``."""
    if isinstance(arg, ir.Node):
        return node_label(arg)
    if isinstance(arg, ir.Value):
        return value_label(arg)
    return str(arg)


class Failure(NamedTuple):
    """One failed attempt: its kind, progress score, and a message template with arguments."""

    progress: int
    reason: Reason
    template: str
    args: tuple[Any, ...] = ()

    def text(self) -> str:
        """The formatted message, e.g. ``input 0 of Add 'a' is produced by Relu 'r', expected MatMul``."""
        return self.template.format(*(describe(a) for a in self.args))

    def summary(self) -> str:
        """The message without node and value names, so that failures at many nodes count as one reason.

        Nodes become their op type, values what produces them: ``value <MatMul output> of MatMul is
        used outside the match (2 consumers)``.
        """
        return self.template.format(*(_generic(a) for a in self.args))


#: Reasons that say a pattern's ops are there but something else prevents the rewrite: the
#: attempts worth reporting as rejected candidates. The others only say "not this pattern here":
#: another op, another arity, or a constant that is not the value (``Const(value=...)``,
#: ``where=``) that identifies the pattern, such as the 0.5 of a GELU.
CANDIDATE_REASONS = frozenset({
    Reason.NOT_CONSTANT, Reason.CONST_SHAPE, Reason.DTYPE, Reason.SHARED_INTERMEDIATE, Reason.CHECK,
    Reason.DECLINED,
})


def _generic(arg: Any) -> str:
    """Like :func:`describe`, without names: ``MatMul``, ``<Relu output>``, ``<graph input>``."""
    if isinstance(arg, ir.Node):
        return node_label(arg).split(" ")[0]
    if isinstance(arg, ir.Value):
        producer = arg.producer()
        if producer is not None:
            return f"<{node_label(producer).split(' ')[0]} output>"
        return "<initializer>" if arg.is_initializer() else "<graph input>"
    return str(arg)
