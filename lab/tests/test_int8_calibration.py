"""lab/int8_calibration.py (DS1 CV round 41): a saved cross-validation network is rebuilt at its own
width and scored on held-out beats as float and as static int8 under each calibration method."""
from __future__ import annotations

import numpy as np
import torch

import data_loader as dl
from conftest import import_lab
from model import LEGACY_RR_HIDDEN, DualBranchNet


def test_saved_networks_load_at_their_width(tmp_path):
    cv = import_lab("cv")
    for kw, width in (({"rr_hidden": 64}, 64), ({}, LEGACY_RR_HIDDEN)):  # recorded; a file from before
        net = DualBranchNet(n_rr=9, rr_hidden=width)
        torch.save({"state_dict": net.state_dict(), "n_rr": 9, "model_kw": kw}, tmp_path / "m.pt")
        loaded = cv.load_saved_model(tmp_path / "m.pt")
        assert loaded.rr_hidden == width and not loaded.training
        x, rr = torch.randn(4, 2, dl.WINDOW), torch.randn(4, 9)
        assert torch.equal(loaded(x, rr), net.eval()(x, rr))


def test_a_cross_validation_job_trains_the_products_network_for_its_mode():
    """cv's base is the product's (first) network of the job's mode (model.design; round 49's log RR inputs in
    diagnostic mode), and a config's model_* keys change it."""
    from model import design, net_kwargs

    cv = import_lab("cv")
    for mode in dl.MODES:
        net = cv.job_network(mode, len(dl.RR_FEATURES[mode]), {})
        assert net_kwargs(net) == {"pool": 1, **design(mode, 0)}
    assert cv.job_network("diagnostic", 9, {"rr_scale": "raw", "rr_hidden": 32}).rr_scale == "raw"


def test_each_calibration_scores_every_held_out_beat(tmp_path, fixture_dir):
    calib = import_lab("int8_calibration")
    train = dl.load_beats(fixture_dir, ["101", "106"], "diagnostic", tmp_path / "cache", offline=True, progress=False)
    test = dl.load_beats(fixture_dir, ["100"], "diagnostic", tmp_path / "cache", offline=True, progress=False)
    torch.manual_seed(0)
    net = DualBranchNet(n_rr=train.rr.shape[1])
    torch.save({"state_dict": net.state_dict(), "n_rr": train.rr.shape[1], "model_kw": {"rr_hidden": net.rr_hidden}},
               tmp_path / "m.pt")
    out = calib.score_job(tmp_path / "m.pt", train, test, seed=0)
    assert set(out) == {"float", *(f"int8 {m}" for m in calib.METHODS)}
    for cm in out.values():
        assert np.array(cm).sum() == len(test.y)
