"""End-to-end DS2 evaluation: detector + classifier together, beside the reference-peak figures.

    python bench/end_to_end.py --data-dir ../shared/data/mitdb --offline --runs runs/accuracy

Uses the trained runs of the accuracy benchmark (<runs>/<mode>-seed<k>, float32 models). For each
DS2 record the R-peaks are detected (detect.detect_r_peaks) and classified as `main.py predict`
does; detections are matched to the reference beats within 150 ms (EC57). A reference beat with no
detection is a false negative of its class, a detection with no reference beat a false positive of
the class it was given. The same models classify the reference R-peaks for the protocol's figures.
Also times `predict` (read, filter, detect, classify) per 30-minute record.
Writes results/end_to_end.md and results/end_to_end.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data_loader as dl  # noqa: E402
from detect import match_beats  # noqa: E402
from evaluate import NSV, confusion, detection_confusion, metrics  # noqa: E402
from outputs import write_json, write_text  # noqa: E402


def mean_std(ms: list[dict]) -> dict:
    out = {c: {k: (float(np.mean([m["per_class"][c][k] for m in ms])), float(np.std([m["per_class"][c][k] for m in ms])))
               for k in ("se", "ppv", "f1")} for c in dl.CLASSES}
    out["macro_f1_nsv"] = (float(np.mean([m["macro_f1_nsv"] for m in ms])), float(np.std([m["macro_f1_nsv"] for m in ms])))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--runs", default="runs/accuracy", help="folder of <mode>-seed<k> runs (bench/accuracy.py)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--records", default=",".join(dl.DS2))
    p.add_argument("--out", default="results/end_to_end")
    args = p.parse_args(argv)
    import predict
    import recordings

    records = args.records.split(",")
    runs = {m: [Path(args.runs) / f"{m}-seed{s}" for s in range(args.seeds)] for m in dl.MODES}
    try:
        dl.ensure_records(args.data_dir, records, offline=args.offline)
        models = {m: [predict.load_classifier(r) for r in rs] for m, rs in runs.items()}
    except dl.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    cm_e2e = {m: [np.zeros((6, 6), np.int64) for _ in rs] for m, rs in runs.items()}
    cm_ref = {m: [np.zeros((5, 5), np.int64) for _ in rs] for m, rs in runs.items()}
    per_record, timings = {}, []
    for rec in records:
        path = Path(args.data_dir) / rec
        ref, ref_y = dl.read_beats(path)
        clf0 = models["diagnostic"][0]
        t = time.perf_counter()  # what `main.py predict` spends on a record, model loaded
        x, gaps = recordings.prepare(recordings.read_wfdb(path))
        at_360 = predict.classify(x, clf0, gaps)
        timings.append((time.perf_counter() - t) / (len(x) / dl.FS) * 1800)
        # The same record as a 250 Hz recording (resampled here), classified via resampling back.
        c360 = np.bincount(at_360["class"], minlength=5)
        x250 = signal.resample_poly(x, 25, 36)
        c250 = np.bincount(predict.classify(recordings.resample(x250, 250.0), clf0)["class"], minlength=5)
        peaks = at_360["sample"]  # detect.detect_r_peaks, as predict found them
        ri, di = match_beats(ref, peaks, dl.FS)
        row = {"beats": len(ref), "detected": len(peaks), "missed": len(ref) - len(ri),
               "extra": len(peaks) - len(di), "predict_seconds_per_30min": timings[-1],
               "counts_360hz": c360.tolist(), "counts_250hz": c250.tolist(),
               "max_count_change_pct_of_beats": float(100 * np.abs(c250 - c360).max() / c360.sum())}
        for mode in dl.MODES:
            det_x, det_rr = dl.beat_inputs(x, peaks, mode)
            ref_x, ref_rr = dl.beat_inputs(x, ref, mode)
            s_fn = []
            for k, clf in enumerate(models[mode]):
                pred = clf.predict_proba(det_x, det_rr).argmax(1)
                cm = detection_confusion(ref_y, pred, ri, di)
                cm_e2e[mode][k] += cm
                cm_ref[mode][k] += confusion(ref_y, clf.predict_proba(ref_x, ref_rr).argmax(1))
                s_fn.append(int(cm[1].sum() - cm[1, 1]))
            row[f"{mode}_S_missed_or_wrong"] = float(np.mean(s_fn))
        per_record[rec] = row
        print(f"{rec}: {row['missed']} missed, {row['extra']} extra detections; predict "
              f"{timings[-1]:.2f} s per 30 min", flush=True)
    result = {"records": records, "runs": {m: [str(r) for r in rs] for m, rs in runs.items()},
              "per_record": per_record, "predict_seconds_per_30min": {"mean": float(np.mean(timings)),
                                                                      "max": float(np.max(timings))},
              "wall_seconds": time.time() - t0,
              "command": "python bench/end_to_end.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    lines = ["# End-to-end DS2: detected R-peaks vs reference R-peaks", "",
             f"Command: `{result['command']}` ({result['wall_seconds']:.0f} s). Models: the float32 models of "
             f"`{args.runs}/<mode>-seed0..{args.seeds - 1}` (bench/accuracy.py); mean ± std over {args.seeds} seeds. "
             f"Detector: `detect.detect_r_peaks`; matching within 150 ms; a missed reference beat is a false "
             f"negative of its class, an extra detection a false positive of the class it was given.", ""]
    for mode in dl.MODES:
        e2e = mean_std([metrics(cm) for cm in cm_e2e[mode]])
        refm = mean_std([metrics(cm) for cm in cm_ref[mode]])
        result[mode] = {"end_to_end": e2e, "reference_peaks": refm,
                        "drop": {c: {k: e2e[c][k][0] - refm[c][k][0] for k in ("se", "ppv", "f1")} for c in dl.CLASSES}
                        | {"macro_f1_nsv": e2e["macro_f1_nsv"][0] - refm["macro_f1_nsv"][0]},
                        "confusion_end_to_end_seed0": cm_e2e[mode][0].tolist()}
        lines += [f"## {mode}", "",
                  "| peaks | " + " | ".join(f"{c} Se | {c} +P | {c} F1" for c in NSV) + " | macro-F1 (N,S,V) |",
                  "|---" * (3 * len(NSV) + 2) + "|"]
        for name, m in (("reference", refm), ("detected", e2e)):
            lines.append(f"| {name} | " + " | ".join(f"{m[c]['se'][0]:.3f} | {m[c]['ppv'][0]:.3f} | {m[c]['f1'][0]:.3f}"
                                                     for c in NSV)
                         + f" | {m['macro_f1_nsv'][0]:.3f} ± {m['macro_f1_nsv'][1]:.3f} |")
        d = result[mode]["drop"]
        lines.append("| change | " + " | ".join(f"{d[c]['se']:+.3f} | {d[c]['ppv']:+.3f} | {d[c]['f1']:+.3f}" for c in NSV)
                     + f" | {d['macro_f1_nsv']:+.3f} |")
        lines += ["", "F and Q F1 (reference -> detected): "
                  + ", ".join(f"{c} {refm[c]['f1'][0]:.3f} -> {e2e[c]['f1'][0]:.3f}" for c in ("F", "Q")), ""]
    tot = {k: sum(r[k] for r in per_record.values()) for k in ("beats", "detected", "missed", "extra")}
    lines += ["## Detection and speed on DS2", "",
              f"{tot['beats']:,} reference beats, {tot['detected']:,} detections: {tot['missed']} missed, "
              f"{tot['extra']} extra. `predict` (read, filter, detect, classify; float32, model loaded) takes "
              f"{result['predict_seconds_per_30min']['mean']:.2f} s per 30-minute record on average, "
              f"{result['predict_seconds_per_30min']['max']:.2f} s at most.", "",
              "A 250 Hz copy of each record (scipy.signal.resample_poly 25/36), resampled back to 360 Hz by "
              "`recordings.resample` as `predict --fs 250` does, classified by the seed-0 diagnostic model: largest "
              f"per-class count change {max(r['max_count_change_pct_of_beats'] for r in per_record.values()):.2f}% "
              "of the record's beats.", "",
              "| record | beats | missed | extra | S beats lost (diagnostic, mean of seeds) | predict s / 30 min | "
              "class counts N,S,V,F,Q at 360 Hz -> from 250 Hz |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {rec} | {r['beats']} | {r['missed']} | {r['extra']} | {r['diagnostic_S_missed_or_wrong']:.0f} | "
              f"{r['predict_seconds_per_30min']:.2f} | {','.join(map(str, r['counts_360hz']))} -> "
              f"{','.join(map(str, r['counts_250hz']))} |" for rec, r in per_record.items()]
    write_json(Path(args.out).with_suffix(".json"), result)
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines[:40]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
