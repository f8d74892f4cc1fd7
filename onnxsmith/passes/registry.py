"""The registry of passes and named pipelines, and plugin discovery.

Built-in passes register themselves when their module is imported. ``onnxsmith.passes`` imports
the cleanup passes and *defers* the others (``defer_builtins``): their names are known from the
start (for suggestions, ``is_known``, a user's registration of the same name) and their module is
imported on the first lookup of one of them or on a listing, so that a run imports only the passes
it uses. Third-party passes arrive through the entry-point group ``onnxsmith.passes`` (each entry
point names a module or an object to import; importing it registers its passes) or through
``--load MODULE_OR_FILE``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxsmith.errors import PipelineError, did_you_mean
from onnxsmith.passes.base import NoOptions, Pass, function_pass

__all__ = [
    "Pipeline",
    "defer_builtins",
    "get_pass",
    "get_pipeline",
    "list_passes",
    "list_pipelines",
    "load_plugin",
    "load_entry_points",
    "register_pass",
    "register_pipeline",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "onnxsmith.passes"

_PASSES: dict[str, type[Pass]] = {}
_PIPELINES: dict[str, Pipeline] = {}
#: Built-in passes and pipelines not registered yet, by name: the module whose import registers them.
_DEFERRED: dict[str, str] = {}
_entry_points_loaded = False


@dataclass(frozen=True)
class Pipeline:
    """A named, documented sequence of passes (a pipeline string)."""

    name: str
    spec: str
    help: str


def _check_name(name: str) -> None:
    if not name or name != name.lower() or " " in name or "," in name or "{" in name:
        raise ValueError(f"pass/pipeline names are kebab-case without spaces, commas or braces: '{name}'")


def register_pass(name_or_cls: Any = None, *, name: str | None = None, options: type = NoOptions,
                  replace: bool = False, **contract: Any) -> Any:
    """Registers a pass class, or turns a function into a registered pass.

    Usable as ``@register_pass`` on a ``Pass`` subclass with a ``name``, or as
    ``@register_pass("my-pass")`` on a function ``fn(model, ctx[, options]) -> bool | PassResult``
    whose docstring's first line is the help; ``options=`` gives its Options dataclass and
    ``requires=``, ``provides=``, ``preserves=``, ``after=``, ``before=``, ``tolerance=`` its contract.
    """

    def register(obj: Any, pass_name: str | None) -> Any:
        if isinstance(obj, type) and issubclass(obj, Pass):
            cls = obj
            if pass_name:
                cls.name = pass_name
        elif callable(obj):
            if not pass_name:
                pass_name = obj.__name__.replace("_", "-")
            cls = function_pass(obj, pass_name, options, **contract)
        else:
            raise TypeError(f"cannot register {obj!r} as a pass")
        _check_name(cls.name)
        _resolve(cls.name)  # a deferred built-in of this name registers first
        if not cls.summary():
            raise ValueError(f"pass '{cls.name}' needs a docstring: its first line is the CLI help")
        if not replace and cls.name in _PASSES and _PASSES[cls.name] is not cls:
            existing = _PASSES[cls.name]
            if (existing.__module__, existing.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(f"a pass named '{cls.name}' is already registered by {existing.__module__}")
        if cls.name in _PIPELINES:
            raise ValueError(f"'{cls.name}' is already the name of a pipeline")
        _PASSES[cls.name] = cls
        return obj if isinstance(obj, type) else cls

    if isinstance(name_or_cls, str):
        return lambda obj: register(obj, name_or_cls)
    if name_or_cls is None:
        return lambda obj: register(obj, name)
    return register(name_or_cls, name)


def register_pipeline(name: str, spec: str, help: str) -> Pipeline:
    """Registers a named pipeline, e.g. ``register_pipeline("cleanup", "a,b,c", "...")``."""
    _check_name(name)
    _resolve(name)
    if name in _PASSES:
        raise ValueError(f"'{name}' is already the name of a pass")
    pipeline = Pipeline(name, spec, help)
    _PIPELINES[name] = pipeline
    return pipeline


def defer_builtins(modules: dict[str, str]) -> None:
    """Declares built-in passes and pipelines by name (``{name: module}``) without importing them.

    Importing ``module`` must register ``name``; it happens on the first ``get_pass``/``get_pipeline``
    of any name of that module, on ``list_passes``/``list_pipelines``, or when something else
    registers the same name (which then meets the built-in, as if it had been imported eagerly).
    """
    for name, module in modules.items():
        if name not in _PASSES and name not in _PIPELINES:
            _DEFERRED[name] = module


def _resolve(name: str | None) -> None:
    """Imports the module that registers the deferred built-in ``name``, if there is one."""
    module = _DEFERRED.get(name) if name else None
    if module is None:
        return
    for other in [n for n, m in _DEFERRED.items() if m == module]:
        del _DEFERRED[other]  # before importing: the module's own registrations must not resolve again
    importlib.import_module(module)


def _resolve_all() -> None:
    while _DEFERRED:
        _resolve(next(iter(_DEFERRED)))


def unregister(name: str) -> None:
    """Removes a pass or pipeline (for tests and plugin reloads)."""
    _DEFERRED.pop(name, None)
    _PASSES.pop(name, None)
    _PIPELINES.pop(name, None)


def load_entry_points() -> None:
    """Imports every plugin declared in the ``onnxsmith.passes`` entry-point group (once)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must not break the tool
            log.warning("plugin '%s' (%s) failed to load: %s", ep.name, ep.value, e)
            continue
        if isinstance(obj, type) and issubclass(obj, Pass) and obj.name not in _PASSES and obj.name not in _DEFERRED:
            register_pass(obj)


def load_plugin(spec: str) -> None:
    """Imports a module by dotted name or a ``.py`` file path so that its passes register."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise PipelineError(f"plugin file not found: {spec}", "check the --load path")
            mod_name = f"onnxsmith_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise PipelineError(f"cannot import plugin file {spec}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except PipelineError:
        raise
    except ModuleNotFoundError as e:
        raise PipelineError(f"cannot import plugin '{spec}': {e}", "check the module name and PYTHONPATH") from e
    except Exception as e:
        raise PipelineError(f"plugin '{spec}' failed while importing: {type(e).__name__}: {e}") from e


def _ensure_builtins() -> None:
    import onnxsmith.passes  # noqa: F401  (registers built-in passes)


def get_pass(name: str) -> type[Pass]:
    """The pass class registered under ``name``; a PipelineError with a suggestion otherwise."""
    _ensure_builtins()
    _resolve(name)
    if name not in _PASSES:
        load_entry_points()
    if name not in _PASSES:
        if name in _PIPELINES:
            raise PipelineError(f"'{name}' is a pipeline, not a pass")
        raise PipelineError(f"unknown pass '{name}'", did_you_mean(name, [*_PASSES, *_PIPELINES, *_DEFERRED]))
    return _PASSES[name]


def get_pipeline(name: str) -> Pipeline | None:
    _ensure_builtins()
    _resolve(name)
    if name not in _PIPELINES and name not in _PASSES:
        load_entry_points()
    return _PIPELINES.get(name)


def list_passes() -> dict[str, type[Pass]]:
    _ensure_builtins()
    _resolve_all()
    load_entry_points()
    return dict(sorted(_PASSES.items()))


def list_pipelines() -> dict[str, Pipeline]:
    _ensure_builtins()
    _resolve_all()
    load_entry_points()
    return dict(sorted(_PIPELINES.items()))


def is_known(name: str) -> bool:
    _ensure_builtins()
    return name in _PASSES or name in _PIPELINES or name in _DEFERRED


