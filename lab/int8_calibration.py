"""DS1 cross-validation of the static int8 model's calibration (round 41 of lab/results/cv.md).

The static int8 model (`quantize.quantize_static_onnx`, the ONNX file to deploy) takes each activation's
int8 range from calibration beats. onnxruntime offers three ways to turn the calibration beats'
activations into a range: MinMax (the product's: their full range), Percentile (a high percentile of
their magnitudes, so rare outliers saturate instead of coarsening every step) and Entropy (the range
that keeps the histogram's information). Each network `lab/cv.py --save-models` kept is quantized each
way, calibrated on beats of its own training folds (`quantize.calibration_beats`, as the product does),
and scored on its held-out fold beside the float network; no DS2 beat is read.

    python lab/cv.py --data-dir ../shared/data/mitdb --offline --configs gamma2 --modes diagnostic --seeds 2 \\
        --workers 2 --threads 1 --out /tmp/jobs --save-predictions cache/cv_predictions --save-models cache/cv_models
    python lab/int8_calibration.py --data-dir ../shared/data/mitdb --models cache/cv_models \\
        --runs diagnostic/gamma2 --out lab/results/cv_round41
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the product: the repository root

import data_loader as dl  # noqa: E402
from cv import load_saved_model, saved_jobs, summarise, table  # noqa: E402
from evaluate import confusion  # noqa: E402
from export import OnnxModel, export_onnx  # noqa: E402
from outputs import write_json, write_text  # noqa: E402
from quantize import calibration_beats, quantize_static_onnx  # noqa: E402
from train import predict_proba  # noqa: E402

METHODS = ("MinMax", "Percentile", "Entropy")


def score_job(path: Path, train: dl.Beats, test: dl.Beats, seed: int) -> dict:
    """{'float': confusion, 'int8 <method>': confusion, ...} of one saved network on its held-out fold."""
    model = load_saved_model(path)
    out = {"float": confusion(test.y, predict_proba(model, test.x, test.rr).argmax(1)).tolist()}
    calib_x, calib_rr = calibration_beats(train, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(model, Path(tmp) / "float.onnx", model.n_rr)
        for method in METHODS:
            q = Path(tmp) / f"{method}.onnx"
            quantize_static_onnx(Path(tmp) / "float.onnx", q, calib_x, calib_rr, method=method)
            out[f"int8 {method}"] = confusion(test.y, OnnxModel(q, threads=1).predict_proba(test.x, test.rr).argmax(1)).tolist()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--models", required=True, help="lab/cv.py --save-models DIR")
    p.add_argument("--runs", default="diagnostic/gamma2", help="comma-separated mode/config")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", required=True, help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0, jobs, loaded = time.time(), [], None
    try:
        saved = saved_jobs(args.models, args.runs, args.seeds)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for mode, config, fold, seed, path in saved:
        if loaded != (mode, fold):  # the fold's training beats calibrate, its held-out beats score
            held = dl.DS1_FOLDS[fold]
            train, test = (dl.load_beats(args.data_dir, recs, mode, args.cache_dir, offline=True, progress=False)
                           for recs in ([r for r in dl.DS1 if r not in held], held))
            loaded = (mode, fold)
        for rule, cm in score_job(path, train, test, seed).items():
            jobs.append({"mode": mode, "config": f"{config} {rule}", "seed": seed, "fold": fold, "confusion": cm})
        print(f"{mode}/{config} fold {fold} seed {seed}: {time.time() - t0:.0f} s", flush=True)
    summary = summarise(jobs)
    per_seed = {f"{key} seed {s}": v for key in sorted(summary) for s, v in summary[key]["macro_f1_nsv_by_seed"].items()}
    command = "python lab/int8_calibration.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json(Path(args.out).with_suffix(".json"), {"summary": summary, "per_seed_macro_f1": per_seed,
                                                     "jobs": jobs, "wall_seconds": time.time() - t0,
                                                     "command": command})
    lines = ["# Static int8 calibration, DS1 patient-wise cross-validation", "", f"Command: `{command}` "
             f"({(time.time() - t0) / 60:.1f} min). Each saved network quantized with each calibration method, "
             "calibrated on its training folds' beats, scored on its held-out fold; confusions pooled over the "
             "folds, then averaged over seeds.", "", table(summary), "", "Macro-F1 (N,S,V) per seed:", "",
             "| run | macro-F1 |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in per_seed.items()]
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
