"""Patient-adaptive benchmark (../shared/docs/PROTOCOL.md, "Patient-adaptive evaluation"): each DS2 record's model
adapted to a few of its own beats' reference labels (adapt.py), a separate protocol from DS1 -> DS2.

    python bench/adapt.py --data-dir ../shared/data/mitdb --offline        # runs/accuracy/<mode>-seed<0..4>

For each mode and seed (the runs bench/accuracy.py trains) and each DS2 record, on annotated and on detected R-peaks:
- first 5 minutes: adapted to the labels of the beats before 300 s, scored on the beats from 300 s on, beside the
  unadapted model on the same beats;
- K chosen beats (K = 0, 5, 10, 20, 50): the beats adapt.suggest chooses, and as many at random, labelled, scored on
  every other beat (K = 0: the unadapted model).
The reference label stands in for the person; a suggested detection that is no beat gets no label. Figures: N, S
and V Se / +P / F1 pooled over DS2, the mean over seeds; per record; the static int8 export of the adapted models
(calibrated on the record's own beats, no labels); and the seconds `main.py adapt` takes on each record.
Writes results/adapt.md and results/adapt.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))  # bench/machine.py (after the product: adapt is adapt.py)

import adapt  # noqa: E402
import data_loader as dl  # noqa: E402
from detect import detect_r_peaks, match_beats  # noqa: E402
from evaluate import confusion, detection_confusion, metrics  # noqa: E402
from machine import cpu, describe, update_readme  # noqa: E402
from outputs import write_json, write_text  # noqa: E402

FIRST_SECONDS = 300.0
KS = (0, 5, 10, 20, 50)
NSV = ("N", "S", "V")
INT8_KEYS = ("first5min", "suggested 20")


def record_inputs(data_dir, rec: str, mode: str, peaks: str):
    """(windows, rr, label of each beat or -1, beat samples, reference labels, reference samples, detected index
    of each reference beat or -1) of one record, on its annotated or its detected R-peaks."""
    path = Path(data_dir) / rec
    x, _ = dl.read_record(path)
    ref_peaks, ref_y = dl.read_beats(path)
    at = ref_peaks if peaks == "annotated" else detect_r_peaks(x, dl.FS)
    windows, rr = dl.beat_inputs(x, at, mode)
    y = np.full(len(at), -1, np.int64)
    if peaks == "annotated":
        y[:] = ref_y
        return windows, rr, y, at, ref_y, ref_peaks, np.arange(len(at))
    ri, di = match_beats(ref_peaks, at, dl.FS)
    y[di] = ref_y[ri]
    found = np.full(len(ref_y), -1, np.int64)
    found[ri] = di
    return windows, rr, y, at, ref_y, ref_peaks, found


def score(pred, labelled, inp) -> np.ndarray:
    """The confusion of the beats not labelled: 5x5 on annotated peaks, 6x6 (missed, extra) on detected ones."""
    _, _, y, at, ref_y, ref_peaks, found = inp
    keep = np.ones(len(at), bool)
    keep[labelled] = False
    if len(at) == len(ref_y) and (found == np.arange(len(at))).all():
        return np.pad(confusion(y[keep], pred[keep]), (0, 1))
    ref_keep = ~np.isin(found, labelled) | (found < 0)
    # the reference beats not labelled, and the detections not labelled
    ref_idx = np.flatnonzero(ref_keep)
    det_map = np.full(len(at), -1, np.int64)
    det_map[np.flatnonzero(keep)] = np.arange(keep.sum())
    pairs = [(k, det_map[found[r]]) for k, r in enumerate(ref_idx) if found[r] >= 0 and keep[found[r]]]
    ri = np.array([p[0] for p in pairs], np.int64)
    di = np.array([p[1] for p in pairs], np.int64)
    return detection_confusion(ref_y[ref_idx], pred[keep], ri, di)


def summary(cm) -> dict:
    m = metrics(cm)["per_class"]
    return {c: {k: float(m[c][k]) for k in ("se", "ppv", "f1")} for c in NSV}


def static_int8_pred(model, inp, mode: str, tmp: Path) -> np.ndarray:
    """Classes from the adapted model's static int8 export, calibrated on the record's own beats (adapt's way)."""
    from data_loader import Beats
    from export import OnnxModel
    from model import predict_proba
    from quantize import calibration_beats, quantize_static_onnx
    from export import export_onnx

    windows, rr = inp[0], inp[1]
    export_onnx(model, tmp / "f.onnx", rr.shape[1])
    guess = predict_proba(model, windows, rr).argmax(1)
    cx, crr = calibration_beats(Beats(windows, rr, guess, np.zeros(len(rr)), np.zeros(len(rr))))
    quantize_static_onnx(tmp / "f.onnx", tmp / "s.onnx", cx, crr)
    return OnnxModel(tmp / "s.onnx").predict_proba(windows, rr).argmax(1)


def run_record(model, inp, mode: str, seed: int, rec: str, int8: bool, tmp: Path) -> dict:
    """{key: confusion} of one record: 'unadapted5min', 'first5min', 'suggested K', 'random K', and the int8 ones."""
    windows, rr, y, at = inp[:4]
    feats = adapt.head_inputs(model, windows, rr)
    base = adapt.head_logits(model, feats).argmax(1)
    labelled = {"first5min": np.flatnonzero((at < FIRST_SECONDS * dl.FS) & (y >= 0))}
    rng = np.random.default_rng([seed, int(rec)])
    for k in KS:
        if k:
            labelled[f"suggested {k}"] = adapt.suggest(model, windows, rr, k, seed=seed, feats=feats)[0]
            labelled[f"random {k}"] = np.sort(rng.choice(len(at), size=min(k, len(at)), replace=False))
    out = {"unadapted5min": score(base, labelled["first5min"], inp),
           "suggested 0": score(base, [], inp), "random 0": score(base, [], inp)}
    for key, idx in labelled.items():
        idx = idx[y[idx] >= 0]  # a detection that is no beat: the person gives it no class
        m = adapt.adapt_model(model, windows, rr, idx, y[idx], feats=feats)
        pred = adapt.head_logits(m, feats).argmax(1)
        out[key] = score(pred, idx, inp)
        if int8 and key in INT8_KEYS:
            out[f"{key} float32"] = out[key]
            out[f"{key} static-int8"] = score(static_int8_pred(m, inp, mode, tmp), idx, inp)
    return out


def adapt_seconds(run_dir: Path, data_dir, records) -> dict:
    """`main.py adapt` on each record with its first 5 minutes' labels (read, detect, classify, fit; then the
    exports): seconds to the adapted model, and the whole command."""
    import io
    from contextlib import redirect_stdout

    fit, whole = [], []
    for rec in records:
        with tempfile.TemporaryDirectory() as tmp:
            args = adapt.build_parser().parse_args(
                ["--model", str(run_dir), "--record", str(Path(data_dir) / rec), "--labels",
                 str(Path(data_dir) / f"{rec}.atr"), "--until", str(FIRST_SECONDS), "--ignore-unmatched",
                 "--out", f"{tmp}/out"])
            t0 = time.time()
            with redirect_stdout(io.StringIO()):
                got = adapt.run(args)
            whole.append(time.time() - t0)
            fit.append(got["adapt_seconds"])
    return {"mean": float(np.mean(fit)), "max": float(np.max(fit)), "command_mean": float(np.mean(whole)),
            "command_max": float(np.max(whole)), "per_record": dict(zip(records, map(float, fit)))}


def fmt(m: dict) -> str:
    return " | ".join(f"{m[c]['se']:.3f} | {m[c]['ppv']:.3f} | {m[c]['f1']:.3f}" for c in NSV)


def mean_of(dicts: list[dict]) -> dict:
    return {c: {k: float(np.mean([d[c][k] for d in dicts])) for k in ("se", "ppv", "f1")} for c in NSV}


def main(argv=None) -> int:
    from export import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--runs-dir", default="runs/accuracy", help="<mode>-seed<N> runs (bench/accuracy.py)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--modes", nargs="+", default=list(dl.MODES))
    p.add_argument("--peaks", nargs="+", default=["annotated", "detected"])
    p.add_argument("--records", nargs="+", default=list(dl.DS2))
    p.add_argument("--int8-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                   help="seeds whose adapted models are also exported to static int8")
    p.add_argument("--results", default="results")
    p.add_argument("--update-readme", action="store_true", help="rewrite the README's patient-adaptive table")
    a = p.parse_args(argv)
    dl.ensure_records(a.data_dir, a.records, offline=a.offline)
    t_start = time.time()
    figures = {}  # mode -> peaks -> key -> [per-seed pooled summary]
    per_record = {}  # mode -> key -> rec -> [per-seed summary] (annotated)
    for mode in a.modes:
        for peaks in a.peaks:
            inputs = {rec: record_inputs(a.data_dir, rec, mode, peaks) for rec in a.records}
            for seed in a.seeds:
                model, _ = load_model(Path(a.runs_dir) / f"{mode}-seed{seed}" / "model_float32.pt")
                pooled = {}
                t0 = time.time()
                with tempfile.TemporaryDirectory() as tmp:
                    for rec in a.records:
                        got = run_record(model, inputs[rec], mode, seed, rec, peaks == "annotated" and
                                         seed in a.int8_seeds, Path(tmp))
                        for key, cm in got.items():
                            pooled[key] = pooled.get(key, 0) + cm
                            if peaks == "annotated":
                                per_record.setdefault(mode, {}).setdefault(key, {}).setdefault(rec, []).append(
                                    summary(cm))
                for key, cm in pooled.items():
                    figures.setdefault(mode, {}).setdefault(peaks, {}).setdefault(key, []).append(summary(cm))
                s = summary(pooled["first5min"])
                print(f"{mode} {peaks} seed {seed}: first 5 min S {s['S']['se']:.3f}/{s['S']['ppv']:.3f} "
                      f"V {s['V']['se']:.3f}/{s['V']['ppv']:.3f} ({time.time() - t0:.0f} s)", flush=True)
    seconds = adapt_seconds(Path(a.runs_dir) / f"{a.modes[0]}-seed{a.seeds[0]}", a.data_dir, a.records)
    print(f"adapt: {seconds['mean']:.2f} s a record (max {seconds['max']:.2f}); the whole command "
          f"{seconds['command_mean']:.1f} s", flush=True)

    means = {m: {pk: {key: mean_of(v) for key, v in d.items()} for pk, d in byp.items()} for m, byp in figures.items()}
    result = {}
    for mode in a.modes:
        m = means[mode].get("annotated", {})
        result[mode] = {"first5min": m.get("first5min"), "unadapted5min": m.get("unadapted5min"),
                        "suggested": {str(k): m.get(f"suggested {k}") for k in KS},
                        "random": {str(k): m.get(f"random {k}") for k in KS}}
    result["adapt_seconds"] = {"mean": seconds["mean"], "max": seconds["max"]}
    out = Path(a.results)
    write_json(out / "adapt.json", result)
    write_json(out / "adapt_detail.json", {"means": means, "per_record": {
        m: {k: {r: mean_of(v) for r, v in recs.items()} for k, recs in d.items()} for m, d in per_record.items()},
        "adapt_seconds": seconds, "seeds": a.seeds, "int8_seeds": a.int8_seeds, "cpu": cpu(),
        "minutes": (time.time() - t_start) / 60})
    write_text(out / "adapt.md", report(means, per_record, seconds, a, time.time() - t_start))
    if a.update_readme:
        update_readme("adapt", readme_table(means, seconds, a))
    print(f"wrote {out / 'adapt.md'} ({(time.time() - t_start) / 60:.1f} min)")
    return 0


def readme_table(means, seconds, a) -> str:
    """The README's patient-adaptive table, rewritten by this benchmark so that it cannot drift from it."""
    rows = [("none (beats from 300 s)", "unadapted5min"), ("**first 5 minutes**", "first5min"),
            ("20 the tool chose", "suggested 20"), ("20 at random", "random 20")]
    lines = [f"DS2, each record adapted to its own beats' reference labels, annotated R-peaks, mean of "
             f"{len(a.seeds)} seeds (`results/adapt.md`, {describe()}); adapting a record: {seconds['mean']:.1f} s "
             f"(max {seconds['max']:.1f} s):", "",
             "| mode | labels | S Se | S +P | S F1 | V Se | V +P | V F1 |", "|---|---|---|---|---|---|---|---|"]
    for mode in a.modes:
        m = means[mode].get("annotated", {})
        lines += [f"| {mode} | {name} | " + " | ".join(f"{m[key][c][k]:.3f}" for c in "SV" for k in ("se", "ppv", "f1"))
                  + " |" for name, key in rows if key in m]
    return "\n".join(lines)


def report(means, per_record, seconds, a, wall) -> str:
    head = "| | N Se | N +P | N F1 | S Se | S +P | S F1 | V Se | V +P | V F1 |\n|---|" + "---|" * 9
    lines = ["# Patient-adaptive results (a separate protocol: labels of each test record's own beats)", "",
             "Produced by `python bench/adapt.py --data-dir ../shared/data/mitdb --offline` on the runs of "
             "`bench/accuracy.py` (DS1-trained, seeds " + ", ".join(map(str, a.seeds)) + f"); {wall / 60:.0f} min on "
             f"{describe()}. Protocol: `../shared/docs/PROTOCOL.md`, patient-adaptive evaluation: the reference labels "
             "of a record's first 5 minutes, or of K beats the tool chooses (against K at random), adapt the model to "
             "that record alone; labelled beats are never scored. How it adapts was chosen on DS1 (lab/adapt_cv.py). "
             "Figures pooled over the 22 DS2 records, the mean over seeds. Never compare them with the DS1 -> DS2 "
             "table of results/accuracy.md, which uses no label of a test record.", ""]
    for mode in a.modes:
        for peaks in a.peaks:
            m = means[mode].get(peaks)
            if not m:
                continue
            lines += [f"## {mode}, {peaks} R-peaks", "", head,
                      f"| unadapted (beats from 300 s) | {fmt(m['unadapted5min'])} |",
                      f"| **first 5 minutes labelled** | {fmt(m['first5min'])} |"]
            lines += [f"| {k} suggested | {fmt(m[f'suggested {k}'])} |" for k in KS if k]
            lines += [f"| {k} random | {fmt(m[f'random {k}'])} |" for k in KS if k]
            lines += [f"| unadapted (every beat) | {fmt(m['suggested 0'])} |", ""]
            if peaks == "annotated" and any("static-int8" in k for k in m):
                lines += ["Static int8 of the adapted models (seeds " + ", ".join(str(s) for s in a.int8_seeds if s in a.seeds) + "):", "",
                          head] + [f"| {k} | {fmt(m[k])} |" for k in m if k.endswith(("float32", "static-int8"))]
                lines.append("")
    for mode in a.modes:
        recs = per_record.get(mode, {})
        if "first5min" in recs:
            lines += [f"## Per record, {mode}, annotated R-peaks, first 5 minutes (S F1 and V F1: unadapted -> "
                      "adapted; beats from 300 s)", "", "| record | S F1 | V F1 |", "|---|---|---|"]
            for rec in a.records:
                u, f = mean_of(recs["unadapted5min"][rec]), mean_of(recs["first5min"][rec])
                lines.append(f"| {rec} | {u['S']['f1']:.3f} -> {f['S']['f1']:.3f} | "
                             f"{u['V']['f1']:.3f} -> {f['V']['f1']:.3f} |")
            lines.append("")
    lines += [f"Adapting one record (`main.py adapt` with its first 5 minutes' labels, {a.modes[0]} seed {a.seeds[0]}: "
              f"read, detect, classify, fit): mean {seconds['mean']:.2f} s, max {seconds['max']:.2f} s; the whole "
              f"command with its exports and outputs mean {seconds['command_mean']:.1f} s, max "
              f"{seconds['command_max']:.1f} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
