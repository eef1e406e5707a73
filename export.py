"""Deployable files: ONNX and TorchScript exports of a trained network, and an ONNX runner.

The ONNX graph takes `window` (batch, 2, WINDOW) float32 (each beat and its template) and `rr` (batch, n_rr) float32 and
returns `logits` (batch, 5); onnxruntime runs it on any CPU, int8 included. PyTorch is imported
only to export, so running an ONNX model (`main.py predict --kind static-int8`) does not load it.
"""
from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import config
import data_loader as dl
from cli import InputError, warn
from data_loader import CLASSES, WINDOW, WINDOW_CHANNELS
from outputs import atomic_path, write_bytes

# A run's model files by kind (`predict --kind`), written by quantize.quantize_all; beside them its exports:
# model_float32.onnx and model_float32.jit.pt.
MODEL_FILES = {"float32": "model_float32.pt", "dynamic-int8": "model_int8_dynamic.onnx",
               "static-int8": "model_int8_static.onnx"}
# The dynamic int8 model of runs made before it moved to ONNX Runtime (PyTorch's deprecated quantized tensors).
LEGACY_DYNAMIC = "model_int8.pt"
FLOAT32_ONNX = "model_float32.onnx"  # the float32 network exported beside model_float32.pt
# Integer layers whose weights an x86-64 CPU without VNNI multiplies by uint8 activations in saturating pairs
# (quantize.py): op type -> (index of the weight input, index of its zero point).
INT8_WEIGHT_INPUTS = {"QLinearConv": (3, 5), "QGemm": (3, 5), "QLinearMatMul": (3, 5), "MatMulInteger": (1, 3),
                      "ConvInteger": (1, 3), "DynamicQuantizeMatMul": (1, 3), "MatMulIntegerToFloat": (1, 5)}
PAIR_LIMIT = 32767 // 255 // 2  # |w| <= 64: two uint8 x int8 products sum within int16
INPUTS = ("window", "rr")
OUTPUT = "logits"
OPSET = 17


class StaleModelError(ValueError):
    """A model trained on other inputs (RR features, window channels) than this version computes."""


def model_inputs(mode: str) -> dict:
    """What a model of this version is fed: saved with every model and checked when one is loaded."""
    rule = f"median of the last {config.TEMPLATE_BEATS} beats"
    return {"rr_features": list(config.RR_FEATURES[mode]), "window_channels": list(WINDOW_CHANNELS), "template": [rule]}


# Model inputs that earlier versions did not record, as every such version computed them.
UNRECORDED_INPUTS = {"template": ["median of the last 32 beats"]}


def check_model_inputs(path, mode: str, saved: dict) -> None:
    """Raise StaleModelError unless `saved` (a model's metadata) names the inputs this version computes."""
    for key, now in model_inputs(mode).items():
        was = saved.get(key, UNRECORDED_INPUTS.get(key))
        if was is None or list(was) != now:
            raise StaleModelError(
                f"{path} was trained on the {key.replace('_', ' ')} "
                f"{', '.join(was) if was else 'of an earlier version'}; this version computes "
                f"{', '.join(now)}. Retrain it with `python main.py --mode {mode}`")


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
# ... its kind and saturating weights (onnx_kind, comma-separated), read at loading without the onnx package (0.6 s
# to import), and trusted while the file is as exported: DIGEST_KEY holds the SHA-256 of its bytes with that digest
# zeroed
KIND_KEY, SATURATING_KEY, DIGEST_KEY = "deep_ecg_kind", "deep_ecg_saturating", "deep_ecg_digest"
NO_DIGEST = b"0" * 64


def stamp_mode(path, mode: str) -> None:
    """Write the model's mode into an ONNX file's metadata: a model copied to a device beside another
    run's config.json is then refused instead of fed the other mode's inputs. Its kind and saturating weights
    (onnx_kind) are written beside it, with the digest that tells they still describe the file (stamped_kind)."""
    import hashlib

    import onnx

    model = onnx.load(str(path))
    kind, saturating = onnx_kind(model)
    del model.metadata_props[:]
    for key, value in ((MODE_KEY, mode), (KIND_KEY, kind), (SATURATING_KEY, ",".join(saturating)),
                       (DIGEST_KEY, NO_DIGEST.decode())):
        model.metadata_props.add(key=key, value=value)
    data = model.SerializeToString()
    if data.count(NO_DIGEST) == 1:  # (else no digest: the kind is read from the graph at loading)
        data = data.replace(NO_DIGEST, hashlib.sha256(data).hexdigest().encode())
    write_bytes(path, data)


def stamped_kind(path, metadata: dict) -> tuple[str, list[str]] | None:
    """onnx_kind as stamped in an ONNX file's metadata (stamp_mode), if the file is byte for byte as stamped;
    else None."""
    import hashlib

    digest = metadata.get(DIGEST_KEY, "").encode()
    if len(digest) != len(NO_DIGEST) or KIND_KEY not in metadata or SATURATING_KEY not in metadata:
        return None
    data = Path(path).read_bytes()
    if data.count(digest) != 1 or hashlib.sha256(data.replace(digest, NO_DIGEST)).hexdigest().encode() != digest:
        return None
    return metadata[KIND_KEY], [w for w in metadata[SATURATING_KEY].split(",") if w]


def rr_input_ranges(path) -> list[tuple[float, float]]:
    """The ranges of RR inputs (seconds and ratios) a static int8 ONNX model represents, one per quantization on a
    path from its 'rr' input (networks of one design share theirs): of the inputs themselves, or of their
    logarithms in a network that takes those (config.DESIGNS), itself reading the inputs after any quantization
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
    """The int8 weights of an ONNX model (a path, or the model loaded) that can overflow a pair of uint8 x int8
    products on x86-64 without VNNI (|w - zero point| > PAIR_LIMIT): their layers' results then depend on the CPU.
    [] for a model quantized here."""
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

    def logits(self, x: np.ndarray, rr: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], dict(zip(INPUTS, (x, rr))))[0]

    def predict_proba(self, x, rr, batch_size: int = 1024) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        rr = np.ascontiguousarray(rr, dtype=np.float32)
        out = [self.logits(x[i:i + batch_size], rr[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        if not out:
            return np.zeros((0, len(CLASSES)), np.float32)
        z = np.concatenate(out)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def onnx_kind(path) -> tuple[str, list[str]]:
    """(the kind of an ONNX model (a file, or the model loaded): float32, dynamic-int8 or static-int8, by its
    operators; its weights that can saturate on x86-64 without VNNI, saturating_weights)."""
    import onnx

    model = path if hasattr(path, "graph") else onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    kind = ("dynamic-int8" if "DynamicQuantizeLinear" in ops else
            "static-int8" if ops & {"QLinearConv", "QGemm", "QLinearMatMul"} else "float32")
    return kind, saturating_weights(model)


def load_model(path):
    """Rebuild a saved float32 model (model_float32.pt); returns (model in eval mode, its metadata). Loads PyTorch,
    not the training code."""
    import torch

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


# --------------------------------------------------------------------------- loading a run's model for inference

@dataclass
class Classifier:
    """A trained model of either mode, float or int8, behind one predict_proba(x, rr)."""

    mode: str
    kind: str
    path: Path
    _predict: object

    def predict_proba(self, x: np.ndarray, rr: np.ndarray) -> np.ndarray:
        return self._predict(x, rr)

    @property
    def batch_dependent(self) -> bool:
        """Whether a beat's probabilities depend on the other beats of the same call: dynamic int8 scales each
        call's activations by their range, so a caller wanting each beat's answer alone (the stream) passes one
        beat per call."""
        return self.kind == "dynamic-int8"


def load_classifier(path, kind: str = "float32", threads: int | None = None) -> Classifier:
    """A run directory (its `kind` model) or a model file (.pt from main.py, or .onnx)."""
    path = Path(path)
    if path.is_dir():
        if kind not in MODEL_FILES:
            raise InputError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_FILES)}")
        if kind == "dynamic-int8" and not (path / MODEL_FILES[kind]).is_file() and (path / LEGACY_DYNAMIC).is_file():
            raise InputError(f"{path} was made by an earlier version, whose dynamic int8 model ({LEGACY_DYNAMIC}) used "
                             f"PyTorch's deprecated quantized tensors; retrain it (`python main.py`) for "
                             f"{MODEL_FILES[kind]}, or choose --kind float32 or static-int8")
        if not (path / MODEL_FILES[kind]).is_file():
            raise InputError(f"{path} holds no {MODEL_FILES[kind]}: pass the directory of a finished "
                             f"`python main.py` run, or a model file")
        if kind == "float32" and (path / FLOAT32_ONNX).is_file():
            # The same network exported (quantize.quantize_all): ONNX Runtime runs it about 4x faster than PyTorch
            # on a CPU, with the same classes (probabilities within 1e-6; bench/holter.py, tests/test_export.py).
            return _load_onnx(path / FLOAT32_ONNX, threads, "float32")
        path = path / MODEL_FILES[kind]
    if not path.is_file():
        raise InputError(f"model {path} not found: pass a run directory made by `python main.py` "
                         f"(runs/...) or one of its model files")
    if path.suffix == ".onnx":
        return _load_onnx(path, threads)
    import torch

    from model import predict_proba

    try:
        model, meta = load_model(path)
    except StaleModelError as exc:
        raise InputError(str(exc)) from None
    except Exception:
        what = ("a TorchScript export (for other programs)" if path.name.endswith(".jit.pt") else
                "not a Deep-ECG model (or a copy cut short)")
        raise InputError(f"{path} is {what}; pass a run directory, or one of its model files: "
                         f"{', '.join(sorted({*MODEL_FILES.values(), 'model_float32.onnx'}))}") from None
    if threads:
        torch.set_num_threads(threads)

    def proba(x, rr):
        if len(x) > 256:
            return predict_proba(model, x, rr)
        with torch.inference_mode():  # a few beats at a time (streaming): no batching overhead
            z = model(torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                      torch.from_numpy(np.ascontiguousarray(rr, np.float32)))
            return torch.softmax(z, dim=1).numpy()

    return Classifier(meta["mode"], meta["kind"], path, proba)


def _load_onnx(path: Path, threads: int | None, as_kind: str | None = None) -> Classifier:
    """An ONNX model file, checked against the config.json of its run beside it."""
    config_file = path.parent / "config.json"
    if not config_file.is_file():
        raise InputError(f"{path}: an ONNX model needs the config.json of its run beside it "
                         f"(to know its mode); keep the run directory together")
    try:
        run_config = json.loads(config_file.read_text())
        mode = run_config["mode"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(f"{config_file} is not a run's config.json (cut short or edited?): it should name the "
                         f"model's mode; copy it again from the run directory") from None
    if mode not in dl.MODES:
        raise InputError(f"{config_file} names the mode {mode!r}; a run's mode is one of {', '.join(dl.MODES)}")
    try:
        check_model_inputs(path, mode, run_config)
    except StaleModelError as exc:
        raise InputError(str(exc)) from None
    try:
        onnx = OnnxModel(path, threads=threads)
    except Exception as exc:
        raise InputError(f"{path} is not a readable ONNX model (cut short in a copy?): "
                         f"{str(exc).splitlines()[0][:200]}; copy it again from the run directory") from None
    inputs, outputs = [i.name for i in onnx.session.get_inputs()], [o.name for o in onnx.session.get_outputs()]
    if inputs != list(INPUTS) or OUTPUT not in outputs:
        raise InputError(f"{path} is not a Deep-ECG model: it takes {', '.join(inputs)} and gives "
                         f"{', '.join(outputs)} (a Deep-ECG model takes {', '.join(INPUTS)} and gives {OUTPUT}); "
                         f"pass a model exported by a `python main.py` run")
    if onnx.mode is not None and onnx.mode != mode:
        raise InputError(f"{path} is a {onnx.mode} model, but the config.json beside it is a {mode} run's: "
                         f"keep each model with its own run's config.json")
    # (read here, where a user is told: not by every OnnxModel); from the graph where not stamped as it is
    kind, saturating = stamped_kind(path, onnx.session.get_modelmeta().custom_metadata_map) or onnx_kind(path)
    if saturating:
        warn(f"{path} was quantized by an earlier version with 8-bit weights: its classes differ on x86-64 CPUs "
             f"without VNNI (AVX2 only) from those on other CPUs; retrain the run (`python main.py --mode {mode}`) "
             f"for int8 files that give the same classes on every CPU")
    return Classifier(mode, as_kind or ("float32-onnx" if kind == "float32" else kind), path, onnx.predict_proba)


def model_kind(model, kind: str | None, default: str) -> str:
    """--kind, or its default: it picks a run directory's model; beside a model file it must name that file."""
    if kind is not None and Path(model).is_file() and Path(model).name != MODEL_FILES[kind]:
        raise InputError(f"--kind {kind} picks {MODEL_FILES[kind]} of a run directory; {model} is a model file itself "
                         f"(pass the run directory with --kind, or the model file alone)")
    return kind or default
