"""The pass contract: ``Pass``, its typed options, ``PassResult`` and ``PassContext``.

A pass is a class with a registered kebab-case ``name``, a docstring whose first line is its
one-line help, an ``Options`` dataclass (unknown options are an error), and
``run(model, ctx) -> PassResult``. It keeps no state between runs.

Properties are facts about a model that passes can need and establish, e.g. ``"shapes"``
(types and shapes inferred) or ``"calibration-ranges"``. A pass lists what it ``requires`` and
``provides``; ``preserves`` says which facts stay true after it changes the model (``ALL`` for
passes that only remove or reorder). Ordering constraints (``after``/``before``: names of passes
that must run earlier/later when both are in a pipeline) are checked before anything runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import onnx_ir as ir

from onnxsmith.errors import PassOptionError, did_you_mean

__all__ = [
    "ALL",
    "NoOptions",
    "Pass",
    "PassContext",
    "PassResult",
    "Tolerance",
    "parse_option_value",
]

#: Marker for ``preserves``: the pass keeps every property true.
ALL: frozenset[str] = frozenset({"*"})


@dataclass(frozen=True)
class Tolerance:
    """Numeric tolerance a pass promises: outputs within ``atol + rtol * |expected|``.

    Structural passes are exact up to float re-association (the default below).
    """

    rtol: float = 1e-5
    atol: float = 1e-6

    def __add__(self, other: Tolerance) -> Tolerance:
        return Tolerance(self.rtol + other.rtol, self.atol + other.atol)


EXACT = Tolerance(0.0, 0.0)


@dataclass
class NoOptions:
    """Options of a pass that takes none."""


@dataclass
class PassResult:
    """What a pass did: whether the model changed, and counters for the report."""

    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassContext:
    """Everything a pass may know besides the model; passed explicitly to every pass.

    Attributes:
        target: Name of the execution target (``generic``, ``cpu``, ``cuda``, ``tensorrt``).
        properties: Facts currently true of the model (see module docstring).
        data: Named artefacts produced by passes for later ones (e.g. calibration ranges).
        debug: Extra checks, such as catching a pass that lies about ``modified``.
        trace: Collected explanations (e.g. why a rewrite rule did not match), by pass name.
    """

    target: str = "generic"
    properties: set[str] = field(default_factory=set)
    data: dict[str, Any] = field(default_factory=dict)
    debug: bool = False
    trace: dict[str, list[str]] = field(default_factory=dict)

    def explain(self, pass_name: str, message: str) -> None:
        """Records an explanation for the report (bounded per pass)."""
        notes = self.trace.setdefault(pass_name, [])
        if len(notes) < 1000:
            notes.append(message)


class Pass:
    """Base class of all passes. Subclass it, set ``name``, write ``run``.

    Class attributes:
        name: Registered kebab-case name.
        Options: Dataclass of typed options; instances are built from ``**options``.
        requires / provides / preserves: Property contract (see module docstring).
        after / before: Names of passes that must run earlier / later when both are present.
        tolerance: Numeric tolerance the pass promises (used by ``--verify numeric`` and check_pass).
        idempotent: Running the pass twice in a row changes nothing the second time, so the
            manager skips a rerun when no pass changed the model since the last run.
        builds_new_program: The pass turns the model into another program that keeps the original
            outputs but adds inputs and outputs (a training graph). ``check_pass`` then checks that
            the original outputs keep their values, but not idempotence: running it again builds
            yet another program.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    requires: ClassVar[frozenset[str]] = frozenset()
    provides: ClassVar[frozenset[str]] = frozenset()
    preserves: ClassVar[frozenset[str]] = frozenset()
    after: ClassVar[tuple[str, ...]] = ()
    before: ClassVar[tuple[str, ...]] = ()
    tolerance: ClassVar[Tolerance] = Tolerance()
    idempotent: ClassVar[bool] = False
    builds_new_program: ClassVar[bool] = False

    def __init__(self, options: Any = None, **kwargs: Any) -> None:
        if options is not None and kwargs:
            raise TypeError("give either an Options instance or keyword options, not both")
        self.options = options if options is not None else build_options(self.name, self.Options, kwargs)

    @classmethod
    def summary(cls) -> str:
        """First line of the docstring: the one-line CLI help."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_context(self, ctx: PassContext) -> None:
        """Fails before the pipeline runs when ``ctx`` lacks what the pass cannot do without.

        The pass manager calls it for every pass before the first one runs, so a missing input
        (calibration data, say) is reported at once rather than after the passes before it.
        The default checks nothing.

        Raises:
            OnnxsmithError: Naming what is missing and how to give it.
        """

    def __call__(self, model: ir.Model, ctx: PassContext | None = None) -> PassResult:
        """Runs the pass alone (no verification); handy in notebooks and tests."""
        return self.run(model, ctx or PassContext())

    def spec(self) -> str:
        """Pipeline-string form of this pass with its non-default options."""
        if not dataclasses.is_dataclass(self.options):
            return self.name
        parts = []
        for f in dataclasses.fields(self.options):
            value = getattr(self.options, f.name)
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
            if value != default:
                shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value).lower() if isinstance(value, bool) else value
                parts.append(f"{f.name.replace('_', '-')}={shown}")
        return f"{self.name}{{{';'.join(parts)}}}" if parts else self.name

    def __repr__(self) -> str:
        return f"<pass {self.spec()}>"


def option_fields(options_cls: type) -> dict[str, dataclasses.Field]:
    """Option fields by kebab-case name."""
    if not dataclasses.is_dataclass(options_cls):
        return {}
    return {f.name.replace("_", "-"): f for f in dataclasses.fields(options_cls)}


def build_options(pass_name: str, options_cls: type, raw: Mapping[str, Any]) -> Any:
    """Builds an Options instance from keyword or string values, with helpful errors."""
    fields = option_fields(options_cls)
    hints = typing.get_type_hints(options_cls) if dataclasses.is_dataclass(options_cls) else {}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kebab = key.replace("_", "-")
        if kebab not in fields:
            known = ", ".join(fields) or "none"
            hint = did_you_mean(kebab, list(fields)) if fields else "this pass takes no options"
            raise PassOptionError(
                f"pass '{pass_name}' has no option '{kebab}' (options: {known})", hint)
        f = fields[kebab]
        values[f.name] = parse_option_value(pass_name, kebab, hints.get(f.name, str), value)
    try:
        return options_cls(**values)
    except (TypeError, ValueError) as e:
        raise PassOptionError(f"bad options for pass '{pass_name}': {e}") from e


_KIND = {int: "an integer", float: "a number"}


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def parse_option_value(pass_name: str, option: str, tp: Any, value: Any) -> Any:
    """Converts ``value`` (often a string from the CLI) to the option's annotated type."""
    tp = _strip_optional(tp)
    origin = typing.get_origin(tp)
    where = f"option '{option}' of pass '{pass_name}'"
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        text = value if not isinstance(value, str) else value.strip()
        if text not in allowed:
            shown = ", ".join("'' (empty)" if a == "" else str(a) for a in allowed)
            raise PassOptionError(f"{where} must be one of {shown}, got '{value}'")
        return text
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        args = typing.get_args(tp)
        item_tp = args[0] if args else str
        items = value if isinstance(value, (list, tuple, set, frozenset)) else [
            v for v in str(value).split(",") if v.strip() != ""]
        converted = [parse_option_value(pass_name, option, item_tp, v) for v in items]
        return (origin or list)(converted) if origin is not None else list(converted)
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise PassOptionError(f"{where} must be true or false, got '{value}'")
    if tp in (int, float):
        if isinstance(value, bool):
            raise PassOptionError(f"{where} must be {_KIND[tp]}, got '{value}'")
        try:
            number = float(value) if isinstance(value, str) else value
            if tp is int:
                if float(number) != int(number):
                    raise ValueError
                return int(number)
            return float(number)
        except (TypeError, ValueError, OverflowError):
            raise PassOptionError(f"{where} must be {_KIND[tp]}, got '{value}'") from None
    if tp is str or tp is Any:
        return str(value) if not isinstance(value, str) else value.strip()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    try:
        return tp(value)
    except Exception:
        raise PassOptionError(f"{where} has an invalid value '{value}'") from None


def function_pass(fn: Callable[..., Any], name: str, options: type = NoOptions, **contract: Any) -> type[Pass]:
    """Wraps ``fn(model, ctx[, options]) -> PassResult | bool | None`` into a Pass subclass."""
    import inspect

    takes_options = len(inspect.signature(fn).parameters) >= 3

    def run(self: Pass, model: ir.Model, ctx: PassContext) -> PassResult:
        out = fn(model, ctx, self.options) if takes_options else fn(model, ctx)
        if isinstance(out, PassResult):
            return out
        if out is None:
            raise TypeError(f"pass '{name}' must return a PassResult or a bool (modified), got None")
        return PassResult(bool(out))

    attrs: dict[str, Any] = {
        "name": name,
        "Options": options,
        "run": run,
        "__doc__": fn.__doc__,
        "__module__": fn.__module__,
        "__qualname__": fn.__qualname__,
    }
    for key, value in contract.items():
        if key in ("requires", "provides", "preserves"):
            value = ALL if value == ALL or value == "all" else frozenset(value)
        elif key in ("after", "before"):
            value = tuple(value)
        attrs[key] = value
    return type(fn.__name__, (Pass,), attrs)
