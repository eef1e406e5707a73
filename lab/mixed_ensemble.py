"""DS1 cross-validation of ensembles whose members differ in design (rounds 43, 50, 51, 53-55 of lab/results/cv.md).

Two designs that err differently may do better together than two seeds of either. This scores,
from the held-out log-probabilities `lab/cv.py --save-predictions` kept (no training):

- each network of every run named alone (the base an ensemble has to beat),
- with two runs A,B: every pair of seeds within A and within B (an ensemble of one design), and every pair of
  one A network and one B network;
- with three runs A,B,C: every pair of one A and one B network, and every trio of one network of each. A run
  may be named twice (A,B,A): its two members then take two different seeds.

Each ensemble decides by the argmax of its members' mean log-probabilities (as model.SeedEnsemble
does), its confusion pooled over the four held-out folds; mean +/- std over the networks or ensembles.

    python lab/mixed_ensemble.py --predictions cache/cv_predictions \\
        --runs diagnostic/gamma2_alpha_F1,diagnostic/gamma2_pool5 --out lab/results/cv_round43
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


def ensemble_metrics(*members: list[dict]) -> dict:
    """Metrics of the ensemble of networks' held-out folds (each a list of per-fold predictions)."""
    cm = np.zeros((len(dl.CLASSES),) * 2, int)
    for folds in zip(*members, strict=True):
        first = folds[0]
        for f in folds[1:]:
            if not np.array_equal(first["sample"], f["sample"]) or not np.array_equal(first["record"], f["record"]):
                raise ValueError("the runs' held-out beats differ: they were not cut into the same folds "
                                 "(run them all with today's lab/cv.py folds and preprocessing)")
        cm += confusion(first["labels"], (sum(f["logp"] for f in folds) / len(folds)).argmax(1))
    return metrics(cm)


def ensembles(names: list[str], seeds: dict) -> list[tuple]:
    """Every ensemble of one network per name (seeds[name]: that run's seeds), no network twice: tuples of
    (name, seed), each set once whatever the order its members were drawn in."""
    out = set()
    for combo in itertools.product(*[[(n, s) for s in sorted(seeds[n])] for n in names]):
        if len(set(combo)) == len(combo):
            out.add(tuple(sorted(combo)))
    return sorted(out)


def single_metrics(folds: list[dict]) -> dict:
    """Metrics of one network's held-out folds, its confusion pooled over them (as lab/cv.py scores a seed)."""
    cm = np.zeros((len(dl.CLASSES),) * 2, int)
    for f in folds:
        cm += confusion(f["labels"], f["logp"].argmax(1))
    return metrics(cm)


def summary(ms: list[dict]) -> dict:
    f1 = [m["macro_f1_nsv"] for m in ms]
    return {"scored": len(ms), "macro_f1_nsv": float(np.mean(f1)), "macro_f1_nsv_std": float(np.std(f1)),
            **{f"{c}_{k}": float(np.mean([m["per_class"][c][k] for m in ms]))
               for c in ("N", "S", "V") for k in ("se", "ppv", "f1")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--predictions", required=True, help="folder lab/cv.py --save-predictions wrote")
    ap.add_argument("--runs", required=True,
                    help="two or three mode/config runs, comma-separated: A,B or A,B,C (a run may be named twice)")
    ap.add_argument("--out", default="lab/results/mixed_ensemble", help="output path without extension (.md, .json)")
    args = ap.parse_args(argv)
    names = args.runs.split(",")
    if len(names) not in (2, 3):
        print("error: --runs takes two or three mode/config runs, A,B or A,B,C", file=sys.stderr)
        return 2
    distinct = list(dict.fromkeys(names))
    try:
        runs = read_runs(args.predictions, ",".join(distinct))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    full = {name: {s: folds for s, folds in runs[name].items() if len(folds) == len(dl.DS1_FOLDS)} for name in distinct}
    for name in distinct:
        partial = sorted(set(runs[name]) - set(full[name]))
        if partial:
            print(f"warning: {name}: seed(s) {', '.join(map(str, partial))} left out, not all "
                  f"{len(dl.DS1_FOLDS)} folds kept", file=sys.stderr)
        need = max(2, names.count(name))  # within-run pairs need two seeds; a run named k times, k of them
        if len(full[name]) < need:
            print(f"error: {name} has {len(full[name])} seed(s) with all {len(dl.DS1_FOLDS)} folds kept; ensembles need "
                  f"{need}: run lab/cv.py with --seeds {need} or more and --save-predictions {args.predictions}",
                  file=sys.stderr)
            return 2
    seeds = {name: sorted(full[name]) for name in distinct}

    def scored(members: list[str]) -> dict:
        return summary([ensemble_metrics(*[full[n][s] for n, s in combo]) for combo in ensembles(members, seeds)])

    try:
        rows = {f"{name}, one network": summary([single_metrics(full[name][s]) for s in seeds[name]])
                for name in distinct}
        if len(names) == 2:
            rows |= {f"{name} x2 seeds": scored([name, name]) for name in distinct}
        rows[" + ".join(names[:2])] = scored(names[:2])
        if len(names) == 3:
            rows[" + ".join(names)] = scored(names)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = ["# Ensembles of networks of one design or several", "",
             f"Command: `python lab/mixed_ensemble.py {' '.join(sys.argv[1:])}`", "",
             "Held-out DS1 folds of lab/cv.py's jobs; each network's or ensemble's confusion pooled over the four "
             "folds; mean ± std over those scored (an ensemble: one network per run named, no network twice).", "",
             "| ensemble | scored | S Se | S +P | S F1 | V +P | V F1 | N F1 | macro-F1 (N,S,V) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {k} | {r['scored']} | {r['S_se']:.3f} | {r['S_ppv']:.3f} | {r['S_f1']:.3f} | {r['V_ppv']:.3f} | "
              f"{r['V_f1']:.3f} | {r['N_f1']:.3f} | {r['macro_f1_nsv']:.4f} ± {r['macro_f1_nsv_std']:.4f} |"
              for k, r in rows.items()]
    write_json(Path(args.out).with_suffix(".json"), {"rows": rows, "command": "python lab/mixed_ensemble.py "
                                                     + " ".join(sys.argv[1:])})
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines[-len(rows):]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
