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


def test_heart_rate_augmentation_is_the_same_beats_at_another_rate(beats):
    """rr_rate scales a beat's intervals in seconds by one factor, within bounds, so its ratios still
    describe them; the ratio inputs are left as they are."""
    from train import scale_rates

    train, _ = beats
    names = dl.RR_FEATURES["diagnostic"]
    seconds = torch.tensor(["/" not in n for n in names])
    rr = torch.from_numpy(train.rr)
    out = scale_rates(rr, seconds, 0.3, torch.Generator().manual_seed(0))
    factor = out[:, seconds] / rr[:, seconds]
    assert torch.allclose(factor, factor[:, :1].expand_as(factor), rtol=1e-5)
    assert factor.min() >= 1 / 1.3 - 1e-6 and factor.max() <= 1.3 + 1e-6 and factor.std() > 0.05
    assert torch.equal(out[:, ~seconds], rr[:, ~seconds])
    col = {n: i for i, n in enumerate(names)}
    for ratio in ("pre/long", "post/slow", "post/pre"):
        a, b = ratio.split("/")
        torch.testing.assert_close(out[:, col[a]] / out[:, col[b]], rr[:, col[ratio]], rtol=1e-4, atol=1e-5)


def test_heart_rate_augmentation_needs_the_rr_column_names(beats):
    train, _ = beats
    cfg = TrainConfig(epochs=1, batch_size=128, rr_rate=0.3)
    with pytest.raises(ValueError, match="names of the 9 RR columns"):
        fit(build_model("diagnostic"), train, None, cfg, progress=False)
    model, _, _ = fit(build_model("diagnostic"), train, None, cfg, progress=False,
                      rr_names=dl.RR_FEATURES["diagnostic"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_template_swap_gives_some_beats_their_own_template(beats):
    """template_self replaces a beat's template by the beat itself, for about that share of the beats,
    and leaves the beats and the other templates as they were (the input is not changed in place)."""
    from train import swap_templates

    train, _ = beats
    x = torch.from_numpy(train.x)
    before = x.clone()
    out = swap_templates(x, 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(x, before)
    swapped = (out[:, 1] == out[:, 0]).all(dim=1) & ~(x[:, 1] == x[:, 0]).all(dim=1)
    assert 0.2 < swapped.float().mean() < 0.3
    assert torch.equal(out[:, 0], x[:, 0])
    assert torch.equal(out[~swapped, 1], x[~swapped, 1])
    assert torch.equal(swap_templates(x, 0.0, torch.Generator().manual_seed(0)), x)
    # a four-channel input (two leads): each lead's template becomes that lead's own beat
    two = torch.cat([x, x.flip(0)], dim=1)
    both = swap_templates(two, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(both[:, 1], two[:, 0]) and torch.equal(both[:, 3], two[:, 2])


def test_time_warp_stretches_each_beat_about_its_r_peak(beats):
    """time_warp moves a wave 20 samples after the R-peak to between 20/(1+w) and 20(1+w) samples
    after it, the R-peak staying put, beat and template alike; a warp of 0 changes nothing."""
    from train import warp_times

    n = 400
    x = torch.zeros(n, 2, dl.WINDOW)
    r = dl.WINDOW_BEFORE
    x[:, :, r] = 1.0
    x[:, :, r + 15:r + 26] = 2 - 0.4 * (torch.arange(11) - 5).abs()  # a triangle, its peak at r + 20
    out = warp_times(x, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], out[:, 1])
    assert torch.allclose(out[:, 0, r], torch.ones(n))
    wave = out[:, 0, r + 5:] * torch.arange(r + 5, dl.WINDOW)  # the wave's centre of mass, R-peak left out
    centre = wave.sum(1) / out[:, 0, r + 5:].sum(1) - r
    assert centre.min() >= 20 / 1.2 - 0.5 and centre.max() <= 20 * 1.2 + 0.5
    assert centre.std() > 1.0  # each beat its own factor
    train, _ = beats
    real = torch.from_numpy(train.x[:64])
    torch.testing.assert_close(warp_times(real, 1e-9, torch.Generator().manual_seed(0)), real, atol=1e-4, rtol=0)


def test_sharpness_aware_gradient_is_taken_uphill_and_leaves_weights_and_statistics():
    """SAM's gradient is the loss's gradient at the weights moved rho along the plain gradient; the weights
    and the batch-norm statistics are as before."""
    from torch import nn

    from train import sharpness_aware_gradient

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).train()
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    loss_of = lambda: nn.functional.cross_entropy(model(x), y)  # noqa: E731
    loss_of().backward()
    params = list(model.parameters())
    weights, grads = [p.detach().clone() for p in params], [p.grad.clone() for p in params]
    stats = [model[1].running_mean.clone(), model[1].running_var.clone(), model[1].num_batches_tracked.clone()]
    rho = 0.5
    sharpness_aware_gradient(model, loss_of, rho)
    assert all(torch.equal(p, w) for p, w in zip(params, weights))
    assert torch.equal(model[1].running_mean, stats[0]) and torch.equal(model[1].running_var, stats[1])
    assert torch.equal(model[1].num_batches_tracked, stats[2])
    norm = torch.norm(torch.stack([g.norm() for g in grads]))
    moved = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).train()
    moved.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p, g in zip(moved.parameters(), grads):
            p.add_(g * rho / norm)
    nn.functional.cross_entropy(moved(x), y).backward()
    for p, q in zip(params, moved.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert not all(torch.allclose(p.grad, g) for p, g in zip(params, grads))  # not the plain gradient
