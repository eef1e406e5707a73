"""Int8 quantization and model files that load again for inference."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from model import build_model
from outputs import atomic_path


def quantize_dynamic(model: nn.Module) -> nn.Module:
    """Dynamic int8 of the linear layers (the reference's method): int8 weights, float activations."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization is deprecated in 2.13
        from torch.ao.quantization import quantize_dynamic as qd

        return qd(model.eval(), {nn.Linear}, dtype=torch.qint8)


def save_model(model: nn.Module, path, mode: str, kind: str, model_kwargs: dict | None = None) -> int:
    """Save weights with what it takes to rebuild the network; return the file size in bytes."""
    payload = {"format": "deep-ecg-model/1", "mode": mode, "kind": kind,
               "model_kwargs": model_kwargs or {}, "state_dict": model.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path_size(path)


def path_size(path) -> int:
    import os

    return os.path.getsize(path)


def load_model(path) -> tuple[nn.Module, dict]:
    """Rebuild a saved float32 or int8 model; returns (model in eval mode, its metadata)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != "deep-ecg-model/1":
        raise ValueError(f"{path} is not a Deep-ECG model file (saved by main.py as model_*.pt)")
    model = build_model(payload["mode"], **payload["model_kwargs"]).eval()
    if payload["kind"] == "dynamic-int8":
        model = quantize_dynamic(model)
    model.load_state_dict(payload["state_dict"])
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.eval(), meta
