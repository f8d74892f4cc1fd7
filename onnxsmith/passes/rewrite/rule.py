"""Rules and rule sets.

A :class:`Rule` is a name, a pattern and a small function ``rewrite(op, m)`` that builds the
replacement with the :class:`~onnxsmith.passes.rewrite.rewriter.RewriterContext` ``op`` from the
:class:`~onnxsmith.passes.rewrite.match.Match` ``m`` and returns it (:data:`Replacement`), or returns
:class:`Decline` with a reason. An optional ``check(m)`` precondition returns True, False or a
``Decline``. The :func:`rule` decorator builds one from a function; its docstring's first line is
the rule's description (by convention ``before -> after``).

A :class:`RuleSet` is an ordered collection of uniquely named rules, indexed by the op types their
patterns are rooted at; at a node, rules are tried in the order of the set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import onnx_ir as ir

from onnxsmith.errors import PassOptionError, closest
from onnxsmith.passes.rewrite.pattern import (
    Op,
    OutputOf,
    pattern_edges,
    pattern_height,
    required_op_types,
    validate_pattern,
)

if TYPE_CHECKING:
    from onnxsmith.passes.rewrite.match import Match
    from onnxsmith.passes.rewrite.rewriter import RewriterContext

__all__ = ["CheckFn", "Decline", "Replacement", "RewriteFn", "Rule", "RuleSet", "rule"]


@dataclass(frozen=True)
class Decline:
    """A rule's answer that it does not apply here, with the reason (shown by the tracer)."""

    reason: str


#: What a rewrite returns: the value standing in for the root's (single or first) output, or one
#: entry per root output, where None is allowed for an output nothing uses.
Replacement = ir.Value | Sequence[ir.Value | None]

RewriteFn = Callable[["RewriterContext", "Match"], Replacement | Decline]
CheckFn = Callable[["Match"], bool | Decline]


@dataclass(frozen=True)
class Rule:
    """A named pattern with its rewrite function (see the module docstring).

    Attributes:
        name: Unique kebab-case name (used in statistics, traces and ``rules=`` options).
        pattern: Rooted at an ``Op`` (or one of its outputs).
        rewrite: ``rewrite(op, m) -> Replacement | Decline``.
        check: Optional precondition ``check(m) -> bool | Decline``, run before ``rewrite``.
        allow_shared_intermediates: Match even when an intermediate value is used outside the
            match; the replacement then recomputes it and the original node stays for its other users.
        description: One line, by convention ``before -> after``.
        height / edges: Op levels and Op inputs of the pattern (computed; used by the driver).
        required: Per Op every match binds, its ``(domain, op_type)`` alternatives (computed; see
            :meth:`RuleSet.usable`).
    """

    name: str
    pattern: Op | OutputOf
    rewrite: RewriteFn
    check: CheckFn | None = None
    allow_shared_intermediates: bool = False
    description: str = ""
    height: int = field(init=False, repr=False, compare=False)
    edges: int = field(init=False, repr=False, compare=False)
    required: tuple[frozenset[tuple[str, str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or " " in self.name or "," in self.name:
            raise ValueError(f"rule names are non-empty, without spaces or commas: {self.name!r}")
        validate_pattern(self.pattern)
        object.__setattr__(self, "height", pattern_height(self.pattern))
        object.__setattr__(self, "edges", pattern_edges(self.pattern))
        object.__setattr__(self, "required", required_op_types(self.pattern))

    def can_match_among(self, op_types: Collection[tuple[str, str]]) -> bool:
        """Whether a graph whose nodes have only these ``(domain, op_type)``s can hold a match."""
        return all(not alternatives.isdisjoint(op_types) for alternatives in self.required)

    @property
    def root(self) -> Op:
        """The pattern's root node."""
        return self.pattern if isinstance(self.pattern, Op) else self.pattern.op

    def __repr__(self) -> str:
        return f"<rule {self.name}: {self.pattern!r}>"


def rule(name: str, pattern: Op | OutputOf, *, check: CheckFn | None = None,
         allow_shared_intermediates: bool = False) -> Callable[[RewriteFn], Rule]:
    """Decorator: turns ``rewrite(op, m)`` into a :class:`Rule` (docstring line 1 = description).

    Example::

        # Add(MatMul(a, b), c) -> Gemm(a, b, c)
        @rule("matmul-add-to-gemm", Op("Add", Op("MatMul", Var("a"), Var("b")), Var("c")))
        def matmul_add_to_gemm(op, m):
            return op.Gemm(m["a"], m["b"], m["c"])
    """

    def make(fn: RewriteFn) -> Rule:
        doc = (fn.__doc__ or "").strip()
        return Rule(name, pattern, fn, check, allow_shared_intermediates, doc.splitlines()[0] if doc else "")

    return make


class RuleSet:
    """An ordered set of uniquely named rules, indexed by root op type."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        duplicates = sorted(n for n, k in Counter(r.name for r in self.rules).items() if k > 1)
        if duplicates:
            raise ValueError(f"rule names must be unique in a rule set: {', '.join(duplicates)}")
        self._index: dict[tuple[str, str], tuple[Rule, ...]] = {}
        for r in self.rules:
            for op_type in sorted(r.root.op_types):
                key = (r.root.domain, op_type)
                self._index[key] = (*self._index.get(key, ()), r)
        #: The tallest pattern's height: how far a change can affect a match (see the driver).
        self.height = max((r.height for r in self.rules), default=0)
        #: The most Op inputs in one pattern: how many uses of a value a match can account for.
        self.max_edges = max((r.edges for r in self.rules), default=0)

    def for_node(self, node: ir.Node) -> tuple[Rule, ...]:
        """The rules whose pattern is rooted at ``node``'s op type, in set order."""
        domain = "" if node.domain == "ai.onnx" else node.domain
        return self._index.get((domain, node.op_type), ())

    def usable(self, op_types: Collection[tuple[str, str]]) -> RuleSet:
        """The rules that can match in a graph whose nodes have only these ``(domain, op_type)``s
        (``""`` for ONNX), in set order: every Op a pattern must bind has one of its types there."""
        return RuleSet(r for r in self.rules if r.can_match_among(op_types))

    def select(self, names: Iterable[str], *, owner: str = "rewrite") -> RuleSet:
        """The subset named ``names`` (in set order); an unknown name is a PassOptionError."""
        wanted = list(names)
        known = [r.name for r in self.rules]
        for name in wanted:
            if name not in known:
                best = closest(name, known)
                raise PassOptionError(f"'{owner}' has no rule '{name}' (rules: {', '.join(known)})",
                                      f"did you mean '{best}'?" if best else None)
        return RuleSet(r for r in self.rules if r.name in wanted)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({', '.join(self.names)})"
