"""Fit the polarity check (quality.POLARITY_FILE): a logistic regression of quality.polarity_features on DS1 records,
each upright and inverted, with leave-one-record-out on DS1 to choose its regularisation; DS2 is never read.

    python lab/polarity.py --data-dir ../shared/data/mitdb --offline

Prints the held-out DS1 scores for each C and writes polarity.json with the C chosen (the one of the largest
smallest held-out margin, every DS1 record right in both polarities). The 26 records outside DS1 are checked by
bench/robustness.py, not here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the product: the repository root

import data_loader as dl  # noqa: E402
import quality  # noqa: E402
from detect import detect_r_peaks  # noqa: E402
from outputs import write_text  # noqa: E402

CS = (0.01, 0.1, 1.0, 3.0, 10.0, 100.0)


def features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, fs = dl.read_record(path)
    peaks = detect_r_peaks(x, fs)
    return quality.polarity_features(x, peaks), quality.polarity_features(-x, detect_r_peaks(-x, fs))


def fit(feats: dict, records, c: float):
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([np.concatenate(feats[r]) for r in records])
    y = np.concatenate([np.r_[np.zeros(len(feats[r][0])), np.ones(len(feats[r][1]))] for r in records])
    return LogisticRegression(C=c, max_iter=5000).fit(x, y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--offline", action="store_true")
    args = p.parse_args()
    dl.ensure_records(args.data_dir, dl.DS1, offline=args.offline)
    feats = {r: features(Path(args.data_dir) / r) for r in dl.DS1}
    best = None
    for c in CS:
        margins = []
        for r in dl.DS1:
            m = fit(feats, [q for q in dl.DS1 if q != r], c)
            up, down = (float(np.median(m.decision_function(f))) for f in feats[r])
            margins.append(min(-up, down))
        worst = int(np.argmin(margins))
        print(f"C {c:g}: held-out DS1 records wrong {sum(m <= 0 for m in margins)}, smallest margin "
              f"{margins[worst]:+.2f} ({dl.DS1[worst]})")
        if best is None or min(margins) > best[1]:
            best = (c, min(margins))
    m = fit(feats, dl.DS1, best[0])
    write_text(quality.POLARITY_FILE, json.dumps(
        {"made_by": "lab/polarity.py", "records": list(dl.DS1), "C": best[0],
         "held_out_smallest_margin": round(best[1], 4), "intercept": round(float(m.intercept_[0]), 6),
         "weights": [round(float(v), 6) for v in m.coef_[0]]}) + "\n")
    print(f"C {best[0]:g} chosen; {quality.POLARITY_FILE} written")


if __name__ == "__main__":
    main()
