"""Seed ensembles (`main.py --ensemble K`): K networks trained from their own seeds decide by their
mean logits, and every saved, quantized and exported form of the model keeps that."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import data_loader as dl
import main
import quantize
from conftest import FIXTURE_DIR, fixture_record, smoke_args
from export import OnnxModel, export_onnx
from model import DualBranchNet, SeedEnsemble, build_model, design, members_of
from train import TrainConfig, fit, fit_ensemble, member_seeds, predict_proba, seed_everything


@pytest.fixture(scope="module")
def beats(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    load = lambda recs: dl.load_beats(FIXTURE_DIR, recs, "diagnostic", cache, offline=True, progress=False)  # noqa: E731
    return load(["101", "106"]), load(["100", "103"])


@pytest.fixture(scope="module")
def ensemble(beats):
    train, _ = beats
    return fit_ensemble("diagnostic", train, None, TrainConfig(epochs=1, batch_size=128, seed=1), members=3,
                        progress=False)


def _logits(model, b):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(b.x), torch.from_numpy(b.rr))


def test_the_ensemble_decides_by_its_members_mean_log_probabilities(ensemble, beats):
    model, _, _ = ensemble
    test = beats[1]
    members = [_logits(m, test) for m in model.members]
    torch.testing.assert_close(_logits(model, test), torch.stack(members).mean(0))
    mean_logp = torch.stack([torch.log_softmax(z, 1) for z in members]).mean(0)
    np.testing.assert_array_equal(_logits(model, test).argmax(1).numpy(), mean_logp.argmax(1).numpy())


def test_members_are_trained_from_their_own_seeds(ensemble, beats):
    """Seed s with K members trains seeds K*s ... K*s+K-1: each member is the network that seed trains alone
    in that member's design (model.design), and the ensembles of two seeds share no member."""
    model, history, best = ensemble
    assert member_seeds(1, 3) == [3, 4, 5] and not set(member_seeds(0, 3)) & set(member_seeds(1, 3))
    assert isinstance(model, SeedEnsemble) and members_of(model) == 3 and best == [1, 1, 1]
    assert [(h["member"], h["seed"]) for h in history] == [(0, 3), (1, 4), (2, 5)]
    seed_everything(4)
    alone, _, _ = fit(build_model("diagnostic", member_kwargs=[design("diagnostic", 1)]), beats[0], None, TrainConfig(epochs=1, batch_size=128, seed=4),
                      progress=False)
    for k, v in alone.state_dict().items():
        assert torch.equal(v, model.members[1].state_dict()[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(model.members[0].state_dict().values(),
                                                    model.members[1].state_dict().values()))


def test_one_member_is_the_network_itself(beats):
    """--ensemble 1 is the single network main.py always trained: same seed, same weights."""
    train, _ = beats
    cfg = TrainConfig(epochs=1, batch_size=128, seed=2)
    one, _, best = fit_ensemble("diagnostic", train, None, cfg, members=1, progress=False)
    seed_everything(2)
    alone, _, _ = fit(build_model("diagnostic"), train, None, cfg, progress=False)
    assert isinstance(one, DualBranchNet) and best == [1]
    for k, v in alone.state_dict().items():
        assert torch.equal(v, one.state_dict()[k]), k


def test_an_ensemble_file_loads_as_the_same_ensemble(ensemble, beats, tmp_path):
    model = ensemble[0]
    quantize.save_model(model, tmp_path / "m.pt", "diagnostic", "float32")
    loaded, meta = quantize.load_model(tmp_path / "m.pt")
    assert meta["model_kwargs"] == {"members": 3, "member_kwargs": [design("diagnostic", i) | {"pool": design("diagnostic", i).get("pool", 1)} for i in range(3)]} and members_of(loaded) == 3
    torch.testing.assert_close(_logits(loaded, beats[1]), _logits(model, beats[1]), rtol=0, atol=1e-6)


def test_an_ensemble_exports_to_onnx_and_static_int8(ensemble, beats, tmp_path):
    model, test = ensemble[0], beats[1]
    n_rr = len(dl.RR_FEATURES["diagnostic"])
    export_onnx(model, tmp_path / "f.onnx", n_rr)
    ref = predict_proba(model, test.x, test.rr)
    np.testing.assert_allclose(OnnxModel(tmp_path / "f.onnx").predict_proba(test.x, test.rr), ref, atol=1e-5)
    cx, crr = quantize.calibration_beats(beats[0])
    quantize.quantize_static_onnx(tmp_path / "f.onnx", tmp_path / "q.onnx", cx, crr)
    got = OnnxModel(tmp_path / "q.onnx").predict_proba(test.x, test.rr)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.97
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node]
    assert not {"Conv", "Gemm", "MatMul"} & set(ops), f"float layers left: {sorted(set(ops))}"
    quantize.quantize_dynamic_onnx(tmp_path / "f.onnx", tmp_path / "d.onnx")
    got = OnnxModel(tmp_path / "d.onnx").predict_proba(test.x, test.rr)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.97


def test_main_trains_and_reports_an_ensemble_that_predict_uses(tmp_path):
    out = tmp_path / "run"
    assert main.main(smoke_args(out, tmp_path / "cache", "--ensemble", "2", "--seed", "3")) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["ensemble"] == 2 and config["member_seeds"] == [6, 7]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == [1, 1] and [h["seed"] for h in metrics["history"]] == [6, 7]
    assert "| network (seed) | epoch |" in (out / "report.md").read_text()
    model, meta = quantize.load_model(out / "model_float32.pt")
    assert members_of(model) == 2 and [m["rr_scale"] for m in meta["model_kwargs"]["member_kwargs"]] == ["log", "log"]
    pred = tmp_path / "pred"
    assert main.main(["predict", "--model", str(out), "--record", fixture_record("100"), "--out", str(pred)]) == 0
    assert any(pred.glob("*.csv"))
