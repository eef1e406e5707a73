"""DS1 cross-validation of test-time batch-norm adaptation (round 36 of lab/results/cv.md).

The CNN's batch-norm layers normalise each channel by the statistics of DS1's training beats. Adapted,
each layer normalises by the statistics of the patient's own beats instead (AdaBN), computed layer by
layer from a forward pass of those beats; no label is used and the weights do not change.

- `bn_pastK`: beats are judged in blocks of BLOCK; each block with the statistics of the patient's last K
  beats before it (past beats only, so both modes could use it); DS1's statistics until MIN_PAST beats
  have been seen.
- `bn_record`: every beat with the statistics of the whole record, later beats included: a ceiling, not
  a candidate (diagnostic mode may look one beat ahead, not to the end of the record).
- `none`: the networks as trained; must reproduce the log-probabilities `lab/cv.py` kept.

The networks are those `lab/cv.py --save-models` kept (each job's network and its held-out fold):

    python lab/cv.py --data-dir ../shared/data/mitdb --offline --configs gamma2 --modes diagnostic --seeds 2 \\
        --workers 2 --threads 1 --out lab/results/cv_round36_jobs --save-predictions cache/cv_predictions \\
        --save-models cache/cv_models
    python lab/bn_adapt.py --data-dir ../shared/data/mitdb --models cache/cv_models \\
        --predictions cache/cv_predictions --runs diagnostic/gamma2 --out lab/results/cv_round36
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the product: the repository root

import data_loader as dl  # noqa: E402
from cv import load_saved_model, predictions_path, saved_jobs, summarise, table  # noqa: E402
from evaluate import confusion  # noqa: E402
from outputs import write_json, write_text  # noqa: E402

BLOCK = 32  # beats judged together with one set of statistics
MIN_PAST = 64  # fewer past beats than this: DS1's statistics
RULES = {"none": None, "bn_past256": 256, "bn_past1024": 1024, "bn_record": "record"}


def batch_norms(model: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]


@torch.no_grad()
def fit_statistics(model: nn.Module, x: torch.Tensor, rr: torch.Tensor) -> None:
    """Every batch-norm layer's mean and variance set to those of these beats, layer by layer (each
    layer sees the earlier layers already normalised by the beats' own statistics)."""
    for m in batch_norms(model):
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, that batch's statistics
        m.train()
    model(x, rr)
    for m in batch_norms(model):
        m.eval()


@torch.no_grad()
def adapted_logp(model: nn.Module, x: np.ndarray, rr: np.ndarray, past) -> np.ndarray:
    """Log-probabilities of one record's beats (in time order) under one rule (RULES' values)."""
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    momenta = [m.momentum for m in batch_norms(model)]
    x, rr = torch.from_numpy(x), torch.from_numpy(rr)
    out = []
    try:
        if past == "record":
            fit_statistics(model, x, rr)
        for start in range(0, len(x), BLOCK):
            if isinstance(past, int):
                model.load_state_dict(trained)
                if start >= MIN_PAST:
                    lo = max(0, start - past)
                    fit_statistics(model, x[lo:start], rr[lo:start])
            out.append(torch.log_softmax(model(x[start:start + BLOCK], rr[start:start + BLOCK]), dim=1))
    finally:
        model.load_state_dict(trained)
        for m, momentum in zip(batch_norms(model), momenta):
            m.momentum = momentum
    return torch.cat(out).numpy()


def score_job(path: Path, beats: dl.Beats, kept: Path | None) -> dict:
    model = load_saved_model(path)
    logp = {rule: [] for rule in RULES}
    for rec in dict.fromkeys(beats.record):
        rows = np.flatnonzero(beats.record == rec)
        if np.any(np.diff(beats.sample[rows]) <= 0):
            raise ValueError(f"record {rec}: beats not in time order")
        for rule, past in RULES.items():
            logp[rule].append(adapted_logp(model, beats.x[rows], beats.rr[rows], past))
    logp = {rule: np.concatenate(v) for rule, v in logp.items()}
    gap = None
    if kept is not None and kept.exists():  # the unadapted network must be the one cv.py scored
        with np.load(kept) as z:
            gap = float(np.abs(z["logp"] - logp["none"]).max())
            if not np.array_equal(z["labels"], beats.y):
                raise ValueError(f"{kept}: its beats are not the fold's")
    return {"confusions": {rule: confusion(beats.y, lp.argmax(1)).tolist() for rule, lp in logp.items()},
            "max_gap_to_kept": gap}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--models", required=True, help="lab/cv.py --save-models DIR")
    p.add_argument("--predictions", default=None, help="lab/cv.py --save-predictions DIR (a check)")
    p.add_argument("--runs", default="diagnostic/gamma2", help="comma-separated mode/config")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True, help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0, jobs, gaps, loaded = time.time(), [], [], None
    try:
        saved = saved_jobs(args.models, args.runs, args.seeds)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for mode, config, fold, seed, path in saved:
        if loaded != (mode, fold):
            beats = dl.load_beats(args.data_dir, dl.DS1_FOLDS[fold], mode, args.cache_dir, offline=True, progress=False)
            loaded = (mode, fold)
        kept = predictions_path(args.predictions, mode, config, seed, fold) if args.predictions else None
        r = score_job(path, beats, kept)
        gaps.append(r["max_gap_to_kept"])
        for rule, cm in r["confusions"].items():
            jobs.append({"mode": mode, "config": f"{config} {rule}", "seed": seed, "fold": fold, "confusion": cm})
        print(f"{mode}/{config} fold {fold} seed {seed}: {time.time() - t0:.0f} s", flush=True)
    summary = summarise(jobs)
    per_seed = {key: list(s["macro_f1_nsv_by_seed"].values()) for key, s in summary.items()}
    gap = max((g for g in gaps if g is not None), default=None)
    write_json(Path(args.out).with_suffix(".json"), {
        "summary": summary, "per_seed_macro_f1_nsv": per_seed, "jobs": jobs, "block": BLOCK,
        "min_past": MIN_PAST, "rules": {k: str(v) for k, v in RULES.items()}, "max_gap_to_kept": gap,
        "wall_seconds": time.time() - t0, "command": " ".join(sys.argv)})
    write_text(Path(args.out).with_suffix(".md"),
               f"# Test-time batch-norm adaptation, DS1 patient-wise cross-validation\n\n"
               f"Command: `python {' '.join(sys.argv)}`\n\nBlocks of {BLOCK} beats; DS1's statistics until "
               f"{MIN_PAST} beats have been seen. `none` against the log-probabilities lab/cv.py kept: largest "
               f"difference {gap if gap is None else f'{gap:.2e}'}.\n\n{table(summary)}\n\nPer seed (macro-F1 (N,S,V)):\n\n"
               + "\n".join(f"- {k}: {', '.join(f'{v:.4f}' for v in vs)}" for k, vs in sorted(per_seed.items()))
               + "\n")
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
