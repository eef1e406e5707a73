"""How to adapt to a patient, chosen on DS1: the patient-adaptive protocol (../shared/docs/PROTOCOL.md) simulated on
held-out DS1 patients, each scored with the fold model that never saw it (lab/adapt_folds.py).

For every variant of adapt.adapt_model (its settings below) and every held-out DS1 record: the first 5 minutes'
labels (scored on the rest, beside the unadapted model on the same beats), and K beats chosen by adapt.suggest or
at random (scored on every other beat). N, S and V Se / +P / F1 pooled over the 22 records.

    python lab/adapt_folds.py --data-dir ../shared/data/mitdb --offline
    python lab/adapt_cv.py --data-dir ../shared/data/mitdb --offline [--modes diagnostic]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the product: the repository root

import adapt  # noqa: E402
import data_loader as dl  # noqa: E402
from adapt_folds import fold_dir  # noqa: E402
from evaluate import confusion, metrics  # noqa: E402

FIRST_SECONDS = 300.0
KS = (5, 10, 20, 50)
VARIANTS = {  # name -> adapt_model keyword arguments
    "l2_0.01": {"l2": 0.01}, "l2_0.1": {"l2": 0.1}, "l2_1": {"l2": 1.0},
    "l2_0.1_spread1": {"l2": 0.1, "spread": 1.0}, "l2_1_spread1": {"l2": 1.0, "spread": 1.0},
    "l2_0.01_keep0.3": {"l2": 0.01, "keep_unseen": 0.3}, "l2_0.01_keep1": {"l2": 0.01, "keep_unseen": 1.0},
    # label-free (K = 0): the heads fitted to the unadapted model's own classes of the beats it is this sure of
    "self_0.9": {"l2": 0.01, "pseudo": 0.9}, "self_0.99": {"l2": 0.01, "pseudo": 0.99},
}


def adapt_keep_unseen(model, x, rr, idx, y, feats, l2: float, keep_unseen: float):
    """adapt.adapt_model (without spread) plus keep_unseen times the cross-entropy, over all the recording's beats,
    of the adapted model's probability of each class no confirmed beat has (and of the confirmed classes together)
    against the trained model's: labels that say nothing of a class would leave the model's view of it as it was.
    Tried and not adopted (lab/README.md)."""
    import copy

    import torch

    idx, y = np.asarray(idx, np.int64), np.asarray(y, np.int64)
    unseen = np.setdiff1d(np.arange(len(dl.CLASSES)), y)
    if not len(idx) or not len(unseen):
        return adapt.adapt_model(model, x, rr, idx, y, l2=l2, feats=feats)

    def lumped(proba):
        return torch.cat([proba[:, unseen], 1 - proba[:, unseen].sum(1, keepdim=True)], 1)

    with torch.no_grad():
        keep = lumped(torch.from_numpy(adapt.head_logits(model, feats)).softmax(1))

    def held(heads):
        now = torch.stack([h(f) for h, f in zip(heads, feats)]).mean(0).softmax(1)
        return -keep_unseen * (keep * torch.log(lumped(now) + 1e-8)).sum(1).mean()

    return adapt.fit_heads(copy.deepcopy(model).eval(), feats, idx, y, adapt.beat_weights(y), l2, extra=held)


def scored(cm_sum: dict, key, y_true, y_pred):
    cm = confusion(y_true, y_pred)
    cm_sum[key] = cm_sum.get(key, 0) + cm


def summary(cm) -> dict:
    m = metrics(cm)["per_class"]
    return {c: {k: round(m[c][k], 4) for k in ("se", "ppv", "f1")} for c in ("N", "S", "V")}


def mixed_picks(model, x, rr, k: int, proba, seed: int, feats) -> np.ndarray:
    """k - k // 2 cluster representatives (adapt.suggest) and the k // 2 beats the model is least sure of (lowest
    top probability) among the rest: the issue's 'representatives ... and the beats the model is least sure of'."""
    chosen = adapt.suggest(model, x, rr, k - k // 2, seed=seed, feats=feats)[0]
    top = proba.max(1).copy()
    top[chosen] = np.inf
    return np.sort(np.concatenate([chosen, np.argsort(top, kind="stable")[:k // 2]]))


def run_record(model, beats, variants, ks, cms: dict, seed: int = 0, mixed: bool = False) -> None:
    import torch

    from model import predict_proba

    x, rr, y = beats.x, beats.rr, beats.y
    feats = adapt.head_inputs(model, x, rr)
    proba = predict_proba(model, x, rr)
    base = proba.argmax(1)
    label_free = {n: kw for n, kw in variants.items() if "pseudo" in kw}
    variants = {n: kw for n, kw in variants.items() if n not in label_free}
    if label_free:  # no label of the record: every beat scored
        scored(cms, ("unadapted", "all"), y, base)
    for name, kw in label_free.items():
        sure = np.flatnonzero(proba.max(1) >= kw["pseudo"])
        m = adapt.adapt_model(model, x, rr, sure, base[sure], feats=feats, l2=kw["l2"])
        with torch.no_grad():
            scored(cms, (name, "labelfree"), y, predict_proba(m, x, rr).argmax(1))
    if not variants:
        return
    first = beats.sample < FIRST_SECONDS * dl.FS
    later = ~first
    scored(cms, ("unadapted5min",), y[later], base[later])
    rng = np.random.default_rng(seed)
    picks = {}
    for k in ks:
        picks[("suggested", k)] = adapt.suggest(model, x, rr, k, seed=seed, feats=feats)[0]
        picks[("random", k)] = np.sort(rng.choice(len(y), size=min(k, len(y)), replace=False))
        if mixed:
            picks[("mixed", k)] = mixed_picks(model, x, rr, k, proba, seed, feats)
    picks[("first5min",)] = np.flatnonzero(first)
    for name, kw in variants.items():
        for key, idx in picks.items():
            fit = adapt_keep_unseen if "keep_unseen" in kw else adapt.adapt_model
            m = fit(model, x, rr, idx, y[idx], feats=feats, **kw)
            with torch.no_grad():
                pred = predict_proba(m, x, rr).argmax(1)
            rest = np.ones(len(y), bool)
            rest[idx] = False
            scored(cms, (name, *key), y[rest], pred[rest])
    for key, idx in picks.items():  # the unadapted model on each variant's scored beats
        if key[0] != "first5min":
            rest = np.ones(len(y), bool)
            rest[idx] = False
            scored(cms, ("unadapted", *key), y[rest], base[rest])


def main() -> None:
    from export import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--folds-dir", default="runs/lab-adapt")
    p.add_argument("--modes", nargs="+", default=list(dl.MODES))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--mixed", action="store_true", help="also K beats chosen half by clusters, half by doubt")
    p.add_argument("--out", default=None, help="JSON of the pooled figures")
    a = p.parse_args()
    variants = {v: VARIANTS[v] for v in a.variants.split(",")}
    out = {}
    for mode in a.modes:
        cms, t0 = {}, time.time()
        for f, held in enumerate(dl.DS1_FOLDS):
            model, _ = load_model(fold_dir(a.folds_dir, mode, f) / "model_float32.pt")
            for rec in held:
                beats = dl.load_beats(a.data_dir, [rec], mode, "cache", offline=a.offline, progress=False)
                run_record(model, beats, variants, KS, cms, mixed=a.mixed)
        table = {" ".join(map(str, k)): summary(cm) for k, cm in sorted(cms.items(), key=lambda kv: str(kv[0]))}
        out[mode] = table
        print(f"\n== {mode} ({time.time() - t0:.0f} s): S Se/+P/F1 | V Se/+P/F1")
        for k, m in table.items():
            print(f"{k:32s} S {m['S']['se']:.3f} {m['S']['ppv']:.3f} {m['S']['f1']:.3f} | "
                  f"V {m['V']['se']:.3f} {m['V']['ppv']:.3f} {m['V']['f1']:.3f}")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
