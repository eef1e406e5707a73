"""lab/variants.py: the lab's network, loss, training and template variants. At their defaults each is the
product's, bit for bit; each option does what its round compared."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import data_loader as dl
from conftest import FIXTURE_DIR
from model import DualBranchNet, build_model
from train import TrainConfig
from train import fit as product_fit
from variants import (AvgMaxPool, LabNet, LabTrainConfig, SmoothedFocalLoss, SqueezeExcite, fit, on_time,
                      on_time_templates, scale_rates, sharpness_aware_gradient, swap_templates, warp_times)

WB, W = dl.WINDOW_BEFORE, dl.WINDOW


@pytest.fixture(scope="module")
def beats(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    load = lambda recs: dl.load_beats(FIXTURE_DIR, recs, "diagnostic", cache, offline=True, progress=False)  # noqa: E731
    return load(["101", "106"]), load(["118", "124"])


def _inputs(batch, n_rr=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, W, generator=g), torch.rand(batch, n_rr, generator=g) + 0.5


# --------------------------------------------------------------------------- network

@pytest.mark.parametrize("kwargs", [{}, {"rr_scale": "log", "pool": 7}, {"channels": (16, 32, 48, 64), "rr_hidden": 32}])
def test_labnet_at_its_defaults_is_the_products_network(kwargs):
    torch.manual_seed(3)
    product = DualBranchNet(9, **kwargs)
    torch.manual_seed(3)
    lab = LabNet(9, **kwargs)
    assert list(product.state_dict()) == list(lab.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(product.state_dict().values(), lab.state_dict().values()))
    x, rr = _inputs(5)
    assert torch.equal(product.eval()(x, rr), lab.eval()(x, rr))


@pytest.mark.parametrize("kwargs", [{"se": True}, {"global_max": True}, {"global_max": True, "pool": 5},
                                    {"rr_scale": "batchnorm"}, {"cnn_dropout": 0.25}, {"template": False},
                                    {"leads": 2}])
def test_each_lab_option_builds_and_runs(kwargs):
    torch.manual_seed(0)
    net = LabNet(9, **kwargs)
    channels = 1 if kwargs.get("template") is False else 2 * kwargs.get("leads", 1)
    x, rr = torch.randn(3, channels, W), torch.rand(3, 9) + 0.5
    assert net.train()(x, rr).shape == net.eval()(x, rr).shape == (3, 5)


def test_a_second_lead_is_judged_against_its_own_template():
    """leads=2 (cross-validation's second-lead comparison): beat and template of each lead, in order."""
    torch.manual_seed(0)
    model = LabNet(9, leads=2).eval()
    x, rr = _inputs(4)
    x2 = torch.cat([x, x.flip(0)], dim=1)  # (batch, 4, WINDOW)
    moved = x2.clone()
    moved[:, 3] = torch.roll(x2[:, 3], 20, dims=1)  # the second lead's template
    with torch.no_grad():
        assert model(x2, rr).shape == (4, 5)
        assert not torch.allclose(model(x2, rr), model(moved, rr))
        with pytest.raises(RuntimeError):
            model(x, rr)  # one lead's channels only


def test_squeeze_excitation_and_max_pooling():
    x = torch.tensor([[[0.0, 1.0, 2.0, 9.0]]])
    torch.testing.assert_close(AvgMaxPool()(x), torch.tensor([[[3.0], [9.0]]]))  # mean, then maximum
    torch.testing.assert_close(AvgMaxPool(2)(x), torch.tensor([[[0.5, 5.5], [1.0, 9.0]]]))
    se = SqueezeExcite(8)
    nn.init.zeros_(se.gate[2].weight), nn.init.constant_(se.gate[2].bias, 0.0)  # every gate sigmoid(0) = 0.5
    h = torch.randn(2, 8, 10)
    torch.testing.assert_close(se(h), h / 2)


def test_rr_batchnorm_standardises_the_rr_inputs_first():
    bn = LabNet(9, rr_scale="batchnorm")
    assert isinstance(bn.rr[0], nn.BatchNorm1d) and bn.rr[0].num_features == 9 and bn.rr_scale == "batchnorm"
    assert not any(isinstance(m, nn.BatchNorm1d) for m in LabNet(9).rr)
    with pytest.raises(ValueError, match="rr_scale must be one of raw, log, batchnorm"):
        LabNet(9, rr_scale="sqrt")


# --------------------------------------------------------------------------- loss

def test_label_smoothing_spreads_the_target():
    """At gamma 0, smoothing e is cross-entropy against (1 - e) on the class and e / classes on each; at 0
    it is the product's loss, bit for bit."""
    from losses import FocalLoss

    torch.manual_seed(0)
    logits, target = torch.randn(8, 5), torch.randint(0, 5, (8,))
    q = torch.nn.functional.one_hot(target, 5) * 0.9 + 0.1 / 5
    expected = -(q * torch.log_softmax(logits, 1)).sum(1).mean()
    assert SmoothedFocalLoss(gamma=0.0, smoothing=0.1)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(SmoothedFocalLoss(gamma=2.0)(logits, target), FocalLoss(gamma=2.0)(logits, target))
    with pytest.raises(ValueError, match="smoothing must be in"):
        SmoothedFocalLoss(smoothing=1.0)


# --------------------------------------------------------------------------- training

def test_lab_fit_without_options_trains_the_products_model(beats):
    train, val = beats
    out = []
    for trainer, cfg in ((product_fit, TrainConfig(epochs=1, batch_size=128)),
                         (fit, LabTrainConfig(epochs=1, batch_size=128))):
        torch.manual_seed(0)
        model, history, _ = trainer(build_model("diagnostic"), train, val, cfg, progress=False)
        out.append((model.state_dict(), history))
    assert out[0][1] == out[1][1]
    assert all(torch.equal(a, b) for a, b in zip(out[0][0].values(), out[1][0].values()))


@pytest.mark.parametrize("option", [{"rr_rate": 0.3}, {"template_self": 0.25}, {"time_warp": 0.15},
                                    {"sam_rho": 0.05}, {"label_smoothing": 0.1}])
def test_each_training_option_changes_the_model(beats, option):
    train, _ = beats
    models = []
    for cfg in (LabTrainConfig(epochs=1, batch_size=128), LabTrainConfig(epochs=1, batch_size=128, **option)):
        torch.manual_seed(0)
        models.append(fit(build_model("diagnostic"), train, None, cfg, progress=False,
                          rr_names=dl.RR_FEATURES["diagnostic"])[0])
    assert all(torch.isfinite(p).all() for p in models[1].parameters())
    assert not all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()))


def test_heart_rate_augmentation_is_the_same_beats_at_another_rate(beats):
    """rr_rate scales a beat's intervals in seconds by one factor, within bounds, so its ratios still
    describe them; the ratio inputs are left as they are."""
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
    cfg = LabTrainConfig(epochs=1, batch_size=128, rr_rate=0.3)
    with pytest.raises(ValueError, match="names of the RR columns"):
        fit(build_model("diagnostic"), train, None, cfg, progress=False)
    with pytest.raises(ValueError, match="names of the 9 RR columns"):
        fit(build_model("diagnostic"), train, None, cfg, progress=False, rr_names=("pre", "post"))


def test_template_swap_gives_some_beats_their_own_template(beats):
    """template_self replaces a beat's template by the beat itself, for about that share of the beats,
    and leaves the beats and the other templates as they were (the input is not changed in place)."""
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
    n = 400
    x = torch.zeros(n, 2, W)
    r = WB
    x[:, :, r] = 1.0
    x[:, :, r + 15:r + 26] = 2 - 0.4 * (torch.arange(11) - 5).abs()  # a triangle, its peak at r + 20
    out = warp_times(x, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], out[:, 1])
    assert torch.allclose(out[:, 0, r], torch.ones(n))
    wave = out[:, 0, r + 5:] * torch.arange(r + 5, W)  # the wave's centre of mass, R-peak left out
    centre = wave.sum(1) / out[:, 0, r + 5:].sum(1) - r
    assert centre.min() >= 20 / 1.2 - 0.5 and centre.max() <= 20 * 1.2 + 0.5
    assert centre.std() > 1.0  # each beat its own factor
    train, _ = beats
    real = torch.from_numpy(train.x[:64])
    torch.testing.assert_close(warp_times(real, 1e-9, torch.Generator().manual_seed(0)), real, atol=1e-4, rtol=0)


def test_sharpness_aware_gradient_is_taken_uphill_and_leaves_weights_and_statistics():
    """SAM's gradient is the loss's gradient at the weights moved rho along the plain gradient; the weights
    and the batch-norm statistics are as before."""
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


# --------------------------------------------------------------------------- templates of on-time beats

def _zscore(v):
    v = np.asarray(v, dtype=np.float64)
    return (v - v.mean()) / v.std()


def test_the_template_is_made_of_on_time_beats_only():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(80, W)).astype(np.float32)
    mask = rng.random(80) < 0.4
    mask[0] = True
    t = on_time_templates(w, on_time=mask)
    ok = np.flatnonzero(mask)
    np.testing.assert_array_equal(t[0], w[0])  # nothing before it: its own template
    for i in (1, 10, 50, 79):
        np.testing.assert_array_equal(t[i], np.median(w[ok[ok < i][-dl.TEMPLATE_BEATS:]], axis=0))
    np.testing.assert_array_equal(on_time_templates(w, on_time=mask, from_beat=33), t[33:])
    for beats in (16, 32):  # every beat on time: the product's templates
        np.testing.assert_array_equal(on_time_templates(w, np.ones(80, bool), beats), dl.beat_templates(w, beats))
        np.testing.assert_array_equal(on_time_templates(w, None, beats, from_beat=40),
                                      dl.beat_templates(w, beats, from_beat=40))


def _pauses_and_premature_runs():
    """A slow sinus beat after each 1.8 s pause, then four premature beats 0.7 s apart, 20 times."""
    rr = np.tile([1.8, 0.7, 0.7, 0.7, 0.7], 20)
    peaks = np.round(np.concatenate([[1.0], 1.0 + np.cumsum(rr)]) * dl.FS).astype(np.int64)
    sinus = np.r_[False, rr > 1]
    sinus[0] = True
    return peaks, sinus


def test_on_time_beats_are_those_not_early_against_the_slow_rhythm():
    peaks, sinus = _pauses_and_premature_runs()
    m = on_time(peaks, 0.8)
    np.testing.assert_array_equal(m, sinus)  # 0.7 / 1.8 = 0.39: early; a beat after a pause: on time
    np.testing.assert_array_equal(on_time(peaks[:37], 0.8), m[:37])  # past beats only
    np.testing.assert_array_equal(on_time(peaks, 0.8, from_beat=60), m[60:])
    assert on_time(peaks, 0.0).all()


def test_premature_beats_stand_out_where_they_are_most_beats():
    """A patient whose beats are mostly premature, with their own P wave: against the median of
    every recent beat (the product's template) the premature beats look normal and the sinus beats odd;
    against the on-time beats' template, the other way round."""
    peaks, sinus = _pauses_and_premature_runs()
    t = np.arange(W)
    qrs = np.exp(-0.5 * ((t - WB) / 6.0) ** 2)
    p_sinus, p_early = (0.3 * np.exp(-0.5 * ((t - WB + d) / 10.0) ** 2) for d in (70, 40))
    w = np.array([_zscore(qrs + (p_sinus if s else p_early)) for s in sinus], np.float32)
    diff = lambda template: np.abs(w - template).mean(axis=1)  # noqa: E731
    later = np.arange(len(w)) >= 20
    for template, odd, usual in ((dl.with_templates(w)[:, 1], sinus, ~sinus),
                                 (on_time_templates(w, on_time(peaks, 0.8)), ~sinus, sinus)):
        d = diff(template)
        assert d[odd & later].min() > 5 * d[usual & later].max()
