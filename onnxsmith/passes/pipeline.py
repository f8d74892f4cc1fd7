"""Pipeline strings: parsing, expansion of named pipelines, and order checking.

Grammar::

    pipeline := item ("," item)*
    item     := NAME | NAME "{" options "}"
    options  := option ((";" | " " | ",") option)*
    option   := KEY "=" VALUE ("," VALUE)*      (a list: later comma parts without "=")

Examples: ``cleanup``, ``fold-constants{max-size=1048576},cse``,
``fuse{rules=conv-bn,gelu;max-iterations=10}``. Named pipelines expand in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from onnxsmith.errors import PipelineError
from onnxsmith.passes import registry
from onnxsmith.passes.base import ALL, Pass

__all__ = ["parse_pipeline", "build_pipeline", "check_order", "suggest_order", "pipeline_string"]

_MAX_DEPTH = 16


def _split_top_level(text: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
            if depth > 1:
                raise PipelineError(f"nested braces in pipeline '{text}'", "options are key=value inside one pair of braces")
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '}}' in pipeline '{text}'")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise PipelineError(f"missing '}}' in pipeline '{text}'")
    items.append(text[start:])
    return items


def _parse_options(name: str, body: str) -> dict[str, str | list[str]]:
    options: dict[str, str | list[str]] = {}
    current: str | None = None
    for chunk in body.replace(";", " ").split():
        for part in chunk.split(","):
            if not part:
                continue
            if "=" in part:
                key, _, value = part.partition("=")
                key = key.strip()
                if not key:
                    raise PipelineError(f"empty option name in '{name}{{{body}}}'")
                if key in options:
                    raise PipelineError(f"option '{key}' given twice for pass '{name}'")
                options[key] = value.strip()
                current = key
            elif current is None:
                raise PipelineError(
                    f"option '{part}' of pass '{name}' has no value", f"write {part}=VALUE")
            else:
                prev = options[current]
                options[current] = [*(prev if isinstance(prev, list) else [prev]), part]
    return {k: ",".join(v) if isinstance(v, list) else v for k, v in options.items()}


def parse_pipeline(text: str) -> list[tuple[str, dict[str, str]]]:
    """Splits a pipeline string into ``(name, raw options)`` items without resolving names."""
    if text is None or not text.strip():
        raise PipelineError("empty pipeline", "give passes, e.g. --passes cleanup")
    items = []
    for raw in _split_top_level(text.strip()):
        raw = raw.strip()
        if not raw:
            raise PipelineError(f"empty item in pipeline '{text}'", "remove the doubled comma")
        if "{" in raw:
            name, _, rest = raw.partition("{")
            if not rest.endswith("}"):
                raise PipelineError(f"text after '}}' in '{raw}'")
            options = _parse_options(name.strip(), rest[:-1])
        else:
            name, options = raw, {}
        items.append((name.strip(), options))
    return items


def _expand(text: str, depth: int = 0) -> list[tuple[str, dict[str, str]]]:
    if depth > _MAX_DEPTH:
        raise PipelineError(f"pipelines nest deeper than {_MAX_DEPTH} levels", "a pipeline includes itself")
    out = []
    for name, options in parse_pipeline(text):
        pipeline = registry.get_pipeline(name)
        if pipeline is not None:
            if options:
                raise PipelineError(
                    f"pipeline '{name}' takes no options",
                    f"list its passes with options instead: {pipeline.spec}")
            out.extend(_expand(pipeline.spec, depth + 1))
        else:
            out.append((name, options))
    return out


def build_pipeline(text: str | Sequence[Pass | str]) -> list[Pass]:
    """Resolves a pipeline string (or a list of passes/strings) to configured Pass instances."""
    if isinstance(text, str):
        items: Iterable[Pass | str] = [text]
    else:
        items = text
    passes: list[Pass] = []
    for item in items:
        if isinstance(item, Pass):
            passes.append(item)
            continue
        for name, options in _expand(item):
            passes.append(registry.get_pass(name)(**options))
    if not passes:
        raise PipelineError("empty pipeline", "give passes, e.g. --passes cleanup")
    return passes


def pipeline_string(passes: Sequence[Pass]) -> str:
    """The resolved pipeline as a string (printed before running)."""
    return ",".join(p.spec() for p in passes)


def suggest_order(passes: Sequence[Pass]) -> list[Pass]:
    """A stable reordering that satisfies every after/before constraint (Kahn's algorithm)."""
    n = len(passes)
    edges: dict[int, set[int]] = {i: set() for i in range(n)}
    for i, p in enumerate(passes):
        for j, q in enumerate(passes):
            if i != j and (q.name in p.after or p.name in q.before):
                edges[j].add(i)  # q before p
    indegree = {i: 0 for i in range(n)}
    for j in edges:
        for i in edges[j]:
            indegree[i] += 1
    ready = sorted(i for i in range(n) if indegree[i] == 0)
    order: list[int] = []
    while ready:
        j = ready.pop(0)
        order.append(j)
        for i in sorted(edges[j]):
            indegree[i] -= 1
            if indegree[i] == 0:
                ready.append(i)
                ready.sort()
    if len(order) != n:
        raise PipelineError("the ordering constraints of these passes form a cycle: "
                            + ", ".join(passes[i].name for i in range(n) if i not in order))
    return [passes[i] for i in order]


def _providers(prop: str) -> list[str]:
    return [name for name, cls in registry.list_passes().items() if prop in cls.provides]


def check_order(passes: Sequence[Pass], properties: Iterable[str] = ()) -> None:
    """Fails fast when a pass runs before one it must follow, or lacks a required property."""
    for i, p in enumerate(passes):
        for j, q in enumerate(passes):
            if j > i and (q.name in p.after or p.name in q.before):
                good = pipeline_string(suggest_order(passes))
                raise PipelineError(
                    f"pass '{p.name}' must run after '{q.name}'", f"suggested order: {good}")
    have = set(properties)
    for i, p in enumerate(passes):
        missing = sorted(p.requires - have)
        if missing:
            prop = missing[0]
            providers = _providers(prop)
            if providers:
                fixed = [*(q.spec() for q in passes[:i]), providers[0], *(q.spec() for q in passes[i:])]
                remedy = f"run '{providers[0]}' before it: {','.join(fixed)}"
            else:
                remedy = "no registered pass provides it"
            raise PipelineError(f"pass '{p.name}' requires '{prop}', which no earlier pass provides", remedy)
        have = have_after(p, have)


def have_after(p: Pass, have: set[str]) -> set[str]:
    """Properties true after ``p`` runs (assuming it changes the model)."""
    kept = set(have) if p.preserves == ALL else have & set(p.preserves)
    return kept | set(p.provides)
