"""Explaining why a rule does not apply at a node, without changing the model.

``explain(rule, model, "add0")`` runs the whole attempt (match, sharing check, ``check``, and
``rewrite``, whose replacement is then thrown away) and returns the reasons it fails, most
informative first: the failures that got furthest through the pattern, e.g.::

    ["input 0 of Add 'add0' is produced by Relu 'r', expected MatMul"]
    ["value 'mm_out' of MatMul 'mm' is used outside the match (2 consumers)"]
    ["declined: bias is not 1-D"]

An empty list means the rule applies there. During a pass the same text reaches
``PassContext.explain`` (see ``RewritePass``).
"""

from __future__ import annotations

import onnx_ir as ir

from onnxsmith.passes.rewrite.driver import attempt
from onnxsmith.passes.rewrite.rule import Rule
from onnxsmith.passes.rewrite.scope import Namer, model_scopes

__all__ = ["explain"]


def explain(rule: Rule, model: ir.Model, node_name: str) -> list[str]:
    """Why ``rule`` does not apply at the node named ``node_name`` ([] if it applies).

    The node is looked up in the main graph, its subgraphs and function bodies (first found).

    Raises:
        KeyError: No node has that name.
    """
    scopes = model_scopes(model)
    for scope in scopes:
        for node in scope.graph:
            if node.name == node_name:
                outcome = attempt(rule, node, scope, Namer(scopes))
                if isinstance(outcome, list):
                    return [failure.text() for failure in outcome]
                outcome.ctx.discard()
                return []
    raise KeyError(f"no node named '{node_name}' in the model")
