"""The calibration session: onnxruntime reads the model's weights where the IR holds them.

Building a session from serialized bytes (``ir.to_proto(model).SerializeToString()``) puts the
weights in memory four times at once: the IR's tensors, the ``ModelProto``, its bytes, and the
tensors onnxruntime builds from them. :func:`calibration_session` keeps one copy besides the IR:

* every large main-graph initializer (at least :data:`SHARED_MIN_BYTES`, a plain numpy dtype, not
  a graph input) is handed to onnxruntime as a *shared initializer*
  (``SessionOptions.add_initializer``) over the array the IR tensor gives, which onnxruntime
  uses in place;
* the model onnxruntime parses stores those tensors as external data pointing into a sparse
  placeholder file (no disk blocks, never read): onnxruntime checks that the file exists before
  it looks the shared initializers up. The model and the placeholder live in a temporary folder
  only while the session is built;
* weight prepacking is off (``session.disable_prepacking``), since prepacking copies every
  MatMul/Conv weight into a packed buffer and cannot release a shared one;
* onnxruntime's memory pattern is off: it plans one block for all of a run's intermediates per
  input shape, and calibration runs exposing or reducing every activation make that block grow
  with all of them (magika at 6 rows per run: 90 MiB above the session, 50 MiB without it, no
  slower). Every session of :func:`calibration_session` has it off, shared weights or not;
* nodes run in graph order when ready (``ExecutionOrder.PRIORITY_BASED``), so the in-graph
  reductions placed after each calibrated value's producer run as soon as it exists and the
  value is freed early (:mod:`onnxsmith.calibration.reductions`);
* a Conv or ConvTranspose with a constant weight runs in onnxruntime's blocked NCHWc kernel
  where this CPU has one (:func:`~onnxsmith.codegen.nchwc.constant_convolutions_blocked`:
  the weight reordered once into a new shared initializer, the model restored once the session is
  built). Graph optimizations stay off: onnxruntime's optimizers read initializers from the model,
  where a shared one is the placeholder's zeros (at ``ORT_ENABLE_ALL`` its NCHWc transformer gave
  magika's Conv an all-zero weight: that Conv's output calibrated to [0, 0] and the values after it
  moved, top-1 agreement 0.9914 -> 0.9829). The blocked kernel sums in another order, so the
  Conv's output and the values after it move by float32 rounding only (largest relative change of
  a bound: magika 3.1e-7, digits CNN 6.2e-7); magika's calibration runs took 0.78 s instead of 1.07 s;
* ``threads`` 0 (the default) lets onnxruntime take one intra-op thread per physical core, and
  idle threads sleep instead of spinning (``session.intra_op.allow_spinning`` off): calibration
  runs are milliseconds long, so spinning between them only burns the CPU that other processes
  need. The thread count does not change the ranges: minimum and maximum are exact in any order,
  and onnxruntime's CPU kernels split their work by output element (magika, MiniLM and the
  digits CNN calibrate to bit-identical ranges with 1 and 2 threads).

The arrays stay alive as long as the session (an attribute of it). They are read at every run,
so the model's tensors must not be modified in place while the session is used (calibration
never does). Smaller tensors, other dtypes and subgraph initializers stay inline in the model.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import UnsupportedError, first_line
from onnxsmith.verify._session import make_session, session_options

__all__ = ["SHARED_MIN_BYTES", "calibration_session"]

#: Initializers of at least this many bytes are shared with onnxruntime instead of serialized.
SHARED_MIN_BYTES = 64 * 1024

_PLACEHOLDER = "shared-initializers.bin"
_SHAREABLE_KINDS = frozenset("biuf")  # bool, signed, unsigned, float
_CONVOLUTIONS = frozenset({"Conv", "ConvTranspose"})


def _shareable(model: ir.Model) -> dict[str, np.ndarray]:
    """The main-graph initializers to share, by name, as C-contiguous arrays."""
    inputs = {v.name for v in model.graph.inputs}
    arrays: dict[str, np.ndarray] = {}
    for name, value in model.graph.initializers.items():
        tensor = value.const_value
        if tensor is None or name in inputs or tensor.nbytes < SHARED_MIN_BYTES:
            continue
        array = tensor.numpy()
        if array.dtype.kind in _SHAREABLE_KINDS and array.dtype.isnative and array.size:
            arrays[name] = np.ascontiguousarray(array)
    return arrays


@contextlib.contextmanager
def _placeholders(model: ir.Model, arrays: dict[str, np.ndarray]) -> Iterator[int]:
    """Temporarily replaces the shared tensors by external references into the placeholder file.

    Yields the placeholder file's size in bytes.
    """
    originals: dict[str, Any] = {}
    offset = 0
    try:
        for name, array in arrays.items():
            value = model.graph.initializers[name]
            originals[name] = value.const_value
            value.const_value = ir.ExternalTensor(_PLACEHOLDER, offset, array.nbytes, value.const_value.dtype,
                                                  shape=value.const_value.shape, name=name)
            offset += array.nbytes
        yield offset
    finally:
        for name, tensor in originals.items():
            model.graph.initializers[name].const_value = tensor


def calibration_session(model: ir.Model, *, threads: int = 0) -> Any:
    """An onnxruntime CPU session for ``model`` (optimizations off) sharing its large weights.

    ``threads`` is the number of intra-op threads (0: one per physical core).

    Models with nothing to share get :func:`~onnxsmith.verify._session.make_session`'s session, with the
    same options.

    Raises:
        UnsupportedError: onnxruntime cannot load the model.
    """
    import onnxruntime as ort

    options = session_options(threads=threads)
    options.enable_mem_pattern = False
    options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with _blocked_convolutions(model):
        return _session(model, options)


def _blocked_convolutions(model: ir.Model) -> contextlib.AbstractContextManager[object]:
    """Blocks the model's constant-weight convolutions while the session is built, where onnxruntime can."""
    if not any(n.op_type in _CONVOLUTIONS and n.domain in ("", "ai.onnx") for n in model.graph):
        return contextlib.nullcontext()
    from onnxsmith.codegen.nchwc import constant_convolutions_blocked, nchwc_block_size

    block = nchwc_block_size()
    return contextlib.nullcontext() if block is None else constant_convolutions_blocked(model, block)


def _session(model: ir.Model, options: Any) -> Any:
    import onnxruntime as ort

    arrays = _shareable(model)
    if not arrays:
        return make_session(model, options=options)
    options.add_session_config_entry("session.disable_prepacking", "1")
    values = {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in arrays.items()}
    for name, value in values.items():
        options.add_initializer(name, value)
    with tempfile.TemporaryDirectory(prefix="onnxsmith-calib-") as folder:
        path = os.path.join(folder, "model.onnx")
        with _placeholders(model, arrays) as size:
            proto = ir.to_proto(model)
        with open(os.path.join(folder, _PLACEHOLDER), "wb") as placeholder:
            placeholder.truncate(size)
        with open(path, "wb") as f:
            f.write(proto.SerializeToString())
        del proto
        try:
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise UnsupportedError(f"onnxruntime cannot load the model: {first_line(e)}") from e
    session.onnxsmith_shared = (arrays, values)  # onnxruntime reads these at every run
    return session
