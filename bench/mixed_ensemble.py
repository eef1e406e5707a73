"""DS1 cross-validation of a two-network ensemble whose members differ in design (round 43 of results/cv.md).

The product's diagnostic model averages two networks of one design trained from different seeds.
Two designs that err differently may do better together than two seeds of either. This scores,
from the held-out log-probabilities `bench/cv.py --save-predictions` kept (no training):

- each network of run A and of run B alone (the base a pair has to beat),
- every pair of seeds within run A and within run B (the product's kind of ensemble), and
- every pair of one A network and one B network,

each pair deciding by the argmax of its members' mean log-probabilities (as model.SeedEnsemble
does), its confusion pooled over the four held-out folds; mean +/- std over the networks or pairs.

    python bench/mixed_ensemble.py --predictions cache/cv_predictions \\
        --runs diagnostic/gamma2_alpha_F1,diagnostic/gamma2_pool5 --out results/cv_round43
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data_loader as dl  # noqa: E402
from cv import read_runs  # noqa: E402
from evaluate import confusion, metrics  # noqa: E402
from outputs import write_json, write_text  # noqa: E402


def pair_metrics(a: list[dict], b: list[dict]) -> dict:
    """Metrics of the ensemble of two networks' held-out folds (lists of per-fold predictions)."""
    cm = np.zeros((len(dl.CLASSES),) * 2, int)
    for fa, fb in zip(a, b, strict=True):
        if not np.array_equal(fa["sample"], fb["sample"]) or not np.array_equal(fa["record"], fb["record"]):
            raise ValueError("the two runs' held-out beats differ: they were not cut into the same folds "
                             "(run both with today's bench/cv.py folds and preprocessing)")
        cm += confusion(fa["labels"], ((fa["logp"] + fb["logp"]) / 2).argmax(1))
    return metrics(cm)


def single_metrics(folds: list[dict]) -> dict:
    """Metrics of one network's held-out folds, its confusion pooled over them (as bench/cv.py scores a seed)."""
    cm = np.zeros((len(dl.CLASSES),) * 2, int)
    for f in folds:
        cm += confusion(f["labels"], f["logp"].argmax(1))
    return metrics(cm)


def summary(ms: list[dict]) -> dict:
    f1 = [m["macro_f1_nsv"] for m in ms]
    return {"pairs": len(ms), "macro_f1_nsv": float(np.mean(f1)), "macro_f1_nsv_std": float(np.std(f1)),
            **{f"{c}_{k}": float(np.mean([m["per_class"][c][k] for m in ms]))
               for c in ("N", "S", "V") for k in ("se", "ppv", "f1")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", required=True, help="folder bench/cv.py --save-predictions wrote")
    ap.add_argument("--runs", required=True, help="two mode/config runs, comma-separated: A,B")
    ap.add_argument("--out", default="results/mixed_ensemble", help="output path without extension (.md, .json)")
    args = ap.parse_args(argv)
    names = args.runs.split(",")
    if len(names) != 2:
        print("error: --runs takes exactly two mode/config runs, A,B", file=sys.stderr)
        return 2
    try:
        runs = read_runs(args.predictions, args.runs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    full = {name: {s: folds for s, folds in runs[name].items() if len(folds) == len(dl.DS1_FOLDS)} for name in names}
    for name in names:
        partial = sorted(set(runs[name]) - set(full[name]))
        if partial:
            print(f"warning: {name}: seed(s) {', '.join(map(str, partial))} left out, not all "
                  f"{len(dl.DS1_FOLDS)} folds kept", file=sys.stderr)
        if len(full[name]) < 2:
            print(f"error: {name} has {len(full[name])} seed(s) with all {len(dl.DS1_FOLDS)} folds kept; pairs need "
                  f"two: run bench/cv.py with --seeds 2 or more and --save-predictions {args.predictions}", file=sys.stderr)
            return 2
    a, b = names
    try:
        rows = {f"{name}, one network": summary([single_metrics(full[name][s]) for s in sorted(full[name])])
                for name in names}
        rows |= {f"{name} x2 seeds": summary([pair_metrics(full[name][i], full[name][j])
                                             for i, j in itertools.combinations(sorted(full[name]), 2)])
                for name in names}
        rows[f"{a} + {b}"] = summary([pair_metrics(full[a][i], full[b][j])
                                      for i in sorted(full[a]) for j in sorted(full[b])])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = ["# Two-network ensembles: one design twice, or two designs", "",
             f"Command: `python bench/mixed_ensemble.py {' '.join(sys.argv[1:])}`", "",
             "Held-out DS1 folds of bench/cv.py's jobs; each pair's confusion pooled over the four folds; "
             "mean ± std over the networks or pairs scored.", "",
             "| ensemble | scored | S Se | S +P | S F1 | V +P | V F1 | N F1 | macro-F1 (N,S,V) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | {r['pairs']} | {r['S_se']:.3f} | {r['S_ppv']:.3f} | {r['S_f1']:.3f} | {r['V_ppv']:.3f} | "
              f"{r['V_f1']:.3f} | {r['N_f1']:.3f} | {r['macro_f1_nsv']:.4f} ± {r['macro_f1_nsv_std']:.4f} |"
              for k, r in rows.items()]
    write_json(Path(args.out).with_suffix(".json"), {"rows": rows, "command": "python bench/mixed_ensemble.py "
                                                     + " ".join(sys.argv[1:])})
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines[-len(rows):]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
