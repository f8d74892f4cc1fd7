"""The pass contract as a property test.

For a model ``m`` (prepared by the passes that provide what the pass ``requires``) and the pass
``P``, with ``P(m)`` the model after one run:

1. *honest*: ``P`` returns a PassResult, and if it reports ``modified=False`` then ``P(m) == m``;
2. *structure*: ``P(m)`` passes the structural verifier, and the ONNX checker at the level ``m``
   passes it (full shape-inference check when ``m`` passes that one);
3. *numeric*: onnxruntime runs ``P(m)``, and every output of ``m`` is an output of ``P(m)`` (by
   name) that matches within ``P.tolerance`` on generated inputs;
4. *idempotent*: a second run reports ``modified=False`` and ``P(P(m)) == P(m)`` (not for passes that
   build a new program, such as a training graph: ``Pass.builds_new_program``);
5. *round trip*: ``onnxsmith.ir.save`` then ``load`` gives back ``P(m)``.

Equality of models is equality of their serialized protos; failures show a diff of the ONNX
text. :func:`check_pass` runs the contract over hypothesis-generated models (hypothesis shrinks a
failing model to a small one); :func:`check_contract` runs it on one given model.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx_ir as ir

from onnxsmith.errors import OnnxsmithError, PipelineError, first_line
from onnxsmith.passes.base import Pass, PassContext, PassResult, Tolerance
from onnxsmith.verify._session import run_model
from onnxsmith.verify.compare import compare_outputs
from onnxsmith.verify.inputs import generate_inputs
from onnxsmith.verify.structural import structure_problems

if TYPE_CHECKING:
    from hypothesis import settings as Settings
    from hypothesis.strategies import SearchStrategy

__all__ = ["PassContractViolation", "check_contract", "check_pass", "default_context"]

ContextFactory = Callable[[ir.Model], PassContext]


class PassContractViolation(AssertionError):
    """A pass broke one clause of its contract on a model.

    Attributes:
        pass_name: The pass.
        clause: ``honest``, ``runs``, ``structure``, ``numeric``, ``idempotent`` or ``round-trip``.
        detail: One line saying what went wrong.
    """

    def __init__(self, pass_name: str, clause: str, detail: str, before: str, after: str | None = None,
                 *, run: str = "the pass") -> None:
        self.pass_name, self.clause, self.detail = pass_name, clause, detail
        parts = [f"pass '{pass_name}' broke its contract ({clause}): {detail}",
                 f"--- model before {run} ---", before]
        if after is not None:
            parts += [f"--- change made by {run} (unified diff of the ONNX text) ---", _diff(before, after)]
        super().__init__("\n".join(parts))


def _diff(before: str, after: str) -> str:
    lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), "before", "after", lineterm="", n=1))
    return "\n".join(lines) if lines else "(no textual difference: doc strings, metadata or value_info order)"


def _text(model: ir.Model) -> str:
    return ir.to_onnx_text(model)


def _fingerprint(model: ir.Model) -> bytes:
    return ir.to_proto(model).SerializeToString(deterministic=True)


def _clone(model: ir.Model) -> ir.Model:
    return ir.serde.deserialize_model(ir.to_proto(model))


def _instantiate(pass_: Pass | type[Pass] | str, options: Mapping[str, Any] | None) -> Pass:
    if isinstance(pass_, Pass):
        if options:
            raise TypeError("options= applies to a pass class or name, not to a configured Pass instance")
        return pass_
    if isinstance(pass_, str):
        from onnxsmith.passes.registry import get_pass

        pass_ = get_pass(pass_)
    if isinstance(pass_, type) and issubclass(pass_, Pass):
        return pass_(**dict(options or {}))
    raise TypeError(f"check_pass needs a Pass instance, a Pass subclass or a registered name, not {pass_!r}")


def default_context(p: Pass) -> ContextFactory:
    """A context factory that runs, for each property ``p`` requires, the first registered provider."""
    if not p.requires:
        return lambda model: PassContext()
    from onnxsmith.passes.manager import PassManager
    from onnxsmith.passes.registry import list_passes

    providers: list[Pass] = []
    for prop in sorted(p.requires):
        names = [name for name, cls in list_passes().items() if prop in cls.provides]
        if not names:
            raise PipelineError(f"pass '{p.name}' requires '{prop}', which no registered pass provides",
                                "give check_pass a context= factory that establishes it")
        providers.append(list_passes()[names[0]]())

    def prepare(model: ir.Model) -> PassContext:
        ctx = PassContext()
        PassManager(providers, verify="structural").run(model, ctx)
        return ctx

    return prepare


def _checker_level(model: ir.Model) -> bool | None:
    """True if the model passes the full ONNX check, False if only the basic one, None if neither."""
    proto = ir.to_proto(model)
    for full in (True, False):
        try:
            onnx.checker.check_model(proto, full_check=full)
            return full
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError):
            continue
    return None


def check_contract(pass_: Pass | type[Pass] | str, model: ir.Model, *, options: Mapping[str, Any] | None = None,
                   tolerance: Tolerance | None = None, context: ContextFactory | None = None,
                   seed: int = 0) -> None:
    """Checks the pass contract (module docstring) on one model; the model is not changed.

    Args:
        pass_: A Pass instance, a Pass subclass or a registered pass name.
        model: The model to run the pass on.
        options: Options for a pass given as a class or name.
        tolerance: Numeric tolerance; the pass's own ``tolerance`` by default.
        context: Builds the PassContext for a model (and may prepare the model in place); by
            default the passes providing what the pass requires are run first.
        seed: Seed of the generated inputs.

    Raises:
        PassContractViolation: Naming the clause, with the model's text and the pass's change.
    """
    p = _instantiate(pass_, options)
    _check(p, _clone(model), tolerance or p.tolerance, (context or default_context(p)), seed)


def _run(p: Pass, model: ir.Model, ctx: PassContext, before: str, run: str = "the pass") -> PassResult:
    try:
        result = p.run(model, ctx)
    except Exception as e:
        kind = "" if isinstance(e, OnnxsmithError) else f"{type(e).__name__}: "
        raise PassContractViolation(p.name, "runs", f"the pass raised {kind}{e}", before, run=run) from e
    if not isinstance(result, PassResult):
        raise PassContractViolation(p.name, "honest", f"run() returned {result!r} instead of a PassResult", before,
                                    run=run)
    return result


def _check(p: Pass, model: ir.Model, tolerance: Tolerance, context: ContextFactory, seed: int) -> None:
    ctx = context(model)
    before_text, before_print = _text(model), _fingerprint(model)
    original = _clone(model)
    checker_level = _checker_level(original)
    inputs = generate_inputs(original, seed=seed)
    expected = run_model(original, inputs)

    first = _run(p, model, ctx, before_text)
    after_text, after_print = _serialized(p, model, before_text)

    def violation(clause: str, detail: str) -> PassContractViolation:
        return PassContractViolation(p.name, clause, detail, before_text, after_text)

    if not first.modified and after_print != before_print:
        raise violation("honest", "reported modified=False but changed the model")
    _check_structure(model, checker_level, violation)
    _check_numeric(model, original, inputs, expected, tolerance, violation)
    if not p.builds_new_program:
        _check_idempotent(p, model, ctx, after_text, after_print)
    _check_round_trip(p, model, after_text, after_print)


def _serialized(p: Pass, model: ir.Model, before: str) -> tuple[str, bytes]:
    """The text and fingerprint of the model a pass produced (failing if it cannot be serialized)."""
    try:
        return _text(model), _fingerprint(model)
    except Exception as e:
        raise PassContractViolation(p.name, "structure", f"the result cannot be serialized: "
                                    f"{type(e).__name__}: {e}", before) from e


def _check_structure(model: ir.Model, checker_level: bool | None,
                     violation: Callable[[str, str], PassContractViolation]) -> None:
    problems = structure_problems(model, limit=1)
    if problems:
        raise violation("structure", problems[0])
    if checker_level is None:
        return
    try:
        onnx.checker.check_model(ir.to_proto(model), full_check=checker_level)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise violation("structure", f"the ONNX checker rejects the result: {first_line(e)}") from e


def _check_idempotent(p: Pass, model: ir.Model, ctx: PassContext, text: str, fingerprint: bytes) -> None:
    second = _run(p, model, ctx, text, "the second run")
    again_text, again_print = _serialized(p, model, text)
    changed = again_print != fingerprint
    if second.modified or changed:
        if not second.modified:
            detail = "a second run changed the model but reported modified=False"
        else:
            detail = "a second run reported modified=True" + ("" if changed else " without changing anything")
        raise PassContractViolation(p.name, "idempotent", detail, text, again_text, run="the second run")


def _check_numeric(model: ir.Model, original: ir.Model, inputs: Mapping[str, np.ndarray],
                   expected: list[np.ndarray], tolerance: Tolerance,
                   violation: Callable[[str, str], PassContractViolation]) -> None:
    names = [v.name for v in model.graph.outputs]
    missing = [v.name for v in original.graph.outputs if v.name not in names]
    if missing:
        raise violation("numeric", f"graph output '{missing[0]}' is gone")
    try:
        actual = run_model(model, {**generate_inputs(model), **inputs})
    except OnnxsmithError as e:
        raise violation("numeric", f"after the pass, {e.message}") from e
    by_name = dict(zip(names, actual))
    wanted = [v.name for v in original.graph.outputs]
    bad = [d for d in compare_outputs(expected, [by_name[n] for n in wanted], wanted, tolerance) if not d.ok]
    if bad:
        tol = f"tolerance rtol={tolerance.rtol:g}, atol={tolerance.atol:g}"
        raise violation("numeric", f"{bad[0].describe()} ({tol})")


def _check_round_trip(p: Pass, model: ir.Model, text: str, fingerprint: bytes) -> None:
    from onnxsmith.ir import load, save

    with tempfile.TemporaryDirectory(prefix="onnxsmith-contract-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        save(model, path)
        loaded = load(path, check=False)
        loaded_text = _text(loaded)
        same = loaded_text == text and _fingerprint(loaded) == fingerprint
    if not same:
        raise PassContractViolation(p.name, "round-trip", "save then load changed the model", text, loaded_text,
                                    run="save and load")


def check_pass(pass_: Pass | type[Pass] | str, *, models: SearchStrategy[ir.Model] | None = None,
               max_examples: int = 25, options: Mapping[str, Any] | None = None,
               tolerance: Tolerance | None = None, context: ContextFactory | None = None,
               settings: Settings | None = None) -> None:
    """Property-tests the pass contract on hypothesis-generated models.

    Call it from a test function; it raises on the first (shrunk) counterexample::

        def test_my_pass():
            check_pass("my-pass", max_examples=50)

    Args:
        pass_: A Pass instance, a Pass subclass or a registered pass name.
        models: A hypothesis strategy of models; ``onnxsmith.verify.strategies.models()`` by default.
        max_examples: How many models to try.
        options: Options for a pass given as a class or name.
        tolerance: Numeric tolerance; the pass's own ``tolerance`` by default.
        context: See :func:`check_contract`.
        settings: A ``hypothesis.settings`` object to start from (e.g. a registered profile).

    Raises:
        PassContractViolation: For the smallest failing model hypothesis found.
    """
    import hypothesis
    from hypothesis import HealthCheck

    from onnxsmith.verify.strategies import models as default_models

    p = _instantiate(pass_, options)
    tol = tolerance or p.tolerance
    prepare = context or default_context(p)
    strategy = models if models is not None else default_models()
    config = hypothesis.settings(settings or hypothesis.settings(), max_examples=max_examples, deadline=None,
                                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

    @config
    @hypothesis.given(model=strategy)
    def contract_holds(model: ir.Model) -> None:
        _check(p, model, tol, prepare, seed=0)

    contract_holds()
