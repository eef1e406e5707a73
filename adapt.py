"""Adapt a trained model to one patient from a few beats a person has confirmed, and choose which beats to ask for.

The network learned on other patients stays as it is, except its head: the last layers, which decide on the
features the CNN and the RR branch compute, are fitted again to the patient's confirmed beats, pulled towards the
trained weights so that a few labels move them only as far as those labels need. An adapted model is the
same network with other head weights: it is saved, exported and quantized like any other, and real-time mode
stays causal. The beats worth confirming are the representatives of the recording's own beat clusters in the
network's feature space (suggest), the way a Holter technician reviews a recording's beat templates.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

import data_loader as dl
from cli import InputError, warn
from config import CLASS_BALANCE, FIT_STEPS, HEAD_L2, SPREAD, SPREAD_WEIGHT
from data_loader import CLASSES


def networks(model: nn.Module) -> list[nn.Module]:
    """The DualBranchNets that decide together: an ensemble's members, or the network itself."""
    return list(model.members) if hasattr(model, "members") else [model]


@torch.no_grad()
def head_inputs(model: nn.Module, x, rr, batch_size: int = 4096) -> list[torch.Tensor]:
    """Each network's features of each beat (DualBranchNet.features): what its head decides on."""
    x, rr = torch.as_tensor(np.asarray(x, np.float32)), torch.as_tensor(np.asarray(rr, np.float32))
    out = []
    for net in networks(model):
        net.eval()
        out.append(torch.cat([net.features(x[i:i + batch_size], rr[i:i + batch_size])
                              for i in range(0, len(x), batch_size)]))
    return out


@torch.no_grad()
def embedding(model: nn.Module, feats: list[torch.Tensor]) -> np.ndarray:
    """Each beat as the heads see it just before deciding (their last hidden layers, side by side), each
    dimension scaled to unit spread over the recording: the space in which beats are clustered."""
    hidden = [net.head[:-1](f) for net, f in zip(networks(model), feats)]
    h = torch.cat(hidden, dim=1).numpy().astype(np.float64)
    return (h - h.mean(0)) / (h.std(0) + 1e-6)


@torch.no_grad()
def head_logits(model: nn.Module, feats: list[torch.Tensor]) -> np.ndarray:
    """The model's logits from its heads' inputs (head_inputs): what model(x, rr) gives, without the CNN again."""
    return torch.stack([net.head(f) for net, f in zip(networks(model), feats)]).mean(0).numpy()


def beat_weights(y: np.ndarray, balance: float = CLASS_BALANCE) -> np.ndarray:
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = np.where(counts[y] > 0, counts[y], 1.0) ** -balance
    return w / w.sum()


def spread_labels(emb: np.ndarray, idx: np.ndarray, y: np.ndarray, spread: float):
    """Unconfirmed beats near a confirmed one (within `spread` times the recording's median distance from a beat to
    its nearest confirmed one) and the confirmed beat's label."""
    from sklearn.neighbors import NearestNeighbors

    rest = np.setdiff1d(np.arange(len(emb)), idx)
    if spread <= 0 or not len(rest):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dist, near = NearestNeighbors(n_neighbors=1).fit(emb[idx]).kneighbors(emb[rest])
    dist, near = dist[:, 0], near[:, 0]
    keep = dist <= spread * np.median(dist)
    return rest[keep], y[near[keep]]


def adapt_model(model: nn.Module, x, rr, idx, y, l2: float = HEAD_L2, spread: float = SPREAD,
                spread_weight: float = SPREAD_WEIGHT, steps: int = FIT_STEPS, feats=None) -> nn.Module:
    """A copy of `model` whose heads are fitted to the confirmed beats idx (indices into x, rr) of classes y.

    The loss: class-weighted cross-entropy of the ensemble's mean logits on the confirmed beats (and, with spread,
    on beats near them), plus l2 times the squared distance of the heads' weights from the trained ones.
    `feats`: head_inputs(model, x, rr), when the caller has them already.
    """
    idx, y = np.asarray(idx, np.int64), np.asarray(y, np.int64)
    adapted = copy.deepcopy(model).eval()
    if not len(idx):
        return adapted
    feats = head_inputs(model, x, rr) if feats is None else feats
    w = beat_weights(y)
    if spread > 0:
        more, more_y = spread_labels(embedding(model, feats), idx, y, spread)
        if len(more):
            idx, y = np.concatenate([idx, more]), np.concatenate([y, more_y])
            w = np.concatenate([w, spread_weight * beat_weights(more_y)])
    return fit_heads(adapted, feats, idx, y, w, l2, steps)


def fit_heads(adapted: nn.Module, feats, idx, y, w, l2: float = HEAD_L2, steps: int = FIT_STEPS, extra=None):
    """adapt_model's fit, in place: `adapted`'s heads fitted to beats idx (rows of feats, head_inputs) of classes y
    weighing w, pulled by l2 towards their weights as they are. `extra(heads)`: a term added to the loss."""
    inputs = [f[idx] for f in feats]
    target, weight = torch.from_numpy(y), torch.from_numpy(w / w.sum()).float()
    heads = [net.head for net in networks(adapted)]
    params = [p for h in heads for p in h.parameters()]
    start = [p.detach().clone() for p in params]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = torch.stack([h(f) for h, f in zip(heads, inputs)]).mean(0)
        loss = (weight * nn.functional.cross_entropy(logits, target, reduction="none")).sum()
        loss = loss + l2 * sum(((p - p0) ** 2).sum() for p, p0 in zip(params, start))
        if extra is not None:
            loss = loss + extra(heads)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    for p in params:
        p.requires_grad_(False)
    return adapted.eval()


def suggest(model: nn.Module, x, rr, k: int, seed: int = 0, feats=None, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """The k beats worth confirming (indices, in time order) and how many beats each stands for: the recording's
    beats clustered into k groups in the heads' feature space (embedding), and from each the beat nearest its
    centre. `exclude`: a mask of beats that may not be chosen (nor counted)."""
    from sklearn.cluster import KMeans

    pool = np.arange(len(x)) if exclude is None else np.flatnonzero(~np.asarray(exclude, bool))
    k = min(int(k), len(pool))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    feats = head_inputs(model, x, rr) if feats is None else feats
    emb = embedding(model, feats)[pool]
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(emb)
    chosen, sizes = [], []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        if len(members):
            d = ((emb[members] - km.cluster_centers_[c]) ** 2).sum(1)
            chosen.append(pool[members[np.argmin(d)]])
            sizes.append(len(members))
    order = np.argsort(chosen)
    return np.asarray(chosen, np.int64)[order], np.asarray(sizes, np.int64)[order]


def suggest_review(model_arg, beats: dict, k: int, fs_out: float):
    """predict --suggest: the review list (review.review_frame) of a classified recording's k beats worth
    confirming, chosen with its run's float32 network."""
    from export import MODEL_FILES, StaleModelError, load_model
    from review import review_frame

    try:
        model, _ = load_model(run_directory(model_arg) / MODEL_FILES["float32"])
    except StaleModelError as exc:
        raise InputError(str(exc)) from None
    unclassifiable = np.isnan(beats["proba"]).any(1)
    idx, sizes = suggest(model, beats["windows"], beats["rr"], k, exclude=unclassifiable)
    why = [f"stands for {n} beat{'s' if n != 1 else ''} like it" for n in sizes]
    return review_frame(beats, idx, fs_out, why)


# --------------------------------------------------------------------------- the command

def run_directory(model_arg) -> Path:
    """The run directory whose float32 model is adapted: --model itself, or the folder of a model file in it."""
    from export import MODEL_FILES

    path = Path(model_arg)
    run = path if path.is_dir() else path.parent
    if not (run / MODEL_FILES["float32"]).is_file():
        raise InputError(f"{run} holds no {MODEL_FILES['float32']}: adapting fits the network's head, so it needs a "
                         f"run's float32 model; pass the directory of a finished `python main.py` run")
    return run


def run(args) -> dict:
    """Adapt the run's model to the recording's confirmed beats; write the adapted run and the recording's classes."""
    import time

    from export import MODEL_FILES, Classifier, StaleModelError, load_model
    from model import predict_proba
    from predict import classify
    from recordings import check_input_options, prepare, read_input
    from review import match_labels, read_labels

    check_input_options(args)
    source_run = run_directory(args.model)
    try:
        model, meta = load_model(source_run / MODEL_FILES["float32"])
    except StaleModelError as exc:
        raise InputError(str(exc)) from None
    mode = meta["mode"]
    t0 = time.time()
    rec = read_input(args)
    x, gaps = prepare(rec)
    clf = Classifier(mode, "float32", source_run, lambda w, r: predict_proba(model, w, r))
    beats = classify(x, clf, gaps)
    duration = len(x) / dl.FS
    seconds, classes = read_labels(args.labels, rec.fs, duration, args.until)
    idx, matched = match_labels(seconds, beats["sample"], args.labels, ignore_unmatched=args.ignore_unmatched)
    classes = classes[matched]
    usable = ~np.isnan(beats["proba"][idx]).any(1)  # a beat in a gap: its window is not the patient's signal
    if not usable.all():
        warn(f"{(~usable).sum()} label(s) on beats touching a gap in the signal are left out")
        idx, classes = idx[usable], classes[usable]
    idx, last = np.unique(idx[::-1], return_index=True)  # two labels on one beat: the later stands
    classes = classes[::-1][last]
    adapted = adapt_model(model, beats["windows"], beats["rr"], idx, classes)
    adapt_seconds = time.time() - t0
    out = Path(args.out or Path("runs") / f"{source_run.name}-adapted-{rec.name}")
    write_adapted_run(out, adapted, mode, meta, beats, idx, classes, x, gaps, rec, args, source_run, adapt_seconds)
    counts = " ".join(f"{c} {int((classes == i).sum())}" for i, c in enumerate(dl.CLASSES) if (classes == i).any())
    print(f"{rec.name}: adapted {source_run} ({mode}) to {len(idx)} confirmed beats ({counts}) in {adapt_seconds:.1f} s"
          f"; the adapted run is {out}: pass it to predict and stream as --model")
    return {"out": out, "model": adapted, "labelled": idx, "adapt_seconds": adapt_seconds}


def write_adapted_run(out: Path, adapted, mode, meta, beats, idx, classes, x, gaps, rec, args, source_run,
                      adapt_seconds) -> None:
    """The adapted run directory, whole or not at all (written beside it, then renamed): config.json, the model
    files of a run (quantize_all; int8 calibrated on the recording's own beats), the labels used, and the
    recording classified with the adapted model (predict's outputs)."""
    import json
    import shutil
    import tempfile

    from data_loader import Beats
    from export import Classifier
    from model import predict_proba
    from predict import beats_frame, classify, write_annotations
    from quantize import quantize_all

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not empty: choose another folder with --out (or remove {out})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}; choose another folder with --out") from None
    try:
        pred = beats["class"].copy()
        calib = Beats(x=beats["windows"], rr=beats["rr"], y=predict_proba(adapted, beats["windows"],
                      beats["rr"]).argmax(1), record=np.full(len(pred), rec.name), sample=beats["sample"])
        ok = ~np.isnan(beats["proba"]).any(1)
        quantize_all(adapted, Beats(*(a[ok] for a in (calib.x, calib.rr, calib.y, calib.record, calib.sample))),
                     tmp, mode)
        config = json.loads((source_run / "config.json").read_text()) if (source_run / "config.json").is_file() \
            else {"mode": mode}
        config["adapted"] = {"from": str(source_run), "recording": rec.source or rec.name, "lead": rec.lead,
                             "labels": str(args.labels), "until_s": args.until, "confirmed_beats": int(len(idx)),
                             "seconds": round(adapt_seconds, 2),
                             "settings": {"head_l2": HEAD_L2, "class_balance": CLASS_BALANCE, "spread": SPREAD}}
        (tmp / "config.json").write_text(json.dumps(config, indent=1, default=str))
        rows = beats_frame({k: beats[k][idx] for k in ("sample", "class", "proba")}, rec.fs)[["time_s", "sample"]]
        rows["class"] = [dl.CLASSES[c] for c in classes]
        rows.to_csv(tmp / "confirmed_labels.csv", index=False)
        clf = Classifier(mode, "float32", out, lambda w, r: predict_proba(adapted, w, r))
        now = classify(x, clf, gaps, peaks=beats["sample"])
        now["class"][idx] = classes  # a confirmed beat is what the person said
        beats_frame(now, rec.fs).to_csv(tmp / f"{rec.name}_beats.csv", index=False)
        write_annotations(tmp, rec.name, now, rec.fs)
        if out.is_dir():
            out.rmdir()  # (empty, checked above)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_parser():
    import argparse

    from cli import HelpFormatter
    from recordings import add_input_arguments

    p = argparse.ArgumentParser(prog="main.py adapt", description=__doc__.split("\n")[0], allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="run directory from `python main.py` (its model_float32.pt)")
    add_input_arguments(p)
    p.add_argument("--labels", required=True,
                   help="the confirmed beats: the review list of `predict --suggest K` with its class column "
                        "corrected, any CSV with a time_s (or sample) and a class column (AAMI class N S V F Q or "
                        "MIT-BIH symbol), or a WFDB annotation file (record.atr)")
    p.add_argument("--until", type=float, default=None,
                   help="use only the labels before this time, s (300: the first five minutes)")
    p.add_argument("--ignore-unmatched", action="store_true",
                   help="leave out, with a warning, labels on no detected beat (a reference annotation of every beat, "
                        "some of which the detector missed); without it they are an error")
    p.add_argument("--out", default=None, help="the adapted run's folder (default runs/<run>-adapted-<name>)")
    return p


def main(argv=None) -> int:
    import warnings

    from cli import run_command
    from recordings import cannot_read

    args = build_parser().parse_args(argv)

    def work():
        if args.until is not None and not args.until > 0:
            raise InputError(f"--until must be a positive number of seconds, got {args.until:g}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            run(args)

    # An OSError here: reading the input, the labels or the model (a failed write says so as an InputError)
    return run_command(work, lambda exc: cannot_read(exc, args))


if __name__ == "__main__":
    raise SystemExit(main())
