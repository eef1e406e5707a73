"""Training: Adam + one-cycle schedule, focal loss, a moving average of the weights (the weights kept)."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

import config
from data_loader import CLASSES, Beats
from evaluate import confusion, metrics
from losses import FocalLoss
from model import predict_logits, predict_proba  # noqa: F401  (train.predict_proba, as before)


@dataclass
class TrainConfig:
    """How a network is trained; the product's values are config's settings of the same name."""

    epochs: int = config.EPOCHS
    batch_size: int = config.BATCH_SIZE
    lr: float = config.LR
    weight_decay: float = config.WEIGHT_DECAY
    gamma: float = 1.0  # the product's is by mode (config.GAMMA), which main.py passes
    alpha: tuple | None = config.ALPHA  # per-class focal weights, CLASSES order
    balance: float = config.BALANCE
    augment: bool = config.AUGMENT
    ema: float = config.EMA
    seed: int = config.SEED
    device: str = "cpu"
    s_offset: float = config.S_OFFSET  # added to the S logit, folded into the classifier's bias after training


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def to_tensors(beats: Beats, device="cpu"):
    return (torch.from_numpy(beats.x).to(device), torch.from_numpy(beats.rr).to(device),
            torch.from_numpy(beats.y).to(device))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What differs between patients and recordings: gain, baseline wander, noise, small shifts."""
    n, _, w = x.shape
    dev = x.device
    r = lambda *s: torch.rand(*s, generator=gen).to(dev)  # noqa: E731
    t = torch.arange(w, device=dev, dtype=x.dtype)[None, None, :]
    gain = 0.8 + 0.4 * r(n, 1, 1)
    wander = 0.3 * r(n, 1, 1) * torch.sin(2 * math.pi * (t / w * 0.6 * r(n, 1, 1) + r(n, 1, 1)))
    noise = 0.05 * r(n, 1, 1) * torch.randn(x.shape, generator=gen).to(dev)
    shift = int(torch.randint(-5, 6, (1,), generator=gen))
    return torch.roll(x, shift, dims=2) * gain + wander + noise


def sample_weights(y: np.ndarray, balance: float) -> torch.Tensor:
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    per_class = np.where(counts > 0, np.maximum(counts, 1) ** -balance, 0.0)
    return torch.from_numpy(per_class[y])


def selection_score(m: dict) -> float:
    """Macro-F1 over N, S, V on validation patients: predicting everything N scores ~0.33."""
    return m["macro_f1_nsv"]


def fit(model, train: Beats, val: Beats, cfg: TrainConfig, progress: bool = True, batch_hook=None, loss_fn=None,
        after_backward=None):
    """Train; return (the model holding the best-on-validation weights, the history, the best epoch).

    Without validation beats (val=None), the final (averaged) weights are kept. cfg.s_offset is folded
    into the last layer's S bias. Hooks for variants (the product passes none): batch_hook(x, rr, generator)
    -> (x, rr) replaces each step's augmentation; loss_fn replaces FocalLoss(cfg.gamma, cfg.alpha);
    after_backward(model, loss_of) runs between the backward pass and the step, loss_of recomputing the batch's loss.
    """
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model.to(device)
    x, rr, y = to_tensors(train, device)
    if val is not None:
        vx, vrr, vy = to_tensors(val, device)
    loss_fn = (FocalLoss(cfg.gamma, cfg.alpha) if loss_fn is None else loss_fn).to(device)
    offset = torch.zeros(len(CLASSES), device=device)
    offset[CLASSES.index("S")] = cfg.s_offset
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps)
    weights = sample_weights(train.y, cfg.balance)
    # The averaged weights are the ones validated (if any) and kept: steadier across patients than the last step.
    # Step n weighs max(1/(n+1), 1-ema): a running mean at first, so early epochs are not
    # dominated by the random initial weights, then an exponential average.
    ema = torch.optim.swa_utils.AveragedModel(
        model, avg_fn=lambda avg, new, n: avg + (new - avg) * max(1.0 / (int(n) + 1), 1.0 - cfg.ema),
        use_buffers=True) if cfg.ema else None
    best, best_state, best_epoch, history = -1.0, None, 0, []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        idx = torch.multinomial(weights, steps * cfg.batch_size, replacement=True, generator=gen).to(device)
        total = 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        for s in bar:
            b = idx[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if batch_hook is None:
                xb, rrb = (augment(x[b], gen) if cfg.augment else x[b]), rr[b]
            else:
                xb, rrb = batch_hook(x[b], rr[b], gen)
            loss = loss_fn(model(xb, rrb), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward(model, lambda: loss_fn(model(xb, rrb), y[b]))
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            total += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        scored = ema.module if ema is not None else model
        record = dict(epoch=epoch, train_loss=total / steps)
        if val is not None:
            vlogits = predict_logits(scored, vx, vrr)
            with torch.no_grad():
                record["val_loss"] = loss_fn(vlogits, vy).item()
            vm = metrics(confusion(val.y, (vlogits + offset).argmax(1).cpu().numpy()))
            record["val_macro_f1_nsv"] = selection_score(vm)
            record["val_f1"] = {c: vm["per_class"][c]["f1"] for c in CLASSES}
        score = record.get("val_macro_f1_nsv", epoch)  # no validation: the last epoch wins
        history.append(record)
        if score > best:
            best, best_state, best_epoch = score, copy.deepcopy(scored.state_dict()), epoch
        if progress:
            tqdm.write(f"epoch {epoch}: train loss {record['train_loss']:.4f}" + (
                f"  val loss {record['val_loss']:.4f}  val macro-F1(N,S,V) {score:.3f}  "
                f"S {record['val_f1']['S']:.3f}  V {record['val_f1']['V']:.3f}" if val is not None else ""))
    model.load_state_dict(best_state)
    fold_offset(model, offset)
    return model.cpu(), history, best_epoch


def fold_offset(model, offset: torch.Tensor) -> None:
    """Add a per-class logit offset to the last layer's bias: every later copy (int8, ONNX) keeps it."""
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias += offset.to(last.bias.device)


def member_seeds(seed: int, members: int) -> list[int]:
    """The seeds of an ensemble's members: seed*members ... seed*members + members-1, so one
    network is seed itself and the ensembles of different seeds share no member."""
    return [seed * members + i for i in range(members)]


def fit_ensemble(mode: str, train: Beats, val: Beats, cfg: TrainConfig, members: int = 1, progress: bool = True):
    """Train `members` networks alike from member_seeds(cfg.seed, members), each keeping its own
    weights as fit() does; return (model, history, best epochs).

    One member: the network itself. More: a model.SeedEnsemble of them. The history holds every
    member's epochs, each record naming its member and seed.
    """
    from model import build_model, design, ensemble_of

    nets, history, best_epochs = [], [], []
    for i, seed in enumerate(member_seeds(cfg.seed, members)):
        seed_everything(seed)  # the initial weights too: same seed, same model
        net, hist, best = fit(build_model(mode, member_kwargs=[design(mode, i)]), train, val, replace(cfg, seed=seed),
                              progress=progress)
        nets.append(net)
        history += [{"member": i, "seed": seed, **h} for h in hist]
        best_epochs.append(best)
    return ensemble_of(nets), history, best_epochs
