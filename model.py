"""Dual-branch network: a 1-D CNN over the beat window and a dense net over the RR features."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from config import CHANNELS, DESIGNS, DROPOUT, HIDDEN, KERNELS, RR_HIDDEN
from data_loader import CLASSES, RR_FEATURES, WINDOW_CHANNELS


def conv_block(c_in: int, c_out: int, k: int) -> nn.Sequential:
    # Conv -> BatchNorm -> ReLU is the pattern int8 toolchains fuse into one kernel.
    return nn.Sequential(nn.Conv1d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(),
                         nn.MaxPool1d(2))


RR_SCALES = ("raw", "log")  # how the RR inputs may enter the dense branch (DualBranchNet)
RR_LOG_FLOOR = 1e-3  # rr_scale="log": inputs below this (none are: intervals and their ratios) count as it
LEGACY_RR_HIDDEN = 32  # the width of every model saved before the width was recorded


def saved_members(model_kwargs: dict) -> list[dict]:
    """Each member's keyword arguments from a saved model's model_kwargs: recorded one by one (member_kwargs) since
    the ensemble's members may differ; before, one set for every member (members, rr_hidden, rr_scale), as
    saved_kwargs completes it."""
    if "member_kwargs" in model_kwargs:
        return [saved_kwargs(kw) for kw in model_kwargs["member_kwargs"]]
    shared = saved_kwargs({k: v for k, v in model_kwargs.items() if k != "members"})
    return [shared] * model_kwargs.get("members", 1)


def saved_kwargs(kwargs: dict) -> dict:
    """A saved model's keyword arguments, with what files that did not record them had: the RR branch's
    width (LEGACY_RR_HIDDEN) and raw RR inputs."""
    return {"rr_hidden": LEGACY_RR_HIDDEN, "rr_scale": "raw", **kwargs}


class DualBranchNet(nn.Module):
    """Beat windows (batch, 2, WINDOW) + RR features (batch, n_rr) -> logits over CLASSES.

    The window input holds each beat and its patient's template (data_loader.WINDOW_CHANNELS); the
    CNN sees the beat and its difference from the template, so a beat is judged against the
    patient's own morphology. The CNN's feature maps are averaged over the whole window (pool=1) or over
    `pool` equal spans of it, which keeps where in the beat a feature lies; a fourth entry in `channels` adds
    a fourth block. rr_scale: how the RR inputs (seconds and ratios, all positive) enter the dense branch:
    "raw" as they are, "log" their logarithms (an early beat and a late one equally far from 1 on either side;
    a long pause no longer dwarfs the rest).
    """

    def __init__(self, n_rr: int, channels=CHANNELS, rr_hidden: int = RR_HIDDEN,
                 hidden: int = HIDDEN, dropout: float = DROPOUT, pool: int = 1, rr_scale: str = "raw"):
        super().__init__()
        if rr_scale not in RR_SCALES:
            raise ValueError(f"rr_scale must be one of {', '.join(RR_SCALES)}, got {rr_scale!r}")
        if pool < 1:
            raise ValueError(f"pool must be at least 1 (spans of the window to average over), got {pool}")
        if len(channels) > len(KERNELS):
            raise ValueError(f"at most {len(KERNELS)} convolution blocks, got channels={channels}")
        layers, c_in = [], len(WINDOW_CHANNELS)
        for c_out, k in zip(channels, KERNELS):
            layers.append(conv_block(c_in, c_out, k))
            c_in = c_out
        self.cnn = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(pool), nn.Flatten())
        self.rr = nn.Sequential(nn.Linear(n_rr, rr_hidden), nn.ReLU(), nn.Linear(rr_hidden, rr_hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in * pool + rr_hidden, hidden),
                                  nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, len(CLASSES)))
        self.n_rr, self.rr_hidden, self.rr_scale, self.pool = n_rr, rr_hidden, rr_scale, pool
        self.rr_log = rr_scale == "log"

    def features(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        """What the head decides on: the CNN's features of the beat beside the RR branch's (adapt.py fits the head
        alone to a patient)."""
        beat, template = x[:, 0:1], x[:, 1:2]
        features = self.cnn(torch.cat([beat, beat - template], dim=1))
        if self.rr_log:
            rr = torch.log(rr.clamp_min(RR_LOG_FLOOR))
        return torch.cat([features, self.rr(rr)], dim=1)

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x, rr))


class SeedEnsemble(nn.Module):
    """Networks trained from different seeds (of one design or several: config.DESIGNS), deciding together: their
    mean logits.

    The argmax of the mean logits is the argmax of the members' mean log-probabilities (each
    member's log-softmax differs from its logits by a per-beat constant). One module, so the int8,
    ONNX and TorchScript paths take it as they take one network.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x, rr) for m in self.members]).mean(0)


def design(mode: str, member: int = 0) -> dict:
    """The product's network for a mode (its ensemble's member `member`), as DualBranchNet keyword arguments:
    recorded, for every member, in each run's config.json, so a finished run of another design is not taken for
    today's."""
    return {"rr_hidden": RR_HIDDEN, **DESIGNS[mode][member % len(DESIGNS[mode])]}


def designs(mode: str, members: int) -> list[dict]:
    """The designs of an ensemble of `members` networks, member by member (design)."""
    return [design(mode, i) for i in range(members)]


def net_kwargs(net: "DualBranchNet") -> dict:
    """What a saved network records of how it was built (what designs vary), to be rebuilt alike."""
    return {"rr_hidden": net.rr_hidden, "rr_scale": net.rr_scale, "pool": net.pool}


def build_model(mode: str, members: int = 1, member_kwargs: list[dict] | None = None, **kwargs) -> nn.Module:
    """New networks for a mode (its RR input width follows the mode's feature list): member i of the product's
    design, design(mode, i), with kwargs changed in each; or, given member_kwargs (a saved model's), exactly
    those networks. More than one: a SeedEnsemble."""
    if member_kwargs is None:
        if members < 1:
            raise ValueError(f"an ensemble needs at least 1 member, got {members}")
        member_kwargs = [{**d, **kwargs} for d in designs(mode, members)]
    return ensemble_of([DualBranchNet(n_rr=len(RR_FEATURES[mode]), **kw) for kw in member_kwargs])


def ensemble_of(nets: list[nn.Module]) -> nn.Module:
    """The model that decides with these networks: one network itself, more a SeedEnsemble."""
    return nets[0] if len(nets) == 1 else SeedEnsemble(nets)


def members_of(model: nn.Module) -> int:
    """How many networks decide: 1, or a SeedEnsemble's member count (float or int8)."""
    return len(model.members) if isinstance(model, SeedEnsemble) else 1


@torch.no_grad()
def predict_logits(model, x, rr, batch_size: int = 4096) -> torch.Tensor:
    """Logits (beats, len(CLASSES)) in eval mode, batch by batch, for arrays or tensors
    (x: (beats, channels, WINDOW), as Beats.x)."""
    model.eval()
    x, rr = torch.as_tensor(x), torch.as_tensor(rr)
    out = [model(x[i:i + batch_size], rr[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros((0, len(CLASSES)))


def predict_proba(model, x, rr, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities (beats, len(CLASSES))."""
    return torch.softmax(predict_logits(model, x, rr, batch_size), dim=1).cpu().numpy()
