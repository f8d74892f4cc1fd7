"""Quantization-aware training: fine-tune a QDQ model through its fake quantization.

A QDQ model from the ``qdq`` pipeline stores each weight as integer codes ``q`` read by
``DequantizeLinear(q, s, z)`` and each bias as int32 codes with scale ``s_x * s_w``; activations
pass through ``QuantizeLinear -> DequantizeLinear`` pairs. QAT works in three steps:

1. :func:`fake_quant_form` turns every weight back into a trainable float initializer
   ``W = (q - z) * s`` read through ``QuantizeLinear(W, s, z) -> DequantizeLinear`` -- the same
   values, so the model computes exactly what the QDQ model computed -- and every int32 bias into
   its float value. With ``weight_bits=4`` the weights get new per-channel (per-tensor when they
   had no axis) symmetric int4 parameters, ``s = max|W| / 7`` with codes in ``[-7, 7]``: the
   post-training int4 quantization QAT then improves on (int4 needs opset 21).
2. :func:`~onnxsmith.train.fit.train` differentiates through the Q/DQ pairs with the
   straight-through estimator (``build-gradients``; ``quant_scales="lsq"`` trains the scales
   too) and updates the float weights and biases.
3. :func:`fold_fake_quant` folds every weight quantizer into integer codes of its type (int4
   codes stay int4) and runs ``fold-scales``, which quantizes the biases to int32 again and drops
   redundant pairs: a QDQ model in the form integer kernels take.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxsmith.errors import ModelInputError, UnsupportedError
from onnxsmith.passes import PassManager
from onnxsmith.passes.quant.qdq_nodes import QDQBuilder, constant_array, read_params
from onnxsmith.passes.quant.scales import QuantParams, dequantize, params_for_range, quantize
from onnxsmith.train.fit import TrainConfig, TrainOutcome, train
from onnxsmith.train.trainer import StepInfo

__all__ = ["fake_quant_form", "fold_fake_quant", "qat"]

_INT4_OPSET = 21
_WEIGHT_TYPES = {4: ir.DataType.INT4}


def qat(model: ir.Model, data: Any, config: TrainConfig | None = None, *, weight_bits: int | None = None,
        labels: str = "labels", eval_data: Any = None, checkpoint: str | Path | None = None, resume: bool = False,
        on_step: Callable[[StepInfo], None] | None = None, provider: str = "CPUExecutionProvider") -> TrainOutcome:
    """Fine-tunes the QDQ ``model`` through its fake quantization; returns the folded QDQ model.

    Args:
        model: A QDQ model (e.g. from ``--passes cleanup,qdq``); not modified.
        data: Labelled training rows (see :func:`~onnxsmith.train.fit.train`).
        config: Loss, optimizer, schedule (default: :class:`TrainConfig` defaults).
        weight_bits: Re-quantize the weights to this many bits first (4), or keep their types (None).
        labels: Name of the labels' array in ``data`` and ``eval_data``.
        eval_data: Held-out rows evaluated after each epoch (on the fake-quantized model).
        checkpoint: Checkpoint file; ``resume`` continues from it.
        resume: Continue from ``checkpoint``.
        on_step: Called after every step.
        provider: The onnxruntime execution provider.

    Raises:
        ModelInputError: The model holds no quantized weight.
    """
    trainable = fake_quant_form(model, weight_bits=weight_bits)
    outcome = train(trainable, data, config or TrainConfig(), labels=labels, eval_data=eval_data,
                    checkpoint=checkpoint, resume=resume, on_step=on_step, provider=provider)
    return TrainOutcome(fold_fake_quant(outcome.model), outcome.result, outcome.training_model)


def fake_quant_form(model: ir.Model, *, weight_bits: int | None = None) -> ir.Model:
    """A copy of the QDQ ``model`` with float weights behind Q -> DQ and float biases (step 1 above).

    Raises:
        ModelInputError: No DequantizeLinear of constant integer codes (not a QDQ model).
        UnsupportedError: ``weight_bits`` is not 4 or 8, or 4 on a model below opset 21.
    """
    if weight_bits not in (None, 4, 8):
        raise UnsupportedError(f"QAT re-quantizes weights to 4 bits (or keeps them), not {weight_bits}")
    result = model.clone()
    graph = result.graph
    bits = None if weight_bits == 8 else weight_bits
    if bits == 4 and _opset(result) < _INT4_OPSET:
        raise UnsupportedError(f"int4 weights need opset {_INT4_OPSET}; the model imports opset {_opset(result)}",
                               "convert the float model to opset 21 (onnx.version_converter) before quantizing it")
    builder = QDQBuilder(graph)
    converted = 0
    for node in list(graph):
        codes = node.inputs[0] if node.op_type == "DequantizeLinear" and node.inputs else None
        array = constant_array(codes) if codes is not None and not codes.is_graph_input() else None
        params = read_params(node) if array is not None else None
        if params is None or array is None:
            continue
        if params.axis is not None:
            params = QuantParams(params.scale, params.zero_point, params.dtype, params.axis % array.ndim)
        real = dequantize(array, params).astype(node.outputs[0].dtype.numpy())
        base = codes.name.removesuffix("_quantized")
        if params.dtype == ir.DataType.INT32:
            node.outputs[0].replace_all_uses_with(builder.initializer(real, base))
        else:
            if bits is not None:
                params = _symmetric_params(real, params.axis, _WEIGHT_TYPES[bits])
            weight = builder.initializer(real, base)
            quantizer = _qdq_node(graph, builder, "QuantizeLinear", weight, params, f"{base}_fake_quantized")
            dequantizer = _qdq_node(graph, builder, "DequantizeLinear", quantizer.outputs[0], params,
                                    f"{base}_fake_dequantized")
            graph.insert_before(node, [quantizer, dequantizer])
            dequantizer.outputs[0].shape = node.outputs[0].shape
            node.outputs[0].replace_all_uses_with(dequantizer.outputs[0])
        graph.remove(node, safe=True)
        converted += 1
    if not converted:
        raise ModelInputError("the model holds no quantized weight (DequantizeLinear of constant codes) to train",
                              "quantize it first: optimize-graph IN OUT --passes cleanup,qdq --calib-data DATA")
    _drop_unused_initializers(graph)
    return result


def fold_fake_quant(model: ir.Model) -> ir.Model:
    """A copy of ``model`` with weight quantizers folded into integer codes, then ``fold-scales`` (step 3)."""
    result = model.clone()
    graph = result.graph
    builder = QDQBuilder(graph)
    for node in list(graph):
        weight = node.inputs[0] if node.op_type == "QuantizeLinear" and node.inputs else None
        array = constant_array(weight) if weight is not None and not weight.is_graph_input() else None
        params = read_params(node) if array is not None else None
        if params is None or array is None or params.dtype == ir.DataType.INT32:
            continue
        if params.axis is not None:
            params = QuantParams(params.scale, params.zero_point, params.dtype, params.axis % array.ndim)
        codes = _initializer(graph, builder, quantize(array, params), f"{weight.name}_quantized", params.dtype)
        node.outputs[0].replace_all_uses_with(codes)
        graph.remove(node, safe=True)
    _drop_unused_initializers(graph)
    PassManager("fold-scales").run(result)
    return result


def _opset(model: ir.Model) -> int:
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))


def _symmetric_params(weight: np.ndarray, axis: int | None, dtype: ir.DataType) -> QuantParams:
    """Narrow symmetric parameters of ``dtype`` (codes in ``[-qmax, qmax]``) covering ``max|weight|``."""
    if axis is None:
        bound = np.abs(weight).max(initial=0.0)
    else:
        bound = np.abs(np.moveaxis(weight, axis, 0)).reshape(weight.shape[axis], -1).max(axis=1)
    return params_for_range(-bound, bound, dtype, symmetric=True, narrow=True, axis=axis)


def _initializer(graph: ir.Graph, builder: QDQBuilder, array: np.ndarray, base: str, dtype: ir.DataType) -> ir.Value:
    """A new initializer of ``dtype`` (4-bit types are held one per int8/uint8 element in ``array``)."""
    name = builder.fresh(base)
    tensor = ir.tensor(array, dtype=dtype, name=name)
    value = ir.Value(name=name, type=ir.TensorType(dtype), shape=ir.Shape(array.shape), const_value=tensor)
    graph.register_initializer(value)
    return value


def _qdq_node(graph: ir.Graph, builder: QDQBuilder, op_type: str, x: ir.Value, params: QuantParams,
              name: str) -> ir.Node:
    """A Q or DQ node over ``x`` with ``params`` (scale as ``x``'s float type for Q, float32 for DQ)."""
    float_type = x.dtype if op_type == "QuantizeLinear" else ir.DataType.FLOAT
    scale = builder.initializer(params.scale.astype(float_type.numpy()), f"{name}_scale")
    zero = _initializer(graph, builder, params.zero_point, f"{name}_zero_point", params.dtype)
    attributes = [ir.AttrInt64("axis", params.axis)] if params.axis is not None else []
    node = ir.Node("", op_type, [x, scale, zero], attributes=attributes, name=builder.fresh(name))
    out = node.outputs[0]
    out.name = builder.fresh(name)
    out.type = ir.TensorType(params.dtype if op_type == "QuantizeLinear" else float_type)
    out.shape = x.shape
    return node


def _drop_unused_initializers(graph: ir.Graph) -> None:
    for name in [n for n, v in graph.initializers.items() if not v.uses() and not v.is_graph_output()
                 and not v.is_graph_input()]:
        graph.initializers.pop(name)

