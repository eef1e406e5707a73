"""DS1 fold models for choosing how to adapt to a patient (lab/adapt_cv.py): for each of the four DS1 folds, the
product's network trained on the other three with the product's settings, saved as a run's model_float32.pt.

    python lab/adapt_folds.py --data-dir ../shared/data/mitdb --offline [--modes diagnostic realtime]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the product: the repository root

import data_loader as dl  # noqa: E402


def fold_dir(out, mode: str, fold: int, seed: int = 0) -> Path:
    return Path(out) / f"{mode}-fold{fold}-seed{seed}"


def train_folds(data_dir, out, modes, seed: int = 0, cache_dir="cache", offline=True) -> None:
    from config import ENSEMBLE, GAMMA
    from quantize import save_model
    from train import TrainConfig, fit_ensemble

    for mode in modes:
        for f, held in enumerate(dl.DS1_FOLDS):
            path = fold_dir(out, mode, f, seed) / "model_float32.pt"
            if path.is_file():
                continue
            recs = [r for r in dl.DS1 if r not in held]
            train = dl.load_beats(data_dir, recs, mode, cache_dir, offline=offline, progress=False)
            t0 = time.time()
            model, _, _ = fit_ensemble(mode, train, None, TrainConfig(gamma=GAMMA[mode], seed=seed), ENSEMBLE[mode],
                                       progress=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_model(model, path, mode)
            print(f"{mode} fold {f} (holds out {' '.join(held)}): {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--out", default="runs/lab-adapt")
    p.add_argument("--modes", nargs="+", default=list(dl.MODES))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    train_folds(a.data_dir, a.out, a.modes, a.seed, offline=a.offline)
