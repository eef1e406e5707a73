"""DS1 cross-validation of a decision rule: beats in noise left unclassified (Q).

Scores every candidate (noise measure x threshold) on the held-out predictions that
`lab/cv.py --save-predictions` kept, so the search costs no training. Round 25 of lab/results/cv.md.

    python lab/cv.py ... --configs gamma2 --modes diagnostic --seeds 2 --save-predictions cache/cv_predictions
    python lab/noise_rule.py --data-dir ../shared/data/mitdb --offline --predictions cache/cv_predictions \
        --runs diagnostic/gamma2,realtime/base --out lab/results/cv_round25
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the product: the repository root

import data_loader as dl  # noqa: E402
from cv import read_runs  # noqa: E402
from evaluate import confusion, metrics  # noqa: E402
from outputs import write_json, write_text  # noqa: E402

QRS_HALF = 36  # samples (100 ms) each side of the R-peak: the QRS, left out of both measures
PERCENTILES = (99.0, 99.5, 99.8, 99.9)  # thresholds: these percentiles of the measure over every DS1 beat


def flanks(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) the QRS of each z-scored window (beats, WINDOW)."""
    return windows[:, :dl.WINDOW_BEFORE - QRS_HALF], windows[:, dl.WINDOW_BEFORE + QRS_HALF:]


def noise_hf(windows: np.ndarray) -> np.ndarray:
    """Mean squared second difference outside the QRS: jagged muscle and electrode noise."""
    d2 = np.concatenate([np.diff(f, 2, axis=1) for f in flanks(windows)], axis=1)
    return (d2 ** 2).mean(axis=1)


def noise_flankmax(windows: np.ndarray) -> np.ndarray:
    """Largest excursion outside the QRS over the QRS's own: motion artefacts as large as a beat."""
    qrs = np.abs(windows[:, dl.WINDOW_BEFORE - QRS_HALF:dl.WINDOW_BEFORE + QRS_HALF]).max(axis=1)
    return np.abs(np.concatenate(flanks(windows), axis=1)).max(axis=1) / np.maximum(qrs, 1e-6)


MEASURES = {"hf": noise_hf, "flankmax": noise_flankmax}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--predictions", required=True, help="the directory lab/cv.py --save-predictions wrote")
    p.add_argument("--runs", default="diagnostic/gamma2,realtime/base", help="mode/config pairs to score")
    p.add_argument("--out", default="lab/results/cv_noise_rule")
    args = p.parse_args(argv)

    q = dl.CLASSES.index("Q")
    scores, thresholds = {}, {}
    try:
        predicted = read_runs(args.predictions, args.runs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for run, runs in predicted.items():
        mode = run.split("/")[0]
        b = dl.load_beats(args.data_dir, dl.DS1, mode, args.cache_dir, offline=args.offline, progress=False)
        where = {(r, s): i for i, (r, s) in enumerate(zip(b.record, b.sample))}
        measures = {name: fn(b.x[:, 0]) for name, fn in MEASURES.items()}
        for name, m in measures.items():  # the same thresholds for both modes: the first mode's beats
            thresholds.setdefault(name, {str(pc): float(np.percentile(m, pc)) for pc in PERCENTILES})
        by_seed = {}
        for seed, z in ((seed, z) for seed, folds in runs.items() for z in folds):
            rows = np.array([where[(r, s)] for r, s in zip(z["record"], z["sample"])])
            pred = z["logp"].argmax(1)
            cms = by_seed.setdefault(seed, {})
            cms["none"] = cms.get("none", 0) + confusion(z["labels"], pred)
            for name, m in measures.items():
                for pc, t in thresholds[name].items():
                    ruled = np.where(m[rows] > t, q, pred)
                    key = f"{name}>{pc}"
                    cms[key] = cms.get(key, 0) + confusion(z["labels"], ruled)
        for seed, cms in by_seed.items():
            for key, cm in cms.items():
                scores.setdefault(key, {})[f"{run}/seed{seed}"] = metrics(cm)
    runs = sorted(scores["none"])
    rows = ["| rule | " + " | ".join(f"{r} macro-F1" for r in runs) + " | mean | V +P (mean) | V Se (mean) | N F1 (mean) |",
            "|---" * (len(runs) + 5) + "|"]
    mean = {k: float(np.mean([v[r]["macro_f1_nsv"] for r in runs])) for k, v in scores.items()}
    for key in sorted(scores, key=lambda k: (k != "none", k)):
        v = scores[key]
        avg = lambda c, f: np.mean([v[r]["per_class"][c][f] for r in runs])  # noqa: E731
        rows.append(f"| {key} | " + " | ".join(f"{v[r]['macro_f1_nsv']:.4f}" for r in runs)
                    + f" | {mean[key]:.4f} | {avg('V', 'ppv'):.4f} | {avg('V', 'se'):.4f} | {avg('N', 'f1'):.4f} |")
    best = max((k for k in scores if k != "none"), key=mean.get)
    write_json(Path(args.out).with_suffix(".json"), {
        "thresholds": thresholds, "best": best, "command": " ".join(sys.argv),
        "scores": {k: {r: {"macro_f1_nsv": m["macro_f1_nsv"], "per_class": m["per_class"]} for r, m in v.items()}
                   for k, v in scores.items()}})
    write_text(Path(args.out).with_suffix(".md"),
               f"# Noisy beats left Q: DS1 cross-validation\n\nCommand: `python {' '.join(sys.argv)}`\n\n"
               f"Thresholds (percentiles of each measure over every DS1 beat): {thresholds}\n\n"
               + "\n".join(rows) + f"\n\nBest mean macro-F1: `{best}`.\n")
    print("\n".join(rows))
    print(f"best: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
