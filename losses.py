"""Focal loss (Lin et al. 2017) for the rare arrhythmia classes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Mean of -alpha_y (1 - p_y)^gamma log p_y. At gamma 0 and no alpha it is cross-entropy.

    smoothing (label smoothing, Szegedy et al. 2016): the target is 1 - smoothing on the beat's class and
    smoothing / classes on each class: -alpha_y sum_c q_c (1 - p_c)^gamma log p_c."""

    def __init__(self, gamma: float = 1.0, alpha=None, smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.gamma, self.smoothing = gamma, smoothing
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp_all = F.log_softmax(logits, dim=1)
        q = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        if self.smoothing:
            q = q * (1 - self.smoothing) + self.smoothing / logits.shape[1]
        else:  # (the target class alone: as before, without the other classes' terms)
            logp_all = logp_all.gather(1, target[:, None])
            q = torch.ones_like(logp_all)
        # Clamped so that 0 < gamma < 1 keeps a finite gradient on confidently right beats (p -> 1).
        loss = -(q * (1 - logp_all.exp()).clamp(min=1e-6) ** self.gamma * logp_all).sum(1)
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()
