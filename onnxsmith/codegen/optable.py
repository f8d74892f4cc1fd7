"""Operator tables: which (domain, op, version) an execution target runs.

A node ``domain::Op`` in a model importing ``domain`` at opset ``V`` resolves to the newest schema
version ``S <= V`` of ``Op`` (its *since-version*). A table holds kernels, each registered for a
closed range ``[first, last]`` of since-versions (``last == OPEN`` means "and later"). A kernel
runs the node when onnxruntime's own rule holds (``KernelRegistry::VerifyKernelDef``)::

    first == S  or  (first < S <= last and last != OPEN)

so an open-ended kernel only serves the exact schema version it was written for. Operators with
no kernel that are ONNX functions (HardSwish, CastLike, Mish...) are inlined by onnxruntime into
their body, and ``Constant`` nodes become initializers when the model loads; tables built for
onnxruntime count both as supported.

Three kinds of tables exist:

- ``kernel_registry_table(provider)``: the kernel registrations of the *installed* onnxruntime
  (``get_all_opkernel_def``), since-versions from its schema registry. Exact, for providers present
  in the installed build.
- ``standard_table()``: every non-deprecated schema of the standard ONNX domain in the installed
  ``onnx`` package, each version its own kernel.
- ``declared_table(...)``: hand-written data for providers we cannot query (the standard table minus
  documented exclusions, plus named contrib ops); an approximation, stated as such in ``source``.

What is read from the installed onnxruntime and onnx (kernel registrations, schema versions) is
kept on disk per installed build (:mod:`onnxsmith.codegen._table_cache`): a process whose tables
are cached never imports onnxruntime unless it runs a model.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from onnxsmith.codegen._table_cache import cached, native_build

__all__ = [
    "OPEN",
    "Kernel",
    "Lookup",
    "OpTable",
    "declared_table",
    "kernel_registry_table",
    "normalize_domain",
    "standard_table",
]

#: onnxruntime's end version for "this kernel and every later since-version" (INT_MAX).
OPEN = 2**31 - 1

OpId = tuple[str, str]  # (domain, op_type) with the default domain spelled ""


def normalize_domain(domain: str) -> str:
    """The default ONNX domain is ``""``; ``ai.onnx`` is its alias."""
    return "" if domain == "ai.onnx" else domain


@dataclass(frozen=True)
class Kernel:
    """One kernel registration: an op implemented for a range of since-versions."""

    domain: str
    op_type: str
    first: int
    last: int = OPEN
    type_constraints: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def serves(self, since_version: int) -> bool:
        """onnxruntime's matching rule (see the module docstring)."""
        return self.first == since_version or (self.first < since_version <= self.last and self.last != OPEN)

    def types(self, name: str) -> tuple[str, ...]:
        """Allowed types of a type parameter (e.g. ``"T1"`` -> ``("tensor(uint8)",)``); empty if unknown."""
        return dict(self.type_constraints).get(name, ())


class Lookup(Enum):
    """Outcome of looking an op up in a table."""

    SUPPORTED = "supported"
    UNKNOWN_OP = "unknown-op"
    NOT_IN_OPSET = "not-in-opset"
    NO_KERNEL = "no-kernel"


@dataclass(frozen=True)
class OpTable:
    """Kernels and schema versions of one execution target.

    Attributes:
        source: Where the data comes from, for reports ("onnxruntime 1.32.0 kernel registry...").
        kernels: Kernel registrations by (domain, op_type).
        since_versions: Ascending schema versions by (domain, op_type), to resolve since-versions.
        inlines_functions: Function ops without a kernel run as their body (onnxruntime does this).
    """

    source: str
    kernels: Mapping[OpId, tuple[Kernel, ...]] = field(repr=False)
    since_versions: Mapping[OpId, tuple[int, ...]] = field(repr=False)
    inlines_functions: bool = False

    def since_version(self, domain: str, op_type: str, opset: int) -> int | None:
        """The schema version a node at ``opset`` resolves to, or None if the op does not exist yet."""
        versions = self.since_versions.get((normalize_domain(domain), op_type), ())
        return max((v for v in versions if v <= opset), default=None)

    def lookup(self, domain: str, op_type: str, opset: int) -> Lookup:
        """Whether ``domain::op_type`` at ``opset`` runs on this target, and if not, why."""
        key = (normalize_domain(domain), op_type)
        if key not in self.since_versions:
            return Lookup.UNKNOWN_OP
        since = self.since_version(*key, opset)
        if since is None:
            return Lookup.NOT_IN_OPSET
        if any(k.serves(since) for k in self.kernels.get(key, ())):
            return Lookup.SUPPORTED
        if self.inlines_functions and (key == ("", "Constant") or _is_onnx_function(*key, opset)):
            return Lookup.SUPPORTED
        return Lookup.NO_KERNEL

    def kernels_for(self, domain: str, op_type: str, opset: int) -> tuple[Kernel, ...]:
        """The kernels serving ``domain::op_type`` at ``opset`` (their type constraints say which dtypes run)."""
        since = self.since_version(domain, op_type, opset)
        if since is None:
            return ()
        return tuple(k for k in self.kernels.get((normalize_domain(domain), op_type), ()) if k.serves(since))

    def ops(self, domain: str = "") -> frozenset[str]:
        """Names of the ops with at least one kernel in ``domain``."""
        domain = normalize_domain(domain)
        return frozenset(op for d, op in self.kernels if d == domain)


def _is_onnx_function(domain: str, op_type: str, opset: int) -> bool:
    import onnx.defs

    if domain not in ("", "ai.onnx.ml"):
        return False
    try:
        schema = onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return False
    return bool(schema.has_function or schema.has_context_dependent_function)


def _ranges(versions: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive schema versions as kernel ranges: [v_i, v_{i+1} - 1], the last one open."""
    ordered = sorted(set(versions))
    return [(v, (ordered[i + 1] - 1) if i + 1 < len(ordered) else OPEN) for i, v in enumerate(ordered)]


#: The native modules whose build identifies the installed onnxruntime and onnx (cache keys).
_ORT_NATIVE = ("onnxruntime", "capi.onnxruntime_pybind11_state")
_ONNX_NATIVE = ("onnx", "onnx_cpp2py_export")

# Cached values are plain JSON; their decoders check every item's type, so that a corrupt entry
# fails while it is read (and is recomputed) rather than at a later lookup.


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _item(items: list[Any], index: Any) -> Any:
    if not 0 <= _int(index) < len(items):
        raise IndexError(f"index {index} out of range")
    return items[index]


@functools.cache
def _ort_since_versions() -> Mapping[OpId, tuple[int, ...]]:
    """Schema versions of every op onnxruntime knows (all domains), by (domain, op_type)."""
    return cached("onnxruntime-schemas", native_build(*_ORT_NATIVE), _read_ort_since_versions, _decode_versions)


def _read_ort_since_versions() -> list[list[Any]]:
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    found: dict[OpId, set[int]] = {}
    for schema in ort_state.get_all_operator_schema():
        found.setdefault((normalize_domain(schema.domain), schema.name), set()).add(schema.since_version)
    return [[domain, op, sorted(versions)] for (domain, op), versions in found.items()]


def _decode_versions(rows: list[list[Any]]) -> dict[OpId, tuple[int, ...]]:
    return {(_str(domain), _str(op)): tuple(map(_int, versions)) for domain, op, versions in rows}


Registration = tuple[int, int, tuple[tuple[str, tuple[str, ...]], ...]]  # first, last, type constraints


@functools.cache
def kernel_registry_table(provider: str) -> OpTable:
    """The kernels the installed onnxruntime registers for ``provider`` (computed once, then cached).

    Only providers compiled into the installed build appear; an absent one yields an empty table.
    """
    version, registrations = cached(f"onnxruntime-kernels-{provider}", native_build(*_ORT_NATIVE),
                                    lambda: _read_kernel_registrations(provider), _decode_registrations)
    return OpTable(
        source=f"onnxruntime {version} kernel registry ({provider})",
        kernels={key: tuple(Kernel(*key, *r) for r in regs) for key, regs in registrations.items()},
        since_versions=_ort_since_versions(),
        inlines_functions=True,
    )


def _read_kernel_registrations(provider: str) -> dict[str, Any]:
    """onnxruntime's kernel definitions for ``provider`` as JSON data.

    Each kernel is ``[domain, op, first, last, c]`` where ``c`` indexes ``constraints``, a list of
    distinct type-constraint sets ``[[name, t], ...]`` sorted by name, and ``t`` indexes ``types``,
    the distinct lists of allowed types (in onnxruntime's order): most kernels share them.
    """
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    types: dict[tuple[str, ...], int] = {}
    constraints: dict[tuple[tuple[str, int], ...], int] = {}
    kernels = []
    for d in ort_state.get_all_opkernel_def():
        if d.provider != provider:
            continue
        constraint = tuple((name, types.setdefault(tuple(allowed), len(types)))
                           for name, allowed in sorted(d.type_constraints.items()))
        first, last = d.version_range
        kernels.append([normalize_domain(d.domain), d.op_name, first, last,
                        constraints.setdefault(constraint, len(constraints))])
    return {"version": onnxruntime.__version__, "types": [list(t) for t in types],
            "constraints": [[list(pair) for pair in c] for c in constraints], "kernels": kernels}


def _decode_registrations(value: dict[str, Any]) -> tuple[str, dict[OpId, list[Registration]]]:
    types = [tuple(map(_str, allowed)) for allowed in value["types"]]
    constraints = [tuple((_str(name), _item(types, t)) for name, t in c) for c in value["constraints"]]
    registrations: dict[OpId, list[Registration]] = {}
    for domain, op, first, last, c in value["kernels"]:
        registrations.setdefault((_str(domain), _str(op)), []).append((_int(first), _int(last), _item(constraints, c)))
    return _str(value["version"]), registrations


@functools.cache
def _standard_schemas() -> tuple[Mapping[OpId, tuple[int, ...]], Mapping[OpId, int]]:
    """Schema versions of the default ONNX domain (installed onnx package), and where ops got deprecated."""
    return cached("onnx-schemas", native_build(*_ONNX_NATIVE), _read_standard_schemas, _decode_standard_schemas)


def _read_standard_schemas() -> dict[str, list[list[Any]]]:
    import onnx.defs

    found: dict[str, set[int]] = {}
    deprecated_from: dict[str, int] = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain not in ("", "ai.onnx"):
            continue
        found.setdefault(schema.name, set()).add(schema.since_version)
        if schema.deprecated:
            deprecated_from[schema.name] = min(schema.since_version, deprecated_from.get(schema.name, OPEN))
    return {"versions": [[op, sorted(vs)] for op, vs in found.items()],
            "deprecated_from": [[op, v] for op, v in deprecated_from.items()]}


def _decode_standard_schemas(value: dict[str, Any]) -> tuple[dict[OpId, tuple[int, ...]], dict[OpId, int]]:
    versions = {("", _str(op)): tuple(map(_int, vs)) for op, vs in value["versions"]}
    deprecated_from = {("", _str(op)): _int(v) for op, v in value["deprecated_from"]}
    return versions, deprecated_from


@functools.cache
def standard_table() -> OpTable:
    """Standard ONNX (default domain) as defined by the installed ``onnx`` package."""
    import onnx

    versions, deprecated_from = _standard_schemas()
    kernels = {
        key: tuple(Kernel(*key, first, last) for first, last in _ranges(vs) if first < deprecated_from.get(key, OPEN))
        for key, vs in versions.items()
    }
    return OpTable(source=f"standard ONNX (onnx {onnx.__version__})", kernels=kernels, since_versions=versions)


def declared_table(source: str, *, exclude: Iterable[str] = (), contrib: Mapping[str, Iterable[str]] | None = None,
                   inlines_functions: bool = True) -> OpTable:
    """A hand-written table: standard ONNX minus ``exclude``, plus named ops of other domains.

    Args:
        source: Where the data comes from (cited in reports).
        exclude: Standard ops the target does not run.
        contrib: Ops of other domains the target runs, by domain (e.g. ``{"com.microsoft": [...]}``);
            their versions come from the installed onnxruntime's schema registry.
        inlines_functions: Whether function ops without a kernel are inlined (true under onnxruntime).
    """
    base = standard_table()
    excluded = set(exclude)
    kernels = {key: ks for key, ks in base.kernels.items() if key[1] not in excluded}
    since_versions = dict(base.since_versions)
    ort_versions = _ort_since_versions()
    for domain, ops in (contrib or {}).items():
        for op in ops:
            key = (normalize_domain(domain), op)
            if key not in ort_versions:
                raise ValueError(f"{domain}::{op} is not an operator known to onnxruntime")
            since_versions[key] = ort_versions[key]
            kernels[key] = tuple(Kernel(*key, first, last) for first, last in _ranges(ort_versions[key]))
    return OpTable(source=source, kernels=kernels, since_versions=since_versions, inlines_functions=inlines_functions)
