"""Network shapes in both modes, and int8 models: smaller, close, and loadable again."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import data_loader as dl

import export
import quantize
from model import build_model


def _inputs(batch, mode, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, len(dl.WINDOW_CHANNELS), dl.WINDOW, generator=g),
            torch.rand(batch, len(dl.RR_FEATURES[mode]), generator=g) + 0.5)


@pytest.mark.parametrize("mode", dl.MODES)
@pytest.mark.parametrize("batch", [1, 7])
def test_output_is_batch_by_five_classes(mode, batch):
    torch.manual_seed(0)
    model = build_model(mode).eval()
    with torch.no_grad():
        out = model(*_inputs(batch, mode))
    assert out.shape == (batch, len(dl.CLASSES)) == (batch, 5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("mode", dl.MODES)
def test_rr_input_width_follows_the_mode(mode):
    model = build_model(mode)
    first_rr_linear = next(m for m in model.rr.modules() if isinstance(m, nn.Linear))
    assert first_rr_linear.in_features == len(dl.RR_FEATURES[mode])
    x, rr = _inputs(3, mode)
    with pytest.raises(RuntimeError):
        model.eval()(x, torch.cat([rr, rr[:, :1]], dim=1))  # one feature too many


def test_modes_differ_in_their_rr_features_not_their_window():
    assert dl.RR_FEATURES["diagnostic"] != dl.RR_FEATURES["realtime"]
    for mode in dl.MODES:
        assert build_model(mode).n_rr == len(dl.RR_FEATURES[mode])


def test_the_template_channel_changes_the_output():
    """The same beat judged against another patient's template gets other logits."""
    torch.manual_seed(0)
    model = build_model("diagnostic").eval()
    x, rr = _inputs(4, "diagnostic")
    other = x.clone()
    other[:, 1] = torch.roll(x[:, 1], 20, dims=1)
    with torch.no_grad():
        assert not torch.allclose(model(x, rr), model(other, rr))
        assert torch.equal(model(x, rr), model(x.clone(), rr))


def test_training_step_changes_the_output():
    torch.manual_seed(0)
    model = build_model("realtime")
    x, rr = _inputs(16, "realtime")
    y = torch.arange(16) % 5
    before = model.eval()(x, rr).detach().clone()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x, rr), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.allclose(model.eval()(x, rr), before)


# --------------------------------------------------------------------------- int8

def _predict(model, beats):
    with torch.no_grad():
        return model(torch.from_numpy(beats.x), torch.from_numpy(beats.rr))


def test_dynamic_int8_file_is_smaller_and_predictions_agree(trained_model, tmp_path):
    """Dynamic int8 of the linear layers runs in ONNX Runtime (PyTorch's quantized tensors are deprecated)."""
    from export import OnnxModel, export_onnx

    model, beats = trained_model.model, trained_model.beats
    f_size = quantize.save_model(model, tmp_path / "f.pt", "diagnostic", "float32")
    export_onnx(model, tmp_path / "f.onnx", len(dl.RR_FEATURES["diagnostic"]))
    quantize.quantize_dynamic_onnx(tmp_path / "f.onnx", tmp_path / "q.onnx")
    assert f_size == (tmp_path / "f.pt").stat().st_size and (tmp_path / "q.onnx").stat().st_size < f_size / 2
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "MatMulInteger" in ops and not {"Gemm", "MatMul"} & ops  # every linear layer in int8
    pred_f = _predict(model, beats).argmax(1).numpy()
    pred_q = OnnxModel(tmp_path / "q.onnx").predict_proba(beats.x, beats.rr).argmax(1)
    np.testing.assert_array_equal(pred_f, trained_model.pred)  # quantizing left the float model alone
    assert (pred_f == pred_q).mean() >= 0.98


def test_an_earlier_versions_dynamic_int8_file_gets_a_message_saying_how_to_remake_it(trained_model, tmp_path):
    quantize.save_model(trained_model.model, tmp_path / "model_int8.pt", "diagnostic", "dynamic-int8")
    with pytest.raises(export.StaleModelError, match=r"deprecated quantized tensors.*retrain the run with "
                                                 r"`python main.py --mode diagnostic`"):
        quantize.load_model(tmp_path / "model_int8.pt")


def test_load_model_round_trips(trained_model, tmp_path):
    model = trained_model.model
    path = tmp_path / "float32.pt"
    quantize.save_model(model, path, "diagnostic", "float32")
    loaded, meta = quantize.load_model(path)
    assert meta["mode"] == "diagnostic" and meta["kind"] == "float32"
    assert not loaded.training
    beats = trained_model.beats
    torch.testing.assert_close(_predict(loaded, beats), _predict(model, beats), rtol=0, atol=1e-6)


def test_load_model_round_trips_realtime(tmp_path):
    torch.manual_seed(3)
    model = build_model("realtime").eval()
    quantize.save_model(model, tmp_path / "rt.pt", "realtime", "float32")
    loaded, meta = quantize.load_model(tmp_path / "rt.pt")
    assert meta["mode"] == "realtime" and loaded.n_rr == len(dl.RR_FEATURES["realtime"])
    x, rr = _inputs(5, "realtime")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, rr), model(x, rr))


def test_load_model_rejects_other_files(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Deep-ECG model"):
        quantize.load_model(tmp_path / "other.pt")


def test_each_members_design_is_recorded_and_older_models_still_load(tmp_path):
    """Each member's design (RR width, RR scale, pooling) is recorded with the model, and a two-member
    diagnostic model is one network of each of the mode's designs; a model saved before any of it was recorded
    (one set of keyword arguments, or none) loads with the old width and raw RR inputs for every member."""
    from model import DESIGNS, LEGACY_RR_HIDDEN, RR_HIDDEN, net_kwargs

    for mode in dl.MODES:
        torch.manual_seed(0)
        model = build_model(mode, members=2).eval()
        assert [net_kwargs(m) for m in model.members] == [
            {"rr_hidden": RR_HIDDEN, "rr_scale": "raw", "pool": 1, **DESIGNS[mode][i % len(DESIGNS[mode])]}
            for i in range(2)]
        quantize.save_model(model, tmp_path / f"{mode}.pt", mode, "float32")
        loaded, _ = quantize.load_model(tmp_path / f"{mode}.pt")
        x, rr = _inputs(5, mode)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x, rr), model(x, rr))
    assert [net_kwargs(m)["rr_scale"] for m in build_model("diagnostic", members=2).members] == ["log", "log"]
    for members, recorded in ((1, {}), (1, {"rr_hidden": LEGACY_RR_HIDDEN}), (2, {"members": 2})):
        torch.manual_seed(0)
        old = build_model("diagnostic", members=members, rr_hidden=LEGACY_RR_HIDDEN, rr_scale="raw", pool=1).eval()
        quantize.save_model(old, tmp_path / "old.pt", "diagnostic", "float32")
        payload = torch.load(tmp_path / "old.pt", weights_only=False)
        payload["model_kwargs"] = recorded  # as earlier versions' models recorded them
        torch.save(payload, tmp_path / "old.pt")
        loaded, _ = quantize.load_model(tmp_path / "old.pt")
        x, rr = _inputs(5, "diagnostic")
        with torch.no_grad():
            torch.testing.assert_close(loaded(x, rr), old(x, rr))


def test_pooling_over_spans_keeps_the_output_and_refuses_none():
    from model import DualBranchNet

    x, rr = torch.randn(3, 2, 280), torch.randn(3, 9)
    assert DualBranchNet(9, pool=5)(x, rr).shape == DualBranchNet(9)(x, rr).shape == (3, 5)
    with pytest.raises(ValueError, match="pool must be at least 1"):
        DualBranchNet(9, pool=0)


def test_rr_scale_option_transforms_only_the_rr_inputs():
    from model import DualBranchNet

    torch.manual_seed(0)
    x, rr = torch.randn(4, 2, 280), torch.rand(4, 9) * 2 + 0.1  # intervals and ratios: positive
    raw = DualBranchNet(9).eval()
    logged = DualBranchNet(9, rr_scale="log").eval()
    logged.load_state_dict(raw.state_dict())  # same weights: the log is no layer of its own
    torch.testing.assert_close(logged(x, rr), raw(x, torch.log(rr)))
    assert not torch.allclose(logged(x, rr), raw(x, rr))
    with pytest.raises(ValueError, match="rr_scale must be one of raw, log"):
        DualBranchNet(9, rr_scale="sqrt")
