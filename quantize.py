"""Int8 models, both run by ONNX Runtime: static int8 of the whole network, dynamic int8 of its linear layers.

Weights are quantized to 7 bits (|w| <= 64, ONNX Runtime's reduce_range). x86-64 CPUs without VNNI (AVX2 only)
multiply uint8 activations by int8 weights two at a time into a saturating int16 sum (vpmaddubsw), which
overflows once 255 * (|w0| + |w1|) > 32767: with 8-bit weights the same file then gives other classes there than
on a CPU with AVX-512 VNNI or on ARM64. With 7-bit weights no pair can overflow, and every CPU computes the
same integers (tests/test_export.py checks each int8 layer against an exact integer reference).
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_loader import CLASSES, RR_FEATURES
from export import model_inputs
from export import load_model  # noqa: F401  (quantize.load_model, as before)
from model import members_of, net_kwargs
from outputs import atomic_path, write_bytes


def calibration_beats(beats, per_class: int = 300, seed: int = 0, typical: float = 0.999):
    """A class-stratified sample of training beats, so rare classes shape the int8 ranges too.

    Only beats whose every RR feature is within its `typical` quantile over the training beats
    are drawn: a gap in the annotations (record 207's unannotated stretches give RR intervals of
    100 s) would otherwise stretch the RR input's int8 range to 100 s, 0.4 s a step, and blur every
    ordinary RR interval; such rare beats saturate at the range's end instead.
    """
    rng = np.random.default_rng(seed)
    ok = (beats.rr <= np.quantile(beats.rr, typical, axis=0)).all(axis=1)
    idx = np.concatenate([rng.permutation(np.flatnonzero((beats.y == c) & ok))[:per_class]
                          for c in np.unique(beats.y[ok])])
    return beats.x[idx], beats.rr[idx]


def quantize_static_onnx(float_onnx, path, calib_x, calib_rr, method: str = "MinMax", reduce_range: bool = True) -> None:
    """Static int8 of the whole network (convolutions and linear layers) with onnxruntime:
    7-bit int8 weights per channel, uint8 activations with ranges calibrated on DS1 training beats
    (`method`: onnxruntime's CalibrationMethod, by name; reduce_range=False: 8-bit weights, as earlier versions
    made them, whose results depend on the CPU, for comparison only)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    from export import INPUTS

    class Reader(CalibrationDataReader):  # one batch: the histogram methods need equal batches
        def __init__(self):
            self.batches = iter([dict(zip(INPUTS, (calib_x, calib_rr)))])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(path) as tmp:
        pre = os.path.join(tmpdir, "pre.onnx")
        quant_pre_process(str(float_onnx), pre)  # shape inference + graph clean-up first
        quantize_static(pre, str(tmp), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod[method])


def quantize_dynamic_onnx(float_onnx, path) -> None:
    """Dynamic int8 of the linear layers (the reference's method, on ONNX Runtime's maintained path): 7-bit int8
    weights, activations quantized to uint8 by each call's own range; convolutions stay float32."""
    import onnx
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmpdir, atomic_path(path) as tmp:
        pre, src = os.path.join(tmpdir, "pre.onnx"), os.path.join(tmpdir, "matmul.onnx")
        quant_pre_process(str(float_onnx), pre)  # as the static model's (and it marks the file as pre-processed)
        onnx.save(gemm_as_matmul(onnx.load(pre)), src)  # onnxruntime quantizes MatMul dynamically, not Gemm
        quantize_dynamic(src, str(tmp), op_types_to_quantize=["MatMul"], per_channel=False, reduce_range=True,
                         weight_type=QuantType.QInt8)


def gemm_as_matmul(model):
    """The ONNX model with each Gemm of a constant weight (a linear layer as torch exports it) written as
    MatMul then Add: the same arithmetic, in the operators onnxruntime's dynamic quantization takes."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in init or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(init[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        name = f"{node.input[1]}_matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), name))
        if len(node.input) > 2 and node.input[2]:
            product = f"{node.output[0]}_product"
            nodes += [helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}_MatMul"),
                      helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_Add")]
        else:
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [node.output[0]], name=f"{node.name}_MatMul"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for node in graph.node for i in node.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model


def compact_onnx(path) -> None:
    """An int8 ONNX file without what running it does not need: the shapes of intermediate tensors that shape
    inference recorded, and the long names of nodes and tensors (the inputs and the output keep theirs). The
    diagnostic pair's static int8 file: 127,697 -> about 111,000 bytes, its int8 weights 98,442 of them."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    del graph.value_info[:]
    keep = {i.name for i in graph.input} | {o.name for o in graph.output} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        return name if name in keep else names.setdefault(name, format(len(names), "x"))

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def save_model(model: nn.Module, path, mode: str, kind: str = "float32", model_kwargs: dict | None = None) -> int:
    """Save weights with what it takes to rebuild the network (an ensemble's member count among
    them); return the file size in bytes."""
    members = members_of(model)
    nets = list(model.members) if members > 1 else [model]
    model_kwargs = {**({"members": members} if members > 1 else {}),
                    "member_kwargs": [net_kwargs(net) for net in nets], **(model_kwargs or {})}
    payload = {"format": "deep-ecg-model/1", "mode": mode, "kind": kind, **model_inputs(mode),
               "model_kwargs": model_kwargs, "state_dict": model.state_dict()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())
    return path_size(path)


def quantize_all(model: nn.Module, train, out, mode: str, seed: int = 0) -> dict:
    """The quantize stage: save the float32 model, its exports, and its static and dynamic int8 models.

    Returns {kind: (model file, predict_proba(x, rr))} for evaluation.
    """
    from export import MODEL_FILES, OnnxModel, export_onnx, export_torchscript, stamp_mode
    from model import predict_proba

    out = Path(out)
    n_rr = len(RR_FEATURES[mode])
    files = {kind: out / name for kind, name in MODEL_FILES.items()}
    save_model(model, files["float32"], mode)
    export_torchscript(model, out / "model_float32.jit.pt", n_rr)
    export_onnx(model, out / "model_float32.onnx", n_rr)
    calib_x, calib_rr = calibration_beats(train, seed=seed)
    quantize_static_onnx(out / "model_float32.onnx", files["static-int8"], calib_x, calib_rr)
    quantize_dynamic_onnx(out / "model_float32.onnx", files["dynamic-int8"])
    for path in (files["static-int8"], files["dynamic-int8"]):
        compact_onnx(path)
    for path in (out / "model_float32.onnx", files["static-int8"], files["dynamic-int8"]):
        stamp_mode(path, mode)
    return {"float32": (files["float32"], lambda x, rr: predict_proba(model, x, rr)),
            **{kind: (files[kind], OnnxModel(files[kind]).predict_proba) for kind in ("dynamic-int8", "static-int8")}}


def quantization_table(results: dict) -> str:
    """Markdown: each model's file size and per-class F1, and the change from float32."""
    f = results["float32"]
    lines = ["## Quantization", "", "| model | file | bytes | smaller by | "
             + " | ".join(f"{c} F1 (change)" for c in CLASSES) + " | macro-F1 (N,S,V) (change) |",
             "|---" * (5 + len(CLASSES)) + "|"]
    for name, r in results.items():
        m, fm = r["metrics"], f["metrics"]
        cells = " | ".join(f"{m['per_class'][c]['f1']:.4f} ({m['per_class'][c]['f1'] - fm['per_class'][c]['f1']:+.4f})"
                           for c in CLASSES)
        lines.append(f"| {name} | {r['file']} | {r['size_bytes']:,} | {f['size_bytes'] / r['size_bytes']:.2f}x | "
                     f"{cells} | {m['macro_f1_nsv']:.4f} ({m['macro_f1_nsv'] - fm['macro_f1_nsv']:+.4f}) |")
    return "\n".join(lines)


def path_size(path) -> int:
    return os.path.getsize(path)
