"""Errors of the rewrite engine: a rule set that does not converge, a rule that breaks its contract."""

from __future__ import annotations

from onnxsmith.errors import PassFailedError

__all__ = ["RewriteLimitError", "RuleError"]


class RewriteLimitError(PassFailedError):
    """The worklist driver hit its rewrite cap: some rules keep firing (they undo each other)."""


class RuleError(PassFailedError):
    """A rule's function raised or returned something the engine cannot apply."""
