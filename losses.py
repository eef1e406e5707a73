"""Focal loss (Lin et al. 2017) for the rare arrhythmia classes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Mean of -alpha_y (1 - p_y)^gamma log p_y. At gamma 0 and no alpha it is cross-entropy."""

    def __init__(self, gamma: float = 1.0, alpha=None):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
        # Clamped so that 0 < gamma < 1 keeps a finite gradient on confidently right beats (p -> 1).
        loss = -((1 - logp.exp()).clamp(min=1e-6) ** self.gamma * logp)
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()
