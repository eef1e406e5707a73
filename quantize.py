"""Int8 quantization and model files that load again for inference."""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_loader import CLASSES, RR_FEATURES, check_model_inputs, model_inputs
from model import build_model, members_of, net_kwargs, saved_members
from outputs import atomic_path, write_bytes


def quantize_dynamic(model: nn.Module) -> nn.Module:
    """Dynamic int8 of the linear layers (the reference's method): int8 weights, float activations."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization is deprecated in 2.13
        from torch.ao.quantization import quantize_dynamic as qd

        return qd(model.eval(), {nn.Linear}, dtype=torch.qint8)


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


def quantize_static_onnx(float_onnx, path, calib_x, calib_rr, method: str = "MinMax") -> None:
    """Static int8 of the whole network (convolutions and linear layers) with onnxruntime:
    int8 weights per channel, uint8 activations with ranges calibrated on DS1 training beats
    (`method`: onnxruntime's CalibrationMethod, by name)."""
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
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod[method])


def save_model(model: nn.Module, path, mode: str, kind: str, model_kwargs: dict | None = None) -> int:
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
    """The quantize stage: save float32, dynamic int8 and static int8 models and their exports.

    Returns {name: (model file, predict_proba(x, rr))} for evaluation.
    """
    from export import MODEL_FILES, OnnxModel, export_onnx, export_torchscript, stamp_mode
    from train import predict_proba

    out = Path(out)
    n_rr = len(RR_FEATURES[mode])
    qmodel = quantize_dynamic(model)
    files = {kind: out / name for kind, name in MODEL_FILES.items()}
    save_model(model, files["float32"], mode, "float32")
    save_model(qmodel, files["dynamic-int8"], mode, "dynamic-int8")
    export_torchscript(model, out / "model_float32.jit.pt", n_rr)
    export_torchscript(qmodel, out / "model_int8.jit.pt", n_rr)
    export_onnx(model, out / "model_float32.onnx", n_rr)
    calib_x, calib_rr = calibration_beats(train, seed=seed)
    quantize_static_onnx(out / "model_float32.onnx", files["static-int8"], calib_x, calib_rr)
    for path in (out / "model_float32.onnx", files["static-int8"]):
        stamp_mode(path, mode)
    static = OnnxModel(files["static-int8"])
    return {"float32": (files["float32"], lambda x, rr: predict_proba(model, x, rr)),
            "dynamic-int8": (files["dynamic-int8"], lambda x, rr: predict_proba(qmodel, x, rr)),
            "static-int8": (files["static-int8"], static.predict_proba)}


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


def load_model(path) -> tuple[nn.Module, dict]:
    """Rebuild a saved float32 or int8 model; returns (model in eval mode, its metadata)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != "deep-ecg-model/1":
        raise ValueError(f"{path} is not a Deep-ECG model file (saved by main.py as model_*.pt)")
    check_model_inputs(path, payload["mode"], payload)
    model = build_model(payload["mode"], member_kwargs=saved_members(payload["model_kwargs"])).eval()
    if payload["kind"] == "dynamic-int8":
        model = quantize_dynamic(model)
    model.load_state_dict(payload["state_dict"])
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.eval(), meta
