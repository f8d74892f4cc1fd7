"""A persistent cache of the tables derived from the installed onnxruntime and onnx packages.

Building the cpu target's op table imports onnxruntime (about 0.1 s and 20 MiB) and lists every
kernel definition and operator schema it holds (another 15 MiB the allocator keeps): in a dynamic
quantization of a small model, more than the passes themselves. The tables only depend on the
installed build, so each is written once as JSON and read back (a few ms) by later processes, which
then import onnxruntime only if they run it.

An entry is keyed by what determines it: the format version, the entry's name, the identity of
the installed build (path, size and modification time of the package's native module, found
without importing the package; a reinstall or an upgrade changes them) and that of the source file
of the function that computes the value (an upgrade of onnxsmith, or an edit of an editable
install, recomputes it). The file name carries a checksum of the key, and the key is stored in the
file and compared when it is read.

Location: ``$ONNXSMITH_CACHE_DIR``, else ``$XDG_CACHE_HOME/onnxsmith``, else ``~/.cache/onnxsmith``;
``ONNXSMITH_NO_CACHE=1`` turns the cache off. The cache never causes an error: a missing, corrupt,
stale or unreadable entry is computed afresh, and a write that fails is only logged (DEBUG).
Entries are written atomically (a temporary file renamed over the old one), so concurrent
processes read either a whole old entry or a whole new one. Writing an entry removes all but the
``KEEP_PER_NAME`` newest of its name, so that upgrades and edits do not pile entries up while a few
builds used in turn (virtual environments sharing a home) keep theirs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["CACHE_DIR_ENV", "FORMAT", "KEEP_PER_NAME", "NO_CACHE_ENV", "cache_dir", "cached", "cpu_identity",
           "native_build"]

log = logging.getLogger(__name__)

#: Bumped whenever the layout of an entry's value changes.
FORMAT = 1
CACHE_DIR_ENV = "ONNXSMITH_CACHE_DIR"
NO_CACHE_ENV = "ONNXSMITH_NO_CACHE"
#: Entries kept per name: the newest written.
KEEP_PER_NAME = 4

R = TypeVar("R")

#: What a stored entry may fail with when it is not what ``decode`` expects (a corrupt or foreign file).
_BAD_ENTRY = (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


def cache_dir() -> Path | None:
    """The folder of the cache; None when ``ONNXSMITH_NO_CACHE`` is set (to anything but 0) or no home is known."""
    if os.environ.get(NO_CACHE_ENV, "") not in ("", "0"):
        return None
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.path.expanduser("~")
        if home.startswith("~"):  # no home directory known: no cache rather than a folder named '~'
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "onnxsmith"


def native_build(package: str, module: str) -> dict[str, Any] | None:
    """Identity of an installed build: path, size and mtime of ``package``'s native ``module``.

    ``module`` is dotted and relative to the package (``"capi.onnxruntime_pybind11_state"``). The
    package is located without being imported. None if it or the module is not found.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    *folders, stem = module.split(".")
    for location in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(location, *folders, stem + suffix)
            try:
                stat = path.stat()
            except OSError:
                continue
            return {"module": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return None


def cpu_identity() -> dict[str, Any]:
    """Identity of this machine's CPU for entries that depend on it as well as on a build (onnxruntime's
    choice of kernels): the architecture and a checksum of the instruction-set flags (the first
    ``flags`` line of ``/proc/cpuinfo``; ``platform.processor()`` where there is none)."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):  # x86 / arm
                    flags = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    if not flags:
        import platform  # only here: processor() may run a program

        flags = platform.processor()
    return {"machine": os.uname().machine if hasattr(os, "uname") else os.environ.get("PROCESSOR_ARCHITECTURE", ""),
            "flags": f"{zlib.crc32(flags.encode()):08x}"}


def cached(name: str, build: Mapping[str, Any] | None, compute: Callable[[], Any],
           decode: Callable[[Any], R]) -> R:
    """``decode(compute())``, with ``compute``'s JSON value kept on disk for the same ``build``.

    Args:
        name: The entry (part of the file name; letters, digits and dashes).
        build: What determines the value (``native_build(...)``); None computes without caching.
        compute: Returns the value as plain JSON data; the file that defines it is part of the key.
        decode: Turns the value into the result; raises ``ValueError``/``TypeError``/``KeyError``/
            ``IndexError`` on data of the wrong shape, so that a corrupt entry is recomputed.
    """
    directory = cache_dir()
    code = _source_identity(compute) if directory is not None else None
    if build is None or code is None:
        return decode(compute())
    key = {"format": FORMAT, "name": name, "build": dict(build), "code": code}
    # crc32, not hashlib: importing hashlib loads OpenSSL (3.5 MiB). Two keys with one checksum only
    # take turns in the file, as the key inside is compared.
    path = directory / f"{name}-{zlib.crc32(json.dumps(key, sort_keys=True).encode()):08x}.json"
    try:
        with open(path, "rb") as f:
            stored = json.load(f)
        if stored["key"] == key:
            return decode(stored["value"])
        log.debug("cache entry %s is for another build; recomputing", path)
    except FileNotFoundError:
        pass
    except _BAD_ENTRY as e:
        log.debug("cache entry %s is unreadable (%s: %s); recomputing", path, type(e).__name__, e)
    value = compute()
    result = decode(value)
    if _write(path, {"key": key, "value": value}):
        _prune(path, name)
    return result


def _source_identity(function: Callable[..., Any]) -> dict[str, Any] | None:
    """Path, size and mtime of the file that defines ``function`` (or a callable object's class);
    None if it cannot be told, and then nothing is cached."""
    code = getattr(function, "__code__", None) or getattr(getattr(type(function), "__call__", None), "__code__", None)
    if code is None:
        return None
    try:
        stat = os.stat(code.co_filename)
    except OSError:
        return None
    return {"file": code.co_filename, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write(path: Path, entry: Mapping[str, Any]) -> bool:
    """Writes ``entry`` to ``path`` atomically; a failure (read-only folder, full disk) is only logged."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f, separators=(",", ":"))
        os.replace(temporary, path)
        temporary = None
        return True
    except OSError as e:
        log.debug("cannot write cache entry %s (%s); continuing without it", path, e)
        return False
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass


def _prune(written: Path, name: str) -> None:
    """Removes the entries of ``name`` but ``written`` and the ``KEEP_PER_NAME - 1`` others written last."""
    try:
        others = [p for p in written.parent.glob(f"{name}-????????.json") if p != written]
        others.sort(key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in others[KEEP_PER_NAME - 1:]:
            old.unlink()
    except OSError as e:  # another process pruned at the same time, or the folder went read-only
        log.debug("cannot prune cache entries %s-*.json in %s (%s)", name, written.parent, e)
