"""lab/adapt_cv.py's keep-unseen variant: labels that say nothing of a class leave the model's view of it closer to
the trained model's than the product's refit does, and it stays a refit of the head alone."""
from __future__ import annotations

import numpy as np
import torch

import adapt
import data_loader as dl
from conftest import fixture_record, import_lab
from export import load_model


def test_keep_unseen_holds_the_unseen_classes_where_the_trained_model_had_them(diagnostic_run):
    adapt_cv = import_lab("adapt_cv")
    model, _ = load_model(diagnostic_run / "model_float32.pt")
    b = dl.load_beats(dl.Path(fixture_record("124")).parent, ["124"], "diagnostic", progress=False)
    feats = adapt.head_inputs(model, b.x, b.rr)
    idx = np.flatnonzero(b.y == 0)[::3]  # only N beats confirmed: S, V, F, Q unseen
    unseen = lambda m: 1 - torch.from_numpy(adapt.head_logits(m, feats)).softmax(1)[:, 0].numpy()  # noqa: E731
    base = unseen(model)
    plain = adapt.adapt_model(model, b.x, b.rr, idx, b.y[idx], l2=0.01, feats=feats)
    kept = adapt_cv.adapt_keep_unseen(model, b.x, b.rr, idx, b.y[idx], feats, l2=0.01, keep_unseen=1.0)
    assert np.abs(unseen(kept) - base).mean() < 0.5 * np.abs(unseen(plain) - base).mean()
    old, new = model.state_dict(), kept.state_dict()
    moved = {k for k in old if not torch.equal(old[k], new[k])}
    assert moved and all(".head." in f".{k}" for k in moved)


def test_mixed_picks_are_representatives_and_the_least_sure_beats(diagnostic_run):
    from model import predict_proba

    adapt_cv = import_lab("adapt_cv")
    model, _ = load_model(diagnostic_run / "model_float32.pt")
    b = dl.load_beats(dl.Path(fixture_record("124")).parent, ["124"], "diagnostic", progress=False)
    feats = adapt.head_inputs(model, b.x, b.rr)
    proba = predict_proba(model, b.x, b.rr)
    picks = adapt_cv.mixed_picks(model, b.x, b.rr, 10, proba, 0, feats)
    representatives = adapt.suggest(model, b.x, b.rr, 5, seed=0, feats=feats)[0]
    assert len(np.unique(picks)) == 10 and np.all(np.diff(picks) > 0) and set(representatives) <= set(picks)
    doubted = np.setdiff1d(picks, representatives)
    others = np.setdiff1d(np.arange(len(b.y)), picks)
    assert proba[doubted].max(1).max() <= proba[others].max(1).min()
