"""The lab's variants of the product's network, loss, training and templates: what DS1 cross-validation compared
and did not adopt (lab/README.md). Each is a subclass of the product's class or a hook into its training, so that
every config of cv.py still runs as it ran when these were options of the product."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import data_loader as dl
import train
from config import CHANNELS, DROPOUT, HIDDEN, KERNELS, RR_HIDDEN
from losses import FocalLoss
from model import RR_LOG_FLOOR, DualBranchNet, conv_block

RR_SCALES = ("raw", "log", "batchnorm")  # the product's two, and each input standardised by a batch-norm layer


# --------------------------------------------------------------------------- network

class SqueezeExcite(nn.Module):
    """Channel gating (Hu et al. 2018): each channel scaled by a gate in (0, 1) computed from all
    channels' means over the window, so a beat's own features choose which channels count."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(channels, max(channels // reduction, 1)), nn.ReLU(),
                                  nn.Linear(max(channels // reduction, 1), channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(-1)).unsqueeze(-1)


class AvgMaxPool(nn.Module):
    """Each channel's mean and maximum over each of `spans` equal spans of the window, side by side:
    the mean of a feature found once (an ectopic P wave) is diluted by the window's length, its maximum
    is not."""

    def __init__(self, spans: int = 1):
        super().__init__()
        self.avg, self.max = nn.AdaptiveAvgPool1d(spans), nn.AdaptiveMaxPool1d(spans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.avg(x), self.max(x)], dim=1)


def se_conv_block(c_in: int, c_out: int, k: int) -> nn.Sequential:
    """model.conv_block with squeeze-excitation gating after its ReLU."""
    conv, norm, relu, pool = conv_block(c_in, c_out, k)
    return nn.Sequential(conv, norm, relu, SqueezeExcite(c_out), pool)


LAB_OPTIONS = {"template": True, "leads": 1, "cnn_dropout": 0.0, "se": False, "global_max": False}


class LabNet(DualBranchNet):
    """DualBranchNet with the options cross-validation compared (cv.py's model_* keys), at their defaults the
    product's network itself, weight for weight.

    template=False: (batch, 1, WINDOW), the beat alone; leads=2: (batch, 4, WINDOW), beat and template of a
    second lead after the first's. cnn_dropout: in training, the CNN features of that fraction of beats are
    zeroed (the others scaled up to keep their mean), so the head learns to decide from the RR branch alone
    too. se: squeeze-excitation gating in each convolution block; global_max: each feature map's maximum
    beside its mean; rr_scale="batchnorm": each RR input standardised by a batch-norm layer.
    """

    def __init__(self, n_rr: int, channels=CHANNELS, rr_hidden: int = RR_HIDDEN, hidden: int = HIDDEN,
                 dropout: float = DROPOUT, template: bool = True, leads: int = 1, pool: int = 1,
                 cnn_dropout: float = 0.0, se: bool = False, global_max: bool = False, rr_scale: str = "raw"):
        if rr_scale not in RR_SCALES:
            raise ValueError(f"rr_scale must be one of {', '.join(RR_SCALES)}, got {rr_scale!r}")
        options = dict(template=template, leads=leads, cnn_dropout=cnn_dropout, se=se, global_max=global_max)
        rng = torch.random.get_rng_state()
        super().__init__(n_rr, channels, rr_hidden, hidden, dropout, pool,
                         "raw" if rr_scale == "batchnorm" else rr_scale)
        self.template, self.leads, self.cnn_dropout, self.rr_scale = template, leads, cnn_dropout, rr_scale
        if options == LAB_OPTIONS and rr_scale != "batchnorm":
            return  # the product's network
        # Built again from the same random state, in the product's order (CNN, RR branch, head), as the product
        # built these options when they were its own: each config's initial weights are those it ran with.
        torch.random.set_rng_state(rng)
        layers, c_in = [], (2 if template else 1) * leads
        for c_out, k in zip(channels, KERNELS):
            layers.append(se_conv_block(c_in, c_out, k) if se else conv_block(c_in, c_out, k))
            c_in = c_out
        self.cnn = nn.Sequential(*layers, AvgMaxPool(pool) if global_max else nn.AdaptiveAvgPool1d(pool), nn.Flatten())
        c_in *= pool * (2 if global_max else 1)
        self.rr = nn.Sequential(*([nn.BatchNorm1d(n_rr)] if rr_scale == "batchnorm" else []),
                                nn.Linear(n_rr, rr_hidden), nn.ReLU(), nn.Linear(rr_hidden, rr_hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in + rr_hidden, hidden),
                                  nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, len(dl.CLASSES)))

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        if self.template:  # each lead's beat and its difference from the lead's template
            pairs = [(x[:, i:i + 1], x[:, i + 1:i + 2]) for i in range(0, 2 * self.leads, 2)]
            x = torch.cat([t for beat, template in pairs for t in (beat, beat - template)], dim=1)
        features = self.cnn(x)
        if self.training and self.cnn_dropout > 0:  # whole beats' CNN features, not single units
            keep = (torch.rand(len(features), 1, device=features.device) >= self.cnn_dropout).to(features.dtype)
            features = features * keep / (1 - self.cnn_dropout)
        if self.rr_log:
            rr = torch.log(rr.clamp_min(RR_LOG_FLOOR))
        return self.head(torch.cat([features, self.rr(rr)], dim=1))


# --------------------------------------------------------------------------- loss

class SmoothedFocalLoss(FocalLoss):
    """FocalLoss with label smoothing (Szegedy et al. 2016): the target is 1 - smoothing on the beat's class and
    smoothing / classes on each class: -alpha_y sum_c q_c (1 - p_c)^gamma log p_c. 0: the product's loss."""

    def __init__(self, gamma: float = 1.0, alpha=None, smoothing: float = 0.0):
        super().__init__(gamma, alpha)
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.smoothing:
            return super().forward(logits, target)
        logp_all = F.log_softmax(logits, dim=1)
        q = F.one_hot(target, logits.shape[1]).to(logits.dtype) * (1 - self.smoothing) + self.smoothing / logits.shape[1]
        loss = -(q * (1 - logp_all.exp()).clamp(min=1e-6) ** self.gamma * logp_all).sum(1)
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


# --------------------------------------------------------------------------- training

@dataclass
class LabTrainConfig(train.TrainConfig):
    # Heart-rate augmentation: each training beat's intervals in seconds (the RR inputs that are not
    # ratios) scaled by one random factor, log-uniform in [1/(1+rr_rate), 1+rr_rate]; the ratios,
    # unchanged by a change of rate, are left alone. Patients differ in rate more than DS1 shows. 0: off.
    rr_rate: float = 0.0
    # Template swap: each training beat's template is, with this probability, the beat itself: the
    # template of a patient whose recent beats are mostly like this one (a run of premature beats,
    # bigeminy), where only the RR inputs and the beat's own shape can tell its class. 0: off.
    template_self: float = 0.0
    # Time warp: each training beat and its template stretched in time about the R-peak by one random
    # factor, log-uniform in [1/(1+time_warp), 1+time_warp]: patients differ in QRS width and in where
    # the T wave falls (the QT interval follows the heart rate). 0: off.
    time_warp: float = 0.0
    # Sharpness-aware minimisation (Foret et al. 2021): each step's gradient is taken at the weights moved
    # by this distance (L2, all weights together) uphill, so the minimum found is flat around it: a wide
    # minimum is said to carry better to data unlike the training set (here: unseen patients). Twice the
    # cost per step. 0: off.
    sam_rho: float = 0.0
    # Label smoothing in the focal loss (SmoothedFocalLoss): 1 - this on the beat's class, the rest spread
    # over all classes, so no beat is learnt with certainty. 0: off.
    label_smoothing: float = 0.0

def is_ratio(name: str) -> bool:
    """An RR feature name 'a/b' is a ratio (unchanged by the heart rate); any other is in seconds."""
    return "/" in name


def log_uniform(n: int, spread: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 1) random factors, log-uniform in [1/(1+spread), 1+spread]."""
    return torch.exp((2 * torch.rand(n, 1, generator=gen) - 1) * math.log1p(spread))


def swap_templates(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """x (batch, 2 per lead, WINDOW) with each beat's template channels, with probability p per beat,
    replaced by the beat's own channels."""
    swap = (torch.rand(len(x), generator=gen) < p).to(x.device)
    out = x.clone()
    out[swap, 1::2] = x[swap, 0::2]
    return out


def warp_times(x: torch.Tensor, warp: float, gen: torch.Generator) -> torch.Tensor:
    """x (batch, channels, WINDOW) with each beat's channels stretched about the R-peak (sample
    WINDOW_BEFORE) by one factor, log-uniform in [1/(1+warp), 1+warp]; linear interpolation, the
    window's edge values beyond its ends."""
    n, _, w = x.shape
    factor = log_uniform(n, warp, gen).to(x.device)
    t = torch.arange(w, device=x.device, dtype=x.dtype)[None, :]
    pos = (dl.WINDOW_BEFORE + (t - dl.WINDOW_BEFORE) / factor).clamp(0, w - 1)  # where each output sample reads
    lo = pos.floor().long().clamp(max=w - 2)
    frac = (pos - lo)[:, None, :]
    idx = lo[:, None, :].expand(-1, x.shape[1], -1)
    return x.gather(2, idx) * (1 - frac) + x.gather(2, idx + 1) * frac


def scale_rates(rr: torch.Tensor, seconds: torch.Tensor, rate: float, gen: torch.Generator) -> torch.Tensor:
    """rr with its `seconds` columns (a boolean mask) scaled by one random factor per beat,
    log-uniform in [1/(1+rate), 1+rate]: the same beats at another heart rate."""
    factor = log_uniform(len(rr), rate, gen).to(rr.device)
    return torch.where(seconds, rr * factor, rr)


def sharpness_aware_gradient(model, loss_of, rho: float) -> None:
    """Replace the gradients in `model` (of its loss at its weights) by those at the weights moved `rho`
    along them (SAM's ascent step), then move the weights back. Batch-norm statistics (and their step count)
    are not updated by the second pass."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.norm(torch.stack([p.grad.norm() for p in params])) + 1e-12
    with torch.no_grad():
        kept = [p.detach().clone() for p in params]  # restored exactly (w + e - e need not be w in floats)
        for p in params:
            p.add_(p.grad * (rho / norm))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    counts = [None if m.num_batches_tracked is None else m.num_batches_tracked.clone() for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    model.zero_grad(set_to_none=True)
    loss_of().backward()
    for m, momentum, count in zip(norms, momenta, counts):
        m.momentum = momentum
        if count is not None:
            m.num_batches_tracked.copy_(count)
    with torch.no_grad():
        for p, w in zip(params, kept):
            p.copy_(w)


def batch_hook(cfg: LabTrainConfig, rr_names=None):
    """train.fit's batch_hook for cfg's augmentations, in the order they drew from the generator: template swap,
    time warp, the product's augmentation, heart rate (rr_names: the RR columns, needed with rr_rate)."""
    seconds = None
    if cfg.rr_rate:
        if rr_names is None:
            raise ValueError("rr_rate needs the names of the RR columns (rr_names)")
        seconds = torch.tensor([not is_ratio(name) for name in rr_names], device=torch.device(cfg.device))

    def hook(xb, rrb, gen):
        if seconds is not None and len(seconds) != rrb.shape[1]:
            raise ValueError(f"rr_rate needs the names of the {rrb.shape[1]} RR columns, got {rr_names}")
        xb = swap_templates(xb, cfg.template_self, gen) if cfg.template_self else xb
        xb = warp_times(xb, cfg.time_warp, gen) if cfg.time_warp else xb
        xb = train.augment(xb, gen) if cfg.augment else xb
        rrb = scale_rates(rrb, seconds, cfg.rr_rate, gen) if cfg.rr_rate else rrb
        return xb, rrb

    return hook


def fit(model, train_beats: dl.Beats, val: dl.Beats | None, cfg: LabTrainConfig, progress: bool = True,
        rr_names=None):
    """train.fit with cfg's lab options as its hooks; a LabTrainConfig with none set trains as the product."""
    if not isinstance(cfg, LabTrainConfig):
        cfg = LabTrainConfig(**vars(cfg))
    augmented = cfg.rr_rate or cfg.template_self or cfg.time_warp
    return train.fit(
        model, train_beats, val, cfg, progress=progress,
        batch_hook=batch_hook(cfg, rr_names) if augmented else None,
        loss_fn=SmoothedFocalLoss(cfg.gamma, cfg.alpha, cfg.label_smoothing) if cfg.label_smoothing else None,
        after_backward=(lambda net, loss_of: sharpness_aware_gradient(net, loss_of, cfg.sam_rho)) if cfg.sam_rho
        else None)


# --------------------------------------------------------------------------- templates

def on_time(r_peaks: np.ndarray, threshold: float, fs: float = dl.FS, from_beat: int = 0,
            long_seconds: float = dl.LONG_SECONDS, slow_quantile: float = dl.SLOW_QUANTILE) -> np.ndarray:
    """Which beats may enter their patient's template: pre-RR >= threshold x 'slow' (past beats only, as
    every template). Every beat while the threshold is 0 (the product's rule)."""
    if threshold <= 0:
        return np.ones(max(len(r_peaks) - from_beat, 0), bool)
    return dl.rr_features(r_peaks, fs, "realtime", names=("pre/slow",), from_beat=from_beat,
                          long_seconds=long_seconds, slow_quantile=slow_quantile)[:, 0] >= threshold


def on_time_templates(windows: np.ndarray, on_time=None, beats: int = dl.TEMPLATE_BEATS,
                      from_beat: int = 0) -> np.ndarray:
    """dl.beat_templates over the earlier beats that came on time only (on_time, a boolean per beat; None:
    every beat, the product's templates): the sample-wise median of the windows of the last `beats` of them; a
    beat with no such earlier beat is its own template. Shape (len(windows) - from_beat, WINDOW)."""
    w = np.asarray(windows, dtype=np.float32)
    n = len(w)
    ok = np.arange(n) if on_time is None else np.flatnonzero(np.asarray(on_time, bool)[:n])
    # k[i]: how many on-time beats precede beat i; the template is the median of the last `beats` of them.
    k = np.searchsorted(ok, np.arange(from_beat, n), side="left")
    out = np.empty((len(k), w.shape[1]), np.float32)
    pool = w[ok]
    for kk in np.unique(k[k < beats]):  # fewer than `beats` on-time beats so far
        rows = k == kk
        out[rows] = np.median(pool[:kk], axis=0) if kk else w[from_beat:][rows]
    full = np.flatnonzero(k >= beats)
    if len(full):
        needed = np.unique(k[full])  # each set of `beats` on-time beats once
        past = np.lib.stride_tricks.sliding_window_view(pool, beats, axis=0)  # past[j] = pool[j:j+beats].T
        medians = np.empty((len(needed), w.shape[1]), np.float32)
        for s in range(0, len(needed), 512):  # in chunks: the view's median copies it
            medians[s:s + 512] = np.median(past[needed[s:s + 512] - beats], axis=2)
        out[full] = medians[np.searchsorted(needed, k[full])]
    return out
