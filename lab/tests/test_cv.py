"""lab/cv.py: every config builds its network and training, and a job runs on the fixture with the values its
config passes (no global of data_loader changed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import data_loader as dl
from conftest import FIXTURE_DIR, import_lab
from variants import LabTrainConfig

cv = import_lab("cv")
GLOBALS = ("LONG_SECONDS", "SLOW_QUANTILE", "TEMPLATE_BEATS", "RR_FEATURES", "LOCAL_BEATS")


@pytest.mark.parametrize("mode", dl.MODES)
def test_every_config_builds_its_network_and_training(mode):
    for name in cv.CONFIGS:
        s = cv.job_settings(name, mode, epochs=2, seed=1)
        assert isinstance(s["cfg"], LabTrainConfig) and s["cfg"].seed == 1 and s["cfg"].epochs >= 2, name
        assert set(s["data"]) == set(cv.DATA_DEFAULTS), name
        rr_names = s["rr_names"] or dl.RR_FEATURES[mode]
        n_rr = len(rr_names) + bool(s["rr_irregularity"]) + bool(s["amplitude"])
        net = cv.job_network(mode, n_rr, s["model_kw"])
        channels = 1 if s["model_kw"].get("template") is False else 2 * s["model_kw"].get("leads", 1)
        x, rr = torch.randn(2, channels, dl.WINDOW), torch.rand(2, n_rr) + 0.5
        assert net.eval()(x, rr).shape == (2, len(dl.CLASSES)), name


@pytest.mark.parametrize("config", ["base", "template16", "ontime80", "gamma2_two_templates", "rr_rate30"])
def test_a_tiny_job_runs_on_the_fixture(config, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "DS1", ["101", "106", "118"])
    monkeypatch.setattr(dl, "DS1_FOLDS", (("118",), ("101", "106")))
    before = {name: getattr(dl, name) for name in GLOBALS}
    job = dict(config=config, mode="diagnostic", fold=0, seed=0, data_dir=str(FIXTURE_DIR), cache_dir=str(tmp_path),
               epochs=1, device="cpu", threads=1, select=False, save_predictions=None, save_models=None)
    r = cv.run_job(job)
    assert {name: getattr(dl, name) for name in GLOBALS} == before  # values passed, never set
    held = dl.load_beats(FIXTURE_DIR, ["118"], "diagnostic", tmp_path, offline=True, progress=False)
    assert np.array(r["confusion"]).sum() == len(held) == len(r["logp"])
    assert np.isfinite(r["logp"]).all()


def test_template_length_reaches_the_beats_and_their_cache_key(tmp_path):
    beats = {k: dl.load_beats(FIXTURE_DIR, ["101"], "realtime", tmp_path, offline=True, progress=False,
                              template_beats=k) for k in (16, 32)}
    np.testing.assert_array_equal(beats[16].x[:, 0], beats[32].x[:, 0])
    np.testing.assert_array_equal(beats[16].x[:, 1], dl.beat_templates(beats[16].x[:, 0], 16))
    assert not np.array_equal(beats[16].x[:, 1], beats[32].x[:, 1])
    assert len(list(tmp_path.glob("101-*.npz"))) == 2
