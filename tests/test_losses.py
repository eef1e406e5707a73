"""Focal loss: cross-entropy at gamma 0, down-weights easy beats, per-class alpha, guards."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losses import FocalLoss


def _batch(seed=0, n=64, k=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 3, torch.randint(0, k, (n,), generator=g)


def test_gamma_zero_is_cross_entropy():
    logits, target = _batch()
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target).item(), rel=1e-6)


def test_gamma_zero_gradient_is_cross_entropy_gradient():
    logits, target = _batch(1)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    FocalLoss(gamma=0.0)(a, target).backward()
    F.cross_entropy(b, target).backward()
    torch.testing.assert_close(a.grad, b.grad)


def _one(p_correct: float):
    """Logits of one 5-class example whose correct class (0) has probability p_correct."""
    other = (1 - p_correct) / 4
    return torch.log(torch.tensor([[p_correct, other, other, other, other]])), torch.tensor([0])


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_easy_examples_are_down_weighted_much_more_than_hard_ones(gamma):
    fl = FocalLoss(gamma=gamma)
    factor = {}
    for p in (0.95, 0.2):
        logits, target = _one(p)
        ce = F.cross_entropy(logits, target).item()
        factor[p] = fl(logits, target).item() / ce
        assert factor[p] == pytest.approx((1 - p) ** gamma, rel=1e-4)  # (1 - p_y)^gamma
    assert factor[0.95] < 0.3 * factor[0.2]  # (0.05 / 0.8)^gamma <= 0.25 for gamma >= 0.5
    if gamma >= 2:
        assert factor[0.95] < 0.01 * factor[0.2]


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_alpha_weights_each_example_by_its_class(gamma):
    alpha = [1.0, 4.0, 0.5, 2.0, 3.0]
    logits, target = _batch(2, n=40)
    plain = FocalLoss(gamma=gamma, alpha=None)
    weighted = FocalLoss(gamma=gamma, alpha=alpha)
    per_example = []
    for i in range(len(target)):
        li, ti = logits[i:i + 1], target[i:i + 1]
        lp, lw = plain(li, ti).item(), weighted(li, ti).item()
        assert lw == pytest.approx(alpha[ti.item()] * lp, rel=1e-5)
        per_example.append(lw)
    # the batch value is the mean of alpha_y * focal term, as documented
    assert weighted(logits, target).item() == pytest.approx(sum(per_example) / len(per_example), rel=1e-5)


def test_alpha_changes_which_class_dominates():
    logits = torch.zeros(2, 5)
    target = torch.tensor([0, 1])
    up_s = FocalLoss(gamma=1.0, alpha=[1, 10, 1, 1, 1])
    logits.requires_grad_()
    up_s(logits, target).backward()
    assert logits.grad[1].abs().sum() > 5 * logits.grad[0].abs().sum()


@pytest.mark.parametrize("gamma", [-0.5, -2])
def test_negative_gamma_is_rejected(gamma):
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=gamma)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
def test_confident_correct_example_gives_finite_loss_and_gradient(gamma):
    logits = torch.tensor([[40.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]], requires_grad=True)
    loss = FocalLoss(gamma=gamma)(logits, torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("gamma", [0.5])
def test_fractional_gamma_gradient_is_finite_for_confident_example(gamma):
    logits = torch.tensor([[40.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]], requires_grad=True)
    FocalLoss(gamma=gamma)(logits, torch.tensor([0, 1])).backward()
    assert torch.isfinite(logits.grad).all()
