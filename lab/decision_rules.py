"""DS1 cross-validation of two decision rules tuned on held-out patients (round 32 of lab/results/cv.md).

Both act on the log-probabilities that `lab/cv.py --save-predictions` kept, so they cost no training:

- class offsets: constants added to the S and V log-probabilities before the argmax (the issue's
  "decision rules tuned on validation patients"; rounds 4-11 tried S alone). Scored in-sample (the
  best pair on all four held-out folds: a ceiling, not a result) and nested: each fold decided by the
  pair that is best on the other three, as a product would tune it on DS1 and meet a new patient.
- patient priors: each beat's probabilities reweighted by its patient's class mix, estimated from the
  mean probabilities of that patient's last K beats, itself included (no later beat, so both modes
  could use it), against the mix over the other three folds' beats, to the power beta. A patient with many S-like
  beats (DS2's record 232) would have S raised; one with none, S lowered.

    python lab/decision_rules.py --predictions cache/cv_predictions --runs diagnostic/gamma2,realtime/base \\
        --out lab/results/cv_round32
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the product: the repository root

import data_loader as dl  # noqa: E402
from cv import read_runs  # noqa: E402
from evaluate import confusion, metrics  # noqa: E402
from outputs import write_json, write_text  # noqa: E402

OFFSETS = np.round(np.arange(-2.0, 2.01, 0.25), 2)  # S and V log-probability offsets, each
PRIOR_BEATS = (64, 256, 1024)  # K: the patient's last K beats estimate its class mix
PRIOR_POWERS = (0.25, 0.5, 1.0)  # beta: 1 is Bayes' rule for a change of priors
S, V = dl.CLASSES.index("S"), dl.CLASSES.index("V")


def offset_logp(logp: np.ndarray, s: float, v: float) -> np.ndarray:
    out = logp.copy()
    out[:, S] += s
    out[:, V] += v
    return out


def pooled(folds: list, decide) -> dict:
    """metrics of the confusions pooled over folds, each fold's beats classified by decide(fold index, fold)."""
    return metrics(sum(confusion(z["labels"], decide(k, z)) for k, z in enumerate(folds)))


def best_offsets(folds: list) -> tuple[float, float]:
    scores = {(s, v): pooled(folds, lambda k, z: offset_logp(z["logp"], s, v).argmax(1))["macro_f1_nsv"]
              for s, v in itertools.product(OFFSETS, OFFSETS)}
    return max(scores, key=lambda sv: (scores[sv], -abs(sv[0]) - abs(sv[1])))  # ties: the smaller change


def patient_priors(z: dict, reference: np.ndarray, beats: int, power: float) -> np.ndarray:
    """Class decisions after each beat's probabilities are reweighted by (mix of its patient's last
    `beats` beats, itself included / reference mix) ** power."""
    p = np.exp(z["logp"].astype(np.float64))
    pred = np.empty(len(p), dtype=np.int64)
    for rec in np.unique(z["record"]):
        idx = np.flatnonzero(z["record"] == rec)
        idx = idx[np.argsort(z["sample"][idx])]  # time order
        csum = np.vstack([np.zeros((1, p.shape[1])), np.cumsum(p[idx], axis=0)])
        hi = np.arange(1, len(idx) + 1)
        lo = np.maximum(hi - beats, 0)
        mix = np.maximum((csum[hi] - csum[lo]) / (hi - lo)[:, None], 1e-4)
        pred[idx] = (np.log(p[idx]) + power * np.log(mix / reference)).argmax(1)
    return pred


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--predictions", required=True, help="the directory lab/cv.py --save-predictions wrote")
    p.add_argument("--runs", default="diagnostic/gamma2,realtime/base", help="mode/config pairs to score")
    p.add_argument("--out", default="lab/results/cv_decision_rules")
    args = p.parse_args(argv)

    scores, chosen = {}, {}
    try:
        predicted = read_runs(args.predictions, args.runs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for run, runs in predicted.items():
        for seed, folds in sorted(runs.items()):
            key = f"{run}/seed{seed}"
            others = [[z for j, z in enumerate(folds) if j != k] for k in range(len(folds))]
            nested = [best_offsets(o) for o in others]
            insample = best_offsets(folds)
            chosen[key] = {"offsets_in_sample": insample, "offsets_nested": nested}
            rules = {
                "argmax (the product)": lambda k, z: z["logp"].argmax(1),
                f"offsets in-sample S {insample[0]:+g} V {insample[1]:+g} (a ceiling)":
                    lambda k, z: offset_logp(z["logp"], *insample).argmax(1),
                "offsets nested (each fold: the other three's best)":
                    lambda k, z: offset_logp(z["logp"], *nested[k]).argmax(1),
            }
            # Reference mix for fold k: the mean probabilities over the other three folds' beats.
            refs = [np.exp(np.concatenate([z["logp"] for z in o]).astype(np.float64)).mean(0) for o in others]
            for beats, power in itertools.product(PRIOR_BEATS, PRIOR_POWERS):
                rules[f"patient priors K {beats} beta {power}"] = (
                    lambda k, z, b=beats, w=power: patient_priors(z, refs[k], b, w))
            for name, decide in rules.items():
                name = name if not name.startswith("offsets in-sample") else "offsets in-sample (a ceiling)"
                scores.setdefault(name, {})[key] = pooled(folds, decide)
    runs = sorted(scores["argmax (the product)"])
    head = ("| rule | " + " | ".join(f"{r} macro-F1" for r in runs)
            + " | mean | change | S F1 (mean) | V +P (mean) | V Se (mean) |")
    rows = [head, "|---" * (len(runs) + 6) + "|"]
    mean = {k: float(np.mean([v[r]["macro_f1_nsv"] for r in runs])) for k, v in scores.items()}
    base = mean["argmax (the product)"]
    for name, v in scores.items():
        avg = lambda c, f: np.mean([v[r]["per_class"][c][f] for r in runs])  # noqa: E731
        rows.append(f"| {name} | " + " | ".join(f"{v[r]['macro_f1_nsv']:.4f}" for r in runs)
                    + f" | {mean[name]:.4f} | {mean[name] - base:+.4f} | {avg('S', 'f1'):.3f}"
                      f" | {avg('V', 'ppv'):.3f} | {avg('V', 'se'):.3f} |")
    picks = "\n".join(f"- {k}: in-sample S {v['offsets_in_sample'][0]:+g}, V {v['offsets_in_sample'][1]:+g}; "
                      f"nested, fold by fold: " + ", ".join(f"({s:+g}, {w:+g})" for s, w in v["offsets_nested"])
                      for k, v in chosen.items())
    write_json(Path(args.out).with_suffix(".json"), {
        "command": " ".join(sys.argv), "offsets": {k: {a: np.asarray(b).tolist() for a, b in v.items()}
                                                   for k, v in chosen.items()},
        "scores": {k: {r: {"macro_f1_nsv": m["macro_f1_nsv"], "per_class": m["per_class"]} for r, m in v.items()}
                   for k, v in scores.items()}})
    write_text(Path(args.out).with_suffix(".md"),
               f"# Decision rules tuned on held-out DS1 patients\n\nCommand: `python {' '.join(sys.argv)}`\n\n"
               + "\n".join(rows) + f"\n\nOffsets (S, V) chosen:\n\n{picks}\n")
    print("\n".join(rows))
    print(picks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
