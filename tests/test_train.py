"""Training: same seed, same model; the kept checkpoint is the best one on validation patients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import data_loader as dl
from conftest import FIXTURE_DIR
from model import build_model
from train import TrainConfig, fit


@pytest.fixture(scope="module")
def beats(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    load = lambda recs: dl.load_beats(FIXTURE_DIR, recs, "diagnostic", cache, offline=True, progress=False)  # noqa: E731
    return load(["101", "106"]), load(["118", "124"])


def _train(beats, seed, epochs=3):
    train, val = beats
    torch.manual_seed(1234)  # same initial weights: what differs is fit's own sampling and augmentation
    model = build_model("diagnostic")
    cfg = TrainConfig(epochs=epochs, batch_size=128, seed=seed)
    return fit(model, train, val, cfg, progress=False)


def test_same_seed_gives_the_same_model(beats):
    (a, ha, ea), (b, hb, eb) = _train(beats, seed=7), _train(beats, seed=7)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert ha == hb and ea == eb


def test_another_seed_gives_another_model(beats):
    a, _, _ = _train(beats, seed=7)
    b, _, _ = _train(beats, seed=8)
    assert any(not torch.equal(va, vb) for va, vb in zip(a.state_dict().values(), b.state_dict().values()))


def test_main_with_the_same_seed_writes_the_same_model(tmp_path):
    import main
    from conftest import smoke_args

    states = []
    for run in ("a", "b"):
        assert main.main(smoke_args(tmp_path / run, tmp_path / "cache", "--seed", "5")) == 0
        states.append(torch.load(tmp_path / run / "model_float32.pt", weights_only=False)["state_dict"])
    for k, v in states[0].items():
        assert torch.equal(v, states[1][k]), k


def test_kept_checkpoint_is_the_best_validation_epoch(beats):
    model, history, best_epoch = _train(beats, seed=3, epochs=4)
    scores = [h["val_macro_f1_nsv"] for h in history]
    assert best_epoch == 1 + int(np.argmax(scores))
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_training_without_validation_keeps_the_last_epoch(beats):
    train, _ = beats
    model, history, best_epoch = fit(build_model("diagnostic"), train, None,
                                     TrainConfig(epochs=2, batch_size=128, seed=0), progress=False)
    assert best_epoch == 2 and len(history) == 2 and "val_loss" not in history[0]


def test_s_offset_is_folded_into_the_model(beats):
    """--s-offset moves only the S logit, by exactly the offset, so every copy of the model keeps it."""
    train, val = beats
    kept = {}
    for off in (0.0, 2.0):
        torch.manual_seed(1234)
        cfg = TrainConfig(epochs=1, batch_size=128, seed=3, s_offset=off)
        kept[off], _, _ = fit(build_model("diagnostic"), train, None, cfg, progress=False)
    x, rr = torch.from_numpy(val.x), torch.from_numpy(val.rr)
    with torch.no_grad():
        diff = (kept[2.0].eval()(x, rr) - kept[0.0].eval()(x, rr)).numpy()
    s = dl.CLASSES.index("S")
    np.testing.assert_allclose(diff[:, s], 2.0, atol=1e-5)
    np.testing.assert_allclose(np.delete(diff, s, axis=1), 0.0, atol=1e-5)
