"""The worklist driver: applies a rule set to a fixed point, deterministically, in near-linear time.

Every node of every scope (main graph, subgraphs, function bodies) starts on a FIFO worklist in
graph order. Popping a node tries the rules rooted at its op type (an index lookup, so other nodes
cost nothing) in rule-set order; the first that matches, passes its check and does not decline is
committed. A commit can only change matches near it, so only that neighbourhood is queued again:

- the new nodes, and the nodes whose inputs were redirected;
- everything downstream of those within ``height - 1`` consumer hops, ``height`` being the tallest
  pattern's number of Op levels (a match only looks that far upstream from its root);
- the consumers (same bound) of values that lost a use, when their producer could now be a
  non-shared intermediate (it has a producer and at most as many uses as a pattern has edges).

Rules that cannot match anywhere are not tried at all: a rule whose pattern must bind an Op of a
type that no node of the model has (``RuleSet.usable``; GELU forms built on Erf in a model without
Erf). Types only appear through commits, so the usable rules are recomputed when a commit adds a
node of a new type; the new nodes and their downstream neighbourhood are queued again (above), so
every node where a newly usable rule could match is visited again. The rewrites are the same as
with every rule tried everywhere; the statistics count the attempts actually made.

When the worklist is empty no rule applies anywhere: a fixed point. The order of everything is
the order of nodes in the graph and of rules in the set, never of hashes or object addresses, so
the same input gives the same output and the same sequence of rewrites. A rule set that keeps
firing (two rules undoing each other) hits ``max_rewrites`` and raises
:class:`~onnxsmith.passes.rewrite.errors.RewriteLimitError` naming the rules still firing.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import OnnxsmithError
from onnxsmith.passes.rewrite.errors import RewriteLimitError, RuleError
from onnxsmith.passes.rewrite.failure import (
    CANDIDATE_REASONS,
    CHECK_PROGRESS,
    DECLINED_PROGRESS,
    Failure,
    Reason,
    node_label,
)
from onnxsmith.passes.rewrite.match import Match
from onnxsmith.passes.rewrite.matcher import MatchSearch
from onnxsmith.passes.rewrite.replace import Change, commit, remove_unused_initializers
from onnxsmith.passes.rewrite.rewriter import RewriterContext
from onnxsmith.passes.rewrite.rule import Decline, Replacement, Rule, RuleSet
from onnxsmith.passes.rewrite.scope import Namer, Scope, model_scopes

__all__ = ["Accepted", "RewriteStats", "apply_rules", "attempt"]

log = logging.getLogger(__name__)

#: Rewrites remembered to name the rules still firing when the cap is hit.
_RECENT = 100


@dataclass
class Accepted:
    """A match whose rewrite produced a replacement, not yet committed."""

    match: Match
    ctx: RewriterContext
    replacement: Replacement


def _call(rule: Rule, what: str, node: ir.Node, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except OnnxsmithError:
        raise
    except Exception as e:
        raise RuleError(f"rule '{rule.name}' raised {type(e).__name__} in {what} at {node_label(node)}: {e}",
                        "fix the rule; rerun with --debug for the traceback") from e


def attempt(rule: Rule, node: ir.Node, scope: Scope, namer: Namer) -> Accepted | list[Failure]:
    """Tries ``rule`` at ``node``: the first accepted match, or the failures that explain why not."""
    search = MatchSearch(rule.pattern, node, rule_name=rule.name, allow_shared=rule.allow_shared_intermediates,
                         opsets=scope.opsets)
    with contextlib.closing(iter(search)) as matches:
        while (match := _call(rule, "its pattern", node, next, matches, None)) is not None:
            if rule.check is not None:
                verdict = _call(rule, "check", node, rule.check, match)
                if isinstance(verdict, Decline):
                    search.record(Failure(CHECK_PROGRESS, Reason.CHECK, "check declined: {}", (verdict.reason,)))
                    continue
                if not isinstance(verdict, (bool, np.bool_)):
                    raise RuleError(f"rule '{rule.name}': check returned {type(verdict).__name__} at "
                                    f"{node_label(node)}", "return True, False or Decline(reason)")
                if not verdict:
                    search.record(Failure(CHECK_PROGRESS, Reason.CHECK, "check returned False"))
                    continue
            ctx = RewriterContext(match, scope, namer, rule.name)
            try:
                result = _call(rule, "rewrite", node, rule.rewrite, ctx, match)
            except BaseException:
                ctx.discard()
                raise
            if isinstance(result, Decline):
                ctx.discard()
                search.record(Failure(DECLINED_PROGRESS, Reason.DECLINED, "declined: {}", (result.reason,)))
                continue
            return Accepted(match, ctx, result)
    return search.failures


@dataclass
class RewriteStats:
    """What a driver run did.

    Attributes:
        applied: Rewrites per rule (every rule of the set, in set order).
        rejected: Per rule, rejected attempts by reason (the furthest failure of each attempt).
        reasons: Per rule, rejected *candidates* by the tracer's message without names
            (``Failure.summary``): attempts whose furthest failure is one of
            ``CANDIDATE_REASONS`` (the ops matched, something else did not), e.g.
            ``{"conv-bn": {"declined: BatchNormalization is in training mode": 2}}``.
        rewrites: Total rewrites.
        attempts: Rule attempts (a rule tried at a node).
    """

    applied: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    rewrites: int = 0
    attempts: int = 0

    @classmethod
    def merged(cls, runs: Iterable[RewriteStats]) -> RewriteStats:
        """The statistics of driver runs over disjoint rule sets, as one."""
        total = cls()
        for stats in runs:
            total.applied.update(stats.applied)
            total.rejected.update(stats.rejected)
            total.reasons.update(stats.reasons)
            total.rewrites += stats.rewrites
            total.attempts += stats.attempts
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"rewrites": self.rewrites, "attempts": self.attempts, "applied": dict(self.applied),
                "rejected": {k: dict(v) for k, v in self.rejected.items() if v},
                "reasons": {k: dict(v) for k, v in self.reasons.items() if v}}


class _Worklist:
    """A FIFO of nodes without duplicates."""

    def __init__(self) -> None:
        self._queue: deque[ir.Node] = deque()
        self._queued: set[ir.Node] = set()

    def push(self, node: ir.Node) -> None:
        if node not in self._queued:
            self._queued.add(node)
            self._queue.append(node)

    def pop(self) -> ir.Node:
        node = self._queue.popleft()
        self._queued.discard(node)
        return node

    def __bool__(self) -> bool:
        return bool(self._queue)


def _requeue(queue: _Worklist, change: Change, hops: int, max_edges: int) -> None:
    """Queues the neighbourhood of a change again (see the module docstring)."""
    frontier = [*change.new_nodes, *change.rewired_nodes]
    for value in change.lost_uses:
        if value.producer() is not None and len(value.uses()) <= max_edges:
            frontier.extend(value.consumers())
    seen: set[ir.Node] = set()
    level = frontier
    for hop in range(hops):
        following: list[ir.Node] = []
        for node in level:
            if node in seen:
                continue
            seen.add(node)
            queue.push(node)
            if hop + 1 < hops:
                following.extend(c for out in node.outputs for c in out.consumers())
        level = following


def _op_key(node: ir.Node) -> tuple[str, str]:
    return ("" if node.domain == "ai.onnx" else node.domain, node.op_type)


def _op_label(key: tuple[str, str]) -> str:
    return f"{key[0]}::{key[1]}" if key[0] else key[1]


def _limit_error(limit: int, recent: Iterable[str]) -> RewriteLimitError:
    counts = Counter(recent).most_common()
    window = sum(n for _, n in counts)
    firing = ", ".join(f"'{name}' ({n} of the last {window} rewrites)" for name, n in counts)
    return RewriteLimitError(
        f"rewrite rules reached no fixed point within {limit} rewrites; still firing: {firing}",
        "a rule undoes another or matches its own replacement: make it decline there, "
        "or raise max_rewrites if the graph is that large")


def apply_rules(model: ir.Model, rules: RuleSet | Iterable[Rule], *, max_rewrites: int | None = None,
                explain: Callable[[str], None] | None = None) -> RewriteStats:
    """Applies ``rules`` everywhere in ``model`` (in place) until none applies.

    Args:
        model: The model; its graph, subgraphs and function bodies are rewritten.
        rules: A RuleSet, or rules in priority order.
        max_rewrites: Cap on rewrites; default 10 per node of the input (at least 1,000).
        explain: Called with one line per rejected attempt ("rule 'r' at Add 'a': ...").

    Raises:
        RewriteLimitError: The cap was reached; names the rules still firing.
        RuleError: A rule raised or returned something that cannot be applied.
    """
    ruleset = rules if isinstance(rules, RuleSet) else RuleSet(rules)
    scopes = model_scopes(model)
    by_graph = {scope.graph: scope for scope in scopes}
    namer = Namer(scopes)
    queue = _Worklist()
    for scope in scopes:
        for node in scope.graph:
            queue.push(node)
    limit = max_rewrites if max_rewrites is not None else max(1000, 10 * sum(len(s.graph) for s in scopes))
    stats = RewriteStats(applied={r.name: 0 for r in ruleset}, rejected={r.name: {} for r in ruleset})
    recent: deque[str] = deque(maxlen=_RECENT)
    lost_uses: dict[ir.Value, None] = {}
    hops = max(ruleset.height, 1)
    present = {_op_key(node) for scope in scopes for node in scope.graph}
    usable = ruleset.usable(present)
    if explain is not None:
        tried = set(usable.names)
        for rule in ruleset:
            if rule.name not in tried:
                missing = next(a for a in rule.required if a.isdisjoint(present))
                explain(f"rule '{rule.name}': not tried, no {' or '.join(_op_label(k) for k in sorted(missing))} "
                        "node in the model")
    while queue:
        node = queue.pop()
        scope = by_graph.get(node.graph) if node.graph is not None else None
        if scope is None:
            continue
        for rule in usable.for_node(node):
            stats.attempts += 1
            outcome = attempt(rule, node, scope, namer)
            if isinstance(outcome, list):
                counts = stats.rejected[rule.name]
                reason = outcome[0].reason.value
                counts[reason] = counts.get(reason, 0) + 1
                if outcome[0].reason in CANDIDATE_REASONS:
                    why = stats.reasons.setdefault(rule.name, {})
                    summary = outcome[0].summary()
                    why[summary] = why.get(summary, 0) + 1
                if explain is not None:
                    explain(f"rule '{rule.name}' at {node_label(node)}: {outcome[0].text()}")
                continue
            if stats.rewrites >= limit:
                outcome.ctx.discard()
                raise _limit_error(limit, [*recent, rule.name][-_RECENT:])
            log.debug("rule '%s' rewrites %s", rule.name, node_label(node))
            change = commit(outcome.match, outcome.ctx, outcome.replacement, namer, rule.name)
            stats.rewrites += 1
            stats.applied[rule.name] += 1
            recent.append(rule.name)
            _requeue(queue, change, hops, ruleset.max_edges)
            new_types = {_op_key(n) for n in change.new_nodes} - present
            if new_types:
                present |= new_types
                usable = ruleset.usable(present)
            lost_uses.update(dict.fromkeys(v for v in change.lost_uses if v.producer() is None))
            break
    remove_unused_initializers(lost_uses)
    return stats
