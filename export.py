"""Deployable files: ONNX and TorchScript exports of a trained network, and an ONNX runner.

The ONNX graph takes `window` (batch, 2, WINDOW) float32 (each beat and its template) and `rr` (batch, n_rr) float32 and
returns `logits` (batch, 5); onnxruntime runs it on any CPU, int8 included. PyTorch is imported
only to export, so running an ONNX model (`main.py predict --kind static-int8`) does not load it.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

from data_loader import CLASSES, WINDOW, WINDOW_CHANNELS
from outputs import atomic_path, write_bytes

# A run's model files by kind (`predict --kind`), written by quantize.quantize_all; beside them its exports:
# model_float32.onnx and model_float32.jit.pt.
MODEL_FILES = {"float32": "model_float32.pt", "dynamic-int8": "model_int8_dynamic.onnx",
               "static-int8": "model_int8_static.onnx"}
# The dynamic int8 model of runs made before it moved to ONNX Runtime (PyTorch's deprecated quantized tensors).
LEGACY_DYNAMIC = "model_int8.pt"
# Integer layers whose weights an x86-64 CPU without VNNI multiplies by uint8 activations in saturating pairs
# (quantize.py): op type -> (index of the weight input, index of its zero point).
INT8_WEIGHT_INPUTS = {"QLinearConv": (3, 5), "QGemm": (3, 5), "QLinearMatMul": (3, 5), "MatMulInteger": (1, 3),
                      "ConvInteger": (1, 3), "DynamicQuantizeMatMul": (1, 3), "MatMulIntegerToFloat": (1, 5)}
PAIR_LIMIT = 32767 // 255 // 2  # |w| <= 64: two uint8 x int8 products sum within int16
INPUTS = ("window", "rr")
OUTPUT = "logits"
OPSET = 17


def _example(n_rr: int, batch: int = 2):
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, len(WINDOW_CHANNELS), WINDOW, generator=g), torch.rand(batch, n_rr, generator=g) + 0.5


def export_onnx(model, path, n_rr: int) -> None:
    """Float32 ONNX with a dynamic batch axis."""
    import torch

    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter warns that it is legacy
        torch.onnx.export(model.eval(), _example(n_rr), str(tmp), input_names=list(INPUTS),
                          output_names=[OUTPUT], opset_version=OPSET, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in (*INPUTS, OUTPUT)})


MODE_KEY = "deep_ecg_mode"  # ONNX metadata: the mode a model was trained for, checked against config.json


def stamp_mode(path, mode: str) -> None:
    """Write the model's mode into an ONNX file's metadata: a model copied to a device beside another
    run's config.json is then refused instead of fed the other mode's inputs."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    model.metadata_props.add(key=MODE_KEY, value=mode)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def rr_input_ranges(path) -> list[tuple[float, float]]:
    """The ranges of RR inputs (seconds and ratios) a static int8 ONNX model represents, one per quantization on a
    path from its 'rr' input (networks of one design share theirs): of the inputs themselves, or of their
    logarithms in a network that takes those (model.DESIGNS), itself reading the inputs after any quantization
    before it. An input outside a range reads, to that network, as the range's nearest end (a pause longer than
    the upper end is seen that long)."""
    import math

    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def walk(tensor):  # (lo, hi, logarithm taken) of what `tensor` can hold, in rr's units or their logarithms
        if tensor == "rr":
            return -math.inf, math.inf, False
        node = producer.get(tensor)
        if node is None or node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Clip", "Log"):
            return None
        got = walk(node.input[0])
        if got is None:
            return None
        lo, hi, log = got
        if node.op_type == "Log":
            return math.log(max(lo, 1e-300)), (math.log(hi) if hi > 0 else -math.inf), True
        if node.op_type == "Clip":
            bounds = [float(init[n]) if n in init else None for n in (list(node.input[1:]) + [None, None])[:2]]
            return (max(lo, bounds[0]) if bounds[0] is not None else lo,
                    min(hi, bounds[1]) if bounds[1] is not None else hi, log)
        if node.op_type == "QuantizeLinear":
            scale, zero = float(init[node.input[1]]), int(init[node.input[2]])
            return max(lo, -zero * scale), min(hi, (255 - zero) * scale), log
        return lo, hi, log

    ranges = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and (got := walk(node.output[0])) is not None:
            lo, hi, log = got
            ranges.append((math.exp(lo), math.exp(hi)) if log else (lo, hi))
    if not ranges:
        raise ValueError(f"{path} quantizes no RR input: not a static int8 model")
    return ranges


def saturating_weights(path) -> list[str]:
    """The int8 weights of an ONNX model (a path, or the model loaded) that can overflow a pair of uint8 x int8 products on x86-64 without VNNI
    (|w - zero point| > PAIR_LIMIT): their layers' results then depend on the CPU. [] for a model quantized here."""
    import onnx
    from onnx import numpy_helper

    graph = path.graph if hasattr(path, "graph") else onnx.load(str(path)).graph
    init = {i.name: i for i in graph.initializer}
    found = []
    for node in graph.node:
        if node.op_type not in INT8_WEIGHT_INPUTS:
            continue
        w_at, zp_at = INT8_WEIGHT_INPUTS[node.op_type]
        if len(node.input) <= w_at or node.input[w_at] not in init:
            continue
        w = numpy_helper.to_array(init[node.input[w_at]])
        if w.dtype != np.int8:  # uint8 weights take another kernel, which widens to int16 first
            continue
        zp = (numpy_helper.to_array(init[node.input[zp_at]]).astype(np.int32)
              if len(node.input) > zp_at and node.input[zp_at] in init else np.zeros(1, np.int32))
        if 1 < zp.size == w.shape[0]:  # per output channel, on the weight's first axis (else its last)
            zp = zp.reshape(-1, *[1] * (w.ndim - 1))
        if np.abs(w.astype(np.int32) - zp).max() > PAIR_LIMIT:
            found.append(node.input[w_at])
    return found


def export_torchscript(model, path, n_rr: int) -> None:
    """TorchScript (traced) of a float32 model: loads with torch.jit.load, no source."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model.eval(), _example(n_rr)), buffer)
    write_bytes(path, buffer.getvalue())


class OnnxModel:
    """An exported model run by onnxruntime; `threads` fixes the CPU threads it may use."""

    def __init__(self, path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.mode = self.session.get_modelmeta().custom_metadata_map.get(MODE_KEY)  # None: not recorded
        self.kind, self.saturating = onnx_kind(path)

    def logits(self, x: np.ndarray, rr: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], dict(zip(INPUTS, (x, rr))))[0]

    def predict_proba(self, x, rr, batch_size: int = 4096) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rr = np.ascontiguousarray(rr, dtype=np.float32)
        out = [self.logits(x[i:i + batch_size], rr[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        if not out:
            return np.zeros((0, len(CLASSES)), np.float32)
        z = np.concatenate(out)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def onnx_kind(path) -> tuple[str, list[str]]:
    """(the kind of an ONNX model file: float32, dynamic-int8 or static-int8, by its operators; its weights that
    can saturate on x86-64 without VNNI, saturating_weights)."""
    import onnx

    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    kind = ("dynamic-int8" if "DynamicQuantizeLinear" in ops else
            "static-int8" if ops & {"QLinearConv", "QGemm", "QLinearMatMul"} else "float32")
    return kind, saturating_weights(model)


def load_model(path):
    """Rebuild a saved float32 model (model_float32.pt); returns (model in eval mode, its metadata). Loads PyTorch,
    not the training code."""
    import torch

    from data_loader import StaleModelError, check_model_inputs
    from model import build_model, saved_members

    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != "deep-ecg-model/1":
        raise ValueError(f"{path} is not a Deep-ECG model file (saved by main.py as model_*.pt)")
    check_model_inputs(path, payload["mode"], payload)
    if payload["kind"] != "float32":  # model_int8.pt: PyTorch's quantized tensors, deprecated and to be removed
        raise StaleModelError(f"{path} is a dynamic int8 model of an earlier version, made with PyTorch's deprecated "
                              f"quantized tensors; its run's int8 models are now ONNX files: retrain the run with "
                              f"`python main.py --mode {payload['mode']}`, or load its model_float32.pt")
    model = build_model(payload["mode"], member_kwargs=saved_members(payload["model_kwargs"])).eval()
    model.load_state_dict(payload["state_dict"])
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.eval(), meta
