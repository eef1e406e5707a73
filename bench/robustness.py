"""Recordings as they come: DS2 through `predict` inverted, with a gap, and with noise made here.

    python bench/robustness.py --data-dir ../shared/data/mitdb --offline --model runs/accuracy/diagnostic-seed0

Each DS2 record (lead MLII) is classified as `main.py predict` does (predict.analyse: prepare, polarity check,
detect, classify, readability), clean and changed:
- inverted: the sign flipped (electrodes swapped), --polarity auto; inverted_keep: the same, --polarity keep;
- flat10s, nan5s: 10 s held at one value (lead off) or 5 s of NaN from the record's middle;
- <noise>_<snr>db: baseline wander (bw), muscle-like broadband noise (ma) or electrode motion (em) at 24, 12, 6 and
  0 dB, added as the MIT-BIH Noise Stress Test adds it: in 2-minute stretches from minute 5, every other 2 minutes.
  SNR: the power of the 0.5-50 Hz band-passed ECG over the power of the noise where it is added.
Detections are matched to the reference beats within 150 ms (EC57). Per condition, pooled over the records: per-class
F1 and its change from clean; for noise, also over the readable beats only (beats in stretches flagged unreadable,
and the reference beats there, left out) beside clean scored on the same reference beats; for gaps, the beats whose
class changed more than 30 s from the gap. The polarity check is also run on every MIT-BIH record with MLII, upright
and inverted. Writes results/robustness.md and .json (--records ds1: the DS1 records, to choose thresholds on).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data_loader as dl  # noqa: E402
import quality  # noqa: E402
from detect import detect_r_peaks, match_beats  # noqa: E402
from evaluate import NSV, detection_confusion, metrics  # noqa: E402
from outputs import write_json, write_text  # noqa: E402

NOISES = {"bw": "baseline wander", "ma": "muscle-like broadband", "em": "electrode motion"}
SNRS = (24, 12, 6, 0)
GAP_AT = 0.5  # the gap starts at this fraction of the record
FAR_S = 30.0  # a beat this far from the gap (s) should not change class
NOISE_START_S, NOISE_ON_S = 300.0, 120.0  # Noise Stress Test: from minute 5, 2 minutes on, 2 off


def make_noise(kind: str, n: int, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise of n samples at fs Hz: bw (a few sinusoids of 0.05-0.5 Hz), ma (white, band-passed
    5-100 Hz, as muscle), em (0.5-10 Hz noise in bursts and steps, as electrode motion)."""
    t = np.arange(n) / fs
    if kind == "bw":
        f, ph, a = rng.uniform(0.05, 0.5, 5), rng.uniform(0, 2 * np.pi, 5), rng.uniform(0.5, 1, 5)
        v = (a[:, None] * np.sin(2 * np.pi * f[:, None] * t + ph[:, None])).sum(0)
    elif kind == "ma":
        v = signal.sosfilt(signal.butter(2, (5, min(100, 0.45 * fs)), "bandpass", fs=fs, output="sos"),
                           rng.standard_normal(n))
    elif kind == "em":
        motion = signal.sosfilt(signal.butter(2, (0.5, 10), "bandpass", fs=fs, output="sos"), rng.standard_normal(n))
        bursts = np.abs(signal.sosfilt(signal.butter(2, 0.2, fs=fs, output="sos"), rng.standard_normal(n)))
        steps = np.cumsum(rng.standard_normal(n) * (rng.random(n) < 0.5 / fs))  # a jump every 2 s on average
        v = motion * bursts / bursts.std() + 0.3 * (steps - signal.sosfilt(
            signal.butter(1, 0.3, fs=fs, output="sos"), steps))  # steps that settle back, as a moved electrode's
    else:
        raise ValueError(kind)
    return (v - v.mean()) / v.std()


def noise_mask(n: int, fs: float) -> np.ndarray:
    t = np.arange(n) / fs
    return (t >= NOISE_START_S) & (((t - NOISE_START_S) // NOISE_ON_S) % 2 == 0)


def changed(x: np.ndarray, condition: str, fs: float, seed: int) -> tuple[np.ndarray, tuple | None]:
    """(x under the condition, the gap's (start, end) samples or None)."""
    if condition in ("clean", "inverted", "inverted_keep"):
        return (-x if condition.startswith("inverted") else x), None
    if condition in ("flat10s", "nan5s"):
        g0 = int(GAP_AT * len(x))
        g1 = g0 + int((10 if condition == "flat10s" else 5) * fs)
        y = x.copy()
        y[g0:g1] = x[g0] if condition == "flat10s" else np.nan
        return y, (g0, g1)
    kind, snr = condition.split("_")
    rng = np.random.default_rng([seed, list(NOISES).index(kind), int(snr.removesuffix("db"))])
    on = noise_mask(len(x), fs)
    power = np.var(dl.bandpass(x, fs)[on])
    return x + on * make_noise(kind, len(x), fs, rng) * np.sqrt(power / 10 ** (int(snr[:-2]) / 10)), None


def run_record(rec, clf, condition: str, seed: int) -> dict:
    import predict

    x, gap = changed(rec.x, condition, rec.fs, seed)
    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        _, beats = predict.analyse(type(rec)(x, rec.fs, rec.name, rec.lead, rec.source), clf,
                                   "keep" if condition == "inverted_keep" else "auto")
    text = said.getvalue()
    return {"beats": beats, "gap": gap, "warned_polarity": "point the other way" in text,
            "warned_noise": "too noisy to read" in text, "flipped": beats["polarity"] == "inverted"}


def score(runs: dict, refs: dict, flagged: dict | None = None) -> dict:
    """Pooled metrics of {record: run} against {record: (samples, classes)}; flagged {record: segment qualities}:
    the reference beats and detections in that record's unreadable segments are left out."""
    cm = np.zeros((6, 6), np.int64)
    for r, run in runs.items():
        ref, ref_y = refs[r]
        b = run["beats"]
        ref_ok, det_ok = np.ones(len(ref), bool), np.ones(len(b["sample"]), bool)
        if flagged is not None:
            ref_ok, det_ok = ~unreadable_at(ref, flagged[r]), ~unreadable_at(b["sample"], flagged[r])
        ri, di = match_beats(ref[ref_ok], b["sample"][det_ok], dl.FS)
        cm += detection_confusion(ref_y[ref_ok], b["class"][det_ok], ri, di)
    m = metrics(cm)
    detected, missed, extra = cm[:5, :5].sum(), cm[:5, 5].sum(), cm[5, :5].sum()
    return {**{c: {"f1": round(m["per_class"][c]["f1"], 4), "se": round(m["per_class"][c]["se"], 4),
                   "ppv": round(m["per_class"][c]["ppv"], 4)} for c in NSV},
            "detection_se": round(float(detected / (detected + missed)), 5),
            "detection_ppv": round(float(detected / (detected + extra)), 5), "beats": int(cm[:5].sum())}


def unreadable_at(samples: np.ndarray, segment_noise: np.ndarray) -> np.ndarray:
    i = np.clip(samples // int(quality.QUALITY_SEGMENT_S * dl.FS), 0, len(segment_noise) - 1)
    return segment_noise[i] > quality.MAX_NOISE


def far_changed(clean: dict, gapped: dict) -> dict:
    """Beats of each record whose class changed more than FAR_S from the gap (clean vs gapped detections)."""
    out = {}
    for r, run in gapped.items():
        g0, g1 = run["gap"]
        a, b = clean[r]["beats"], run["beats"]
        ia, ib = match_beats(a["sample"], b["sample"], dl.FS)
        s = a["sample"][ia]
        far = (s < g0 - FAR_S * dl.FS) | (s >= g1 + FAR_S * dl.FS)
        out[r] = int((a["class"][ia] != b["class"][ib])[far].sum())
    return out


def polarity_all(data_dir: Path) -> dict:
    """quality.polarity_score of every MIT-BIH record with MLII, upright and inverted (peaks found once)."""
    out = {}
    for r in dl.ALL_RECORDS:
        try:
            x, fs = dl.read_record(data_dir / r)
        except dl.DataError:  # 102, 104: no MLII
            continue
        p = detect_r_peaks(x, fs)
        out[r] = (round(quality.polarity_score(x, p), 3), round(quality.polarity_score(-x, p), 3))
    return out


def table(rows: dict, clean: dict) -> str:
    lines = ["| condition | N F1 | S F1 | V F1 | S F1 change | V F1 change | det. Se | det. +P | warned (noise / polarity) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['N']['f1']:.4f} | {row['S']['f1']:.4f} | {row['V']['f1']:.4f} | "
                     f"{row['S']['f1'] - clean['S']['f1']:+.4f} | {row['V']['f1'] - clean['V']['f1']:+.4f} | "
                     f"{100 * row['detection_se']:.2f}% | {100 * row['detection_ppv']:.2f}% | "
                     f"{row.get('warned_noise', '-')} / {row.get('warned_polarity', '-')} |")
    return "\n".join(lines)


def readable_table(rows: dict) -> str:
    lines = ["| condition | beats left | S F1 | V F1 | clean, same beats: S F1 | V F1 | S F1 change | V F1 change | "
             "det. Se | det. +P |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        r, c = row["readable"], row["readable"]["clean_same_beats"]
        lines.append(f"| {name} | {r['beats']} | {r['S']['f1']:.4f} | {r['V']['f1']:.4f} | {c['S']['f1']:.4f} | "
                     f"{c['V']['f1']:.4f} | {r['S']['f1_change']:+.4f} | {r['V']['f1_change']:+.4f} | "
                     f"{100 * r['detection_se']:.2f}% | {100 * r['detection_ppv']:.2f}% |")
    return "\n".join(lines)


def bars(rows: dict, n: int) -> str:
    """The issue's bars, each with the figure reached (where its conditions were run)."""
    out = []
    if "inverted" in rows:
        worst = max(abs(rows["inverted"][k]["f1_change"]) for k in NSV)
        out.append(f"- inverted: N, S, V F1 within {worst:.4f} of upright (bar 0.01); {rows['inverted']['warned_polarity']} "
                   f"of {n} records warned and flipped back; no upright record warned: "
                   f"{rows['clean']['warned_polarity'] == 0}")
    for c in ("flat10s", "nan5s"):
        if c in rows:
            out.append(f"- {c}: at most {rows[c]['far_changed_max']} beats of one record changed class more than "
                       f"{FAR_S:g} s from the gap (bar 10)")
    for c, bar in (("ma_0db", 0.02), ("ma_6db", 0.01)):
        if c in rows:
            r = rows[c]["readable"]
            out.append(f"- {c}: noise warning on {rows[c]['warned_noise']} of {n} records; readable beats' F1 change from "
                       f"clean on the same beats S {r['S']['f1_change']:+.4f}, V {r['V']['f1_change']:+.4f} (bar {bar}); "
                       f"from clean's figures over all beats S {r['S']['f1'] - rows['clean']['S']['f1']:+.4f}, "
                       f"V {r['V']['f1'] - rows['clean']['V']['f1']:+.4f}")
    out.append(f"- clean: {rows['clean']['warned_noise']} noise and {rows['clean']['warned_polarity']} polarity warnings; "
               f"{sum(v > 0 for v in rows['clean']['unreadable_s'].values())} records with a stretch flagged unreadable")
    return "\n".join(out)


def main(argv=None) -> int:
    from tqdm import tqdm

    import predict
    import recordings
    from bench.machine import cpu

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--model", default="runs/accuracy/diagnostic-seed0")
    p.add_argument("--kind", default="static-int8")
    p.add_argument("--records", default="ds2", help="ds2, ds1, or a comma-separated list")
    p.add_argument("--conditions", default=None, help="comma-separated (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="default results/robustness (ds1: results/robustness_ds1)")
    args = p.parse_args(argv)
    records = {"ds2": list(dl.DS2), "ds1": list(dl.DS1)}.get(args.records) or args.records.split(",")
    conditions = (args.conditions.split(",") if args.conditions else
                  ["clean", "inverted", "inverted_keep", "flat10s", "nan5s"]
                  + [f"{k}_{s}db" for k in NOISES for s in SNRS])
    if "clean" not in conditions:
        conditions.insert(0, "clean")
    out = Path(args.out or ("results/robustness" if args.records == "ds2" else f"results/robustness_{args.records}"))
    data = Path(args.data_dir)
    dl.ensure_records(data, records, offline=args.offline)
    clf = predict.load_classifier(args.model, args.kind, threads=1)
    refs = {r: dl.read_beats(data / r) for r in records}
    recs = {r: recordings.read_wfdb(data / r) for r in records}
    runs = {c: {} for c in conditions}
    for c in tqdm(conditions, desc="conditions"):
        for r in records:
            runs[c][r] = run_record(recs[r], clf, c, args.seed)
    clean = score(runs["clean"], refs)
    result = {"model": str(args.model), "kind": args.kind, "records": records, "cpu": cpu(), "conditions": {},
              "thresholds": {"flat_s": quality.FLAT_S, "max_noise": quality.MAX_NOISE,
                             "quality_segment_s": quality.QUALITY_SEGMENT_S, "warn_unreadable": quality.WARN_UNREADABLE,
                             "warn_stretch_s": quality.WARN_STRETCH_S}}
    rows, readable_rows = {}, {}
    for c in conditions:
        row = score(runs[c], refs)
        for k in NSV:
            row[k]["f1_change"] = round(row[k]["f1"] - clean[k]["f1"], 4)
        row["warned_noise"] = sum(v["warned_noise"] for v in runs[c].values())
        row["warned_polarity"] = sum(v["warned_polarity"] for v in runs[c].values())
        row["flipped"] = sum(v["flipped"] for v in runs[c].values())
        row["unreadable_s"] = {r: v["beats"]["unreadable_s"] for r, v in runs[c].items()}
        if c in ("flat10s", "nan5s"):
            far = far_changed(runs["clean"], runs[c])
            row["far_changed"], row["far_changed_max"] = far, max(far.values())
        if c != "clean" and c[:2] in NOISES:
            flagged = {r: v["beats"]["segment_noise"] for r, v in runs[c].items()}
            noisy, same = score(runs[c], refs, flagged), score(runs["clean"], refs, flagged)
            row["readable"] = {**noisy, "clean_same_beats": same}
            for k in NSV:
                row["readable"][k]["f1_change"] = round(noisy[k]["f1"] - same[k]["f1"], 4)
            readable_rows[c] = row
        rows[c] = row
        result["conditions"][c] = row
    result["polarity_all_records"] = polarity_all(data)
    write_json(out.with_suffix(".json"), result)
    pol = result["polarity_all_records"]
    wrong = [r for r, (up, down) in pol.items() if up > 0 or down <= 0]
    gaps = "\n".join(f"- {c}: beats changed > {FAR_S:g} s from the gap, most in one record "
                     f"{rows[c]['far_changed_max']} ({', '.join(f'{r} {n}' for r, n in rows[c]['far_changed'].items() if n)})"
                     for c in ("flat10s", "nan5s") if c in rows)
    md = f"""# Robustness: recordings as they come

`python bench/robustness.py --data-dir DIR --offline --model {args.model} --kind {args.kind}
--records {args.records}` on {cpu()['model']} ({len(records)} records; noise seed {args.seed}). How each condition
is made: the docstring of `bench/robustness.py`. Thresholds (chosen on DS1 records only): flat line {quality.FLAT_S:g} s,
unreadable when the median noise (quality.beat_noise) of a {quality.QUALITY_SEGMENT_S:g} s segment is over
{quality.MAX_NOISE:g}, a warning when more than {100 * quality.WARN_UNREADABLE:g}% is unreadable or a stretch of
{quality.WARN_STRETCH_S:g} s or more; polarity:
`lab/polarity.py` (logistic regression on DS1 median beats, leave-one-record-out on DS1).

## Against the issue's bars

{bars(rows, len(records))}

## All beats

{table(rows, clean)}

"warned": records with the noise warning / the polarity warning, of {len(records)}. inverted: --polarity auto
(flipped back in {rows.get('inverted', {}).get('flipped', '-')} records); inverted_keep: --polarity keep.

## Gaps

{gaps}

## Noise: readable beats only

Beats in the stretches flagged unreadable and the reference beats there left out; beside each, the clean
recording scored on the same reference beats, and the change from it.

{readable_table(readable_rows)}

## Polarity check on every MIT-BIH record with MLII

{len(pol)} records: {len(wrong)} wrong ({', '.join(wrong) or 'none'}): no upright record flagged, every inverted copy
found. Smallest margin upright {min(-u for u, _ in pol.values()):.2f}, inverted {min(d for _, d in pol.values()):.2f}
(score > 0: inverted). The check was fitted on DS1 only; of the DS1 records each was right when held out of the fit
(`lab/polarity.py`).

The same conditions on DS1, where the thresholds were chosen: `--records ds1` (results/robustness_ds1.md).
"""
    write_text(out.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
