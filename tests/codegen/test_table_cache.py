"""The on-disk cache of the tables read from onnxruntime and onnx: hits equal fresh tables, and a bad
cache (corrupt, stale, unwritable, disabled) only costs a recomputation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onnxsmith.codegen import _table_cache
from onnxsmith.codegen._table_cache import (
    CACHE_DIR_ENV,
    KEEP_PER_NAME,
    NO_CACHE_ENV,
    cache_dir,
    cached,
    native_build,
)
from onnxsmith.codegen.optable import (
    OpTable,
    _ort_since_versions,
    _standard_schemas,
    kernel_registry_table,
)

BUILD = {"module": "/somewhere/native.so", "size": 10, "mtime_ns": 1}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(directory))
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    return directory


class Counter:
    """A compute function that counts its calls."""

    def __init__(self, value):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


def _decode(value):
    return {name: int(number) for name, number in value.items()}


def _entry(directory: Path) -> Path:
    (path,) = directory.glob("*.json")
    return path


def test_second_read_is_a_hit_and_equals_the_computation(cache):
    compute = Counter({"a": 1, "b": 2})
    assert cached("entry", BUILD, compute, _decode) == {"a": 1, "b": 2}
    assert cached("entry", BUILD, compute, _decode) == {"a": 1, "b": 2}
    assert compute.calls == 1
    stored = json.loads(_entry(cache).read_text())
    assert stored["key"]["build"] == BUILD and stored["value"] == {"a": 1, "b": 2}
    assert not list(cache.glob("*.tmp"))  # the temporary file was renamed


@pytest.mark.parametrize("content", [b"", b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b'{"key": 1}'])
def test_a_corrupt_entry_is_recomputed_and_rewritten(cache, content):
    cached("entry", BUILD, Counter({"a": 1}), _decode)
    _entry(cache).write_bytes(content)
    compute = Counter({"a": 1})
    assert cached("entry", BUILD, compute, _decode) == {"a": 1}
    assert compute.calls == 1
    assert json.loads(_entry(cache).read_text())["value"] == {"a": 1}


def test_an_entry_the_decoder_rejects_is_recomputed(cache):
    cached("entry", BUILD, Counter({"a": 1}), _decode)
    path = _entry(cache)
    stored = json.loads(path.read_text())
    stored["value"] = {"a": "not a number"}
    path.write_text(json.dumps(stored))
    compute = Counter({"a": 1})
    assert cached("entry", BUILD, compute, _decode) == {"a": 1}
    assert compute.calls == 1


def test_an_entry_of_another_build_is_not_used(cache):
    cached("entry", BUILD, Counter({"a": 1}), _decode)
    path = _entry(cache)
    stored = json.loads(path.read_text())
    stored["key"]["build"]["size"] = 11  # a file left by another build under this name
    path.write_text(json.dumps(stored))
    compute = Counter({"a": 2})
    assert cached("entry", BUILD, compute, _decode) == {"a": 2}
    assert compute.calls == 1
    rebuilt = Counter({"a": 3})
    assert cached("entry", {**BUILD, "mtime_ns": 2}, rebuilt, _decode) == {"a": 3}  # a reinstall: new key
    assert rebuilt.calls == 1 and len(list(cache.glob("*.json"))) == 2


def test_only_the_newest_entries_of_a_name_are_kept(cache):
    for size in range(KEEP_PER_NAME + 3):
        cached("entry", {**BUILD, "size": size}, Counter({"a": size}), _decode)
        (written,) = (p for p in cache.glob("entry-*.json") if json.loads(p.read_text())["key"]["build"]["size"] == size)
        os.utime(written, ns=(10**18 + size * 10**9,) * 2)  # distinct times, whatever the clock's resolution
    cached("other", BUILD, Counter({"a": 0}), _decode)
    sizes = sorted(json.loads(p.read_text())["key"]["build"]["size"] for p in cache.glob("entry-*.json"))
    assert sizes == list(range(3, KEEP_PER_NAME + 3))
    assert len(list(cache.glob("other-*.json"))) == 1


def test_an_edit_of_the_computing_code_is_a_new_entry(cache, tmp_path, monkeypatch):
    source = tmp_path / "table_code.py"
    source.write_text("def compute():\n    return {'a': 1}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import table_code

    assert cached("entry", BUILD, table_code.compute, _decode) == {"a": 1}
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # edited (same code, for the test)
    assert cached("entry", BUILD, table_code.compute, _decode) == {"a": 1}
    keys = [json.loads(path.read_text())["key"]["code"] for path in cache.glob("*.json")]
    assert len(keys) == 2 and {k["file"] for k in keys} == {str(source)}


def test_a_callable_without_source_is_not_cached(cache):
    import functools

    compute = functools.partial(dict, a=1)
    assert cached("entry", BUILD, compute, _decode) == {"a": 1}
    assert not cache.exists()


def test_an_unwritable_cache_folder_only_costs_recomputations(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocker / "cache"))  # a folder below a file cannot be made
    compute = Counter({"a": 1})
    with caplog.at_level("DEBUG", logger=_table_cache.__name__):
        assert cached("entry", BUILD, compute, _decode) == {"a": 1}
        assert cached("entry", BUILD, compute, _decode) == {"a": 1}
    assert compute.calls == 2
    assert "cannot write cache entry" in caplog.text


def test_an_unreadable_entry_is_recomputed(cache):
    cached("entry", BUILD, Counter({"a": 1}), _decode)
    path = _entry(cache)
    path.unlink()
    path.mkdir()  # reading it fails with IsADirectoryError, writing with an OSError too
    compute = Counter({"a": 1})
    assert cached("entry", BUILD, compute, _decode) == {"a": 1}
    assert compute.calls == 1


@pytest.mark.parametrize("value", ["1", "yes"])
def test_the_cache_can_be_turned_off(cache, monkeypatch, value):
    monkeypatch.setenv(NO_CACHE_ENV, value)
    assert cache_dir() is None
    compute = Counter({"a": 1})
    cached("entry", BUILD, compute, _decode)
    cached("entry", BUILD, compute, _decode)
    assert compute.calls == 2 and not cache.exists()


def test_no_build_identity_means_no_caching(cache):
    compute = Counter({"a": 1})
    cached("entry", None, compute, _decode)
    cached("entry", None, compute, _decode)
    assert compute.calls == 2 and not cache.exists()


def test_cache_folder_defaults_to_the_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.delenv(NO_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "onnxsmith"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "onnxsmith"
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # no HOME and no password entry
    assert cache_dir() is None


def test_native_build_identifies_the_installed_module_without_importing_it():
    import onnxruntime.capi.onnxruntime_pybind11_state as ort_state

    build = native_build("onnxruntime", "capi.onnxruntime_pybind11_state")
    assert build is not None
    assert Path(build["module"]) == Path(ort_state.__file__).resolve()
    assert build["size"] == os.stat(ort_state.__file__).st_size
    assert native_build("onnxruntime", "capi.no_such_module") is None
    assert native_build("no_such_package_for_onnxsmith", "native") is None


def _contents(table: OpTable) -> tuple:
    """Everything a table holds, every op's kernels converted."""
    return (table.source, table.inlines_functions, dict(table.since_versions),
            {key: table.kernels[key] for key in table.kernels})


def test_cached_tables_equal_fresh_ones(cache, monkeypatch):
    builders = {
        "cpu kernels": lambda: _contents(kernel_registry_table.__wrapped__("CPUExecutionProvider")),
        "onnxruntime schemas": _ort_since_versions.__wrapped__,
        "onnx schemas": _standard_schemas.__wrapped__,
    }
    monkeypatch.setenv(NO_CACHE_ENV, "1")
    fresh = {name: build() for name, build in builders.items()}
    monkeypatch.delenv(NO_CACHE_ENV)
    written = {name: build() for name, build in builders.items()}
    entries = sorted(path.name.rsplit("-", 1)[0] for path in cache.glob("*.json"))
    assert entries == ["onnx-schemas", "onnxruntime-kernels-CPUExecutionProvider", "onnxruntime-schemas"]
    read = {name: build() for name, build in builders.items()}
    assert written == fresh
    assert read == fresh
    assert sum(map(len, fresh["cpu kernels"][3].values())) > 1000 and len(fresh["onnx schemas"][0]) > 150


def test_a_process_with_cached_tables_does_not_import_onnxruntime(cache):
    script = ("import sys\n"
              "from onnxsmith.codegen import get_target\n"
              "cpu = get_target('cpu')\n"
              "assert cpu.supports_op('com.microsoft', 'DynamicQuantizeMatMul', 1)\n"
              "assert not cpu.supports_op('com.microsoft', 'MadeUpOp', 1)\n"
              "assert cpu.quant.integer_ops and get_target('generic').supports_op('', 'Relu', 14)\n"
              "print('onnxruntime' in sys.modules)\n")
    env = {**os.environ, CACHE_DIR_ENV: str(cache)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert [run.stdout.strip() for run in runs] == ["True", "False"]  # the first run fills the cache
