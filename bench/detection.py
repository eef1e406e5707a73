"""R-peak detection benchmark: Se and +P of detect.detect_r_peaks against the reference beats of
all 48 MIT-BIH records (matched within 150 ms), per record and in total, with its time; and on
10-second strips cut at random (seeded) places, as short clinical recordings are cut, where the
detector starts anywhere in a beat.

    python bench/detection.py --data-dir ../shared/data/mitdb --offline

Writes results/detection.md and results/detection.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import wfdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data_loader as dl  # noqa: E402
from detect import MATCH_S, detect_r_peaks, match_beats  # noqa: E402
from outputs import write_json, write_text  # noqa: E402
from recordings import MAINS_BAND_HZ, MAX_MAINS, choose_lead, mains_fraction  # noqa: E402

STRIP = 10 * dl.FS  # samples in a strip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--records", default=",".join(dl.ALL_RECORDS))
    p.add_argument("--strips", type=int, default=10, help="10-second strips per record, cut at seeded random starts")
    p.add_argument("--out", default="results/detection")
    args = p.parse_args(argv)
    records = args.records.split(",")
    try:
        dl.ensure_records(args.data_dir, records, offline=args.offline)
    except dl.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows, offsets, t0 = {}, [], time.time()
    strips = {"strips": 0, "beats": 0, "found": 0, "detected": 0, "true": 0, "first_not_a_beat": 0,
              "early": 0, "early_found": 0}
    rng = np.random.default_rng(0)
    for rec in records:
        path = Path(args.data_dir) / rec
        # MLII, else the first lead, as `predict` chooses (102 and 104 have no MLII)
        lead = choose_lead(wfdb.rdheader(str(path)).sig_name, None, f"record {rec}", "lead", "channel")
        x, fs = dl.read_record(path, lead)
        ref, _ = dl.read_beats(path)
        t = time.time()
        peaks = detect_r_peaks(x, fs)
        seconds = time.time() - t
        # `predict`'s signal quality index: the median correlation of the beats with their templates
        match = {mode: float(np.nanmedian(dl.template_match(dl.with_templates(
            dl.beat_windows(dl.bandpass(x, fs, mode), peaks))))) for mode in dl.MODES}
        mains = mains_fraction(x, fs)  # `predict`'s other warning: a lead that is mostly mains hum
        ri, di = match_beats(ref, peaks, fs)
        offsets.append(peaks[di] - ref[ri])
        tp = len(ri)
        for start in rng.integers(0, len(x) - STRIP, args.strips):
            # Se: beats in the strip but not in its last 0.3 s, whose integrated-signal peak falls
            # after the cut; +P: every detection, as a user sees them
            got = detect_r_peaks(x[start:start + STRIP], fs) + start
            inside = ref[(ref >= start) & (ref < start + STRIP - 0.3 * fs)]
            strips["strips"] += 1
            strips["beats"] += len(inside)
            strips["found"] += len(match_beats(inside, got, fs)[0])  # Se: beats found
            early = ref[(ref >= start) & (ref < start + 0.25 * fs)]  # a beat the cut leaves little of before it
            strips["early"] += len(early)
            strips["early_found"] += len(match_beats(early, got, fs)[0])
            strips["detected"] += len(got)
            strips["true"] += len(match_beats(ref, got, fs)[0])  # +P: detections that are beats
            strips["first_not_a_beat"] += int(len(got) > 0 and np.abs(ref - got[0]).min() > MATCH_S * fs)
        rows[rec] = {"lead": lead, "beats": len(ref), "detected": len(peaks), "tp": tp, "fn": len(ref) - tp,
                     "fp": len(peaks) - tp, "seconds": seconds, "template_match": match, "mains": mains}
        print(f"{rec}: Se {tp / len(ref):.4f}  +P {tp / max(len(peaks), 1):.4f}  ({seconds:.1f} s)", flush=True)
    tot = {k: sum(r[k] for r in rows.values()) for k in ("beats", "detected", "tp", "fn", "fp", "seconds")}
    se, ppv = tot["tp"] / tot["beats"], tot["tp"] / tot["detected"]
    med_offset = float(np.median(np.concatenate(offsets)))
    strip_se, strip_ppv = strips["found"] / max(strips["beats"], 1), strips["true"] / max(strips["detected"], 1)
    hum = max(rows, key=lambda rec: rows[rec]["mains"])
    low = {mode: min(rows, key=lambda rec: rows[rec]["template_match"][mode]) for mode in dl.MODES}
    lines = ["# R-peak detection on MIT-BIH", "", f"Command: `python bench/detection.py {' '.join(sys.argv[1:])}`",
             "", f"Detector: `detect.detect_r_peaks`, the causal streaming `detect.QRSDetector` (Pan-Tompkins: "
             f"5-15 Hz band, derivative, squaring, 150 ms integration, adaptive levels on the RMS slope, "
             f"200 ms refractory, T-wave slope test), each peak placed on the largest deflection of the "
             f"0.5-50 Hz causal band-passed signal in the 250 ms before it. Reference: every beat annotation (AAMI-mapped labels, paced records included). "
             f"Match tolerance {MATCH_S * 1000:.0f} ms. Total detection time {tot['seconds']:.0f} s for "
             f"{len(records)} records ({tot['seconds'] / len(records):.2f} s per 30-minute record). Median offset "
             f"detected - reference peak {1000 * med_offset / dl.FS:.1f} ms.", "",
             f"**Total: Se {100 * se:.2f}%, +P {100 * ppv:.2f}%** ({tot['tp']:,} of {tot['beats']:,} beats found, "
             f"{tot['fp']:,} false detections).", "",
             f"**10-second strips** ({strips['strips']} in all, {args.strips} per record at seeded random starts; Se "
             f"counts every beat but those in the last 0.3 s, +P every detection): **Se {100 * strip_se:.2f}%, +P "
             f"{100 * strip_ppv:.2f}%**; the first detection is no beat in {strips['first_not_a_beat']} strips "
             f"(a cut between a QRS and its T wave shows the T wave first); of the beats in a strip's first 0.25 s, "
             f"{strips['early_found']} of {strips['early']} are found.", "",
             "**Template match** (`predict`'s signal quality index, warned of under 0.5: each record's median "
             "correlation of its beats, at the detected R-peaks, with their templates): lowest "
             + ", ".join(f"{rows[low[m]]['template_match'][m]:.2f} in {m} mode (record {low[m]})" for m in dl.MODES)
             + ".", "",
             f"**Mains hum** (`predict`'s other warning, over {100 * MAX_MAINS:.0f}%: the share of a lead's power above "
             f"0.5 Hz within {MAINS_BAND_HZ:g} Hz of 50 or 60 Hz): highest {100 * rows[hum]['mains']:.2f}% (record {hum}).",
             "",
             "| record | beats | detected | FN | FP | Se (%) | +P (%) | time (s) | template match (diag. / real-time) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {rec} | {r['beats']} | {r['detected']} | {r['fn']} | {r['fp']} | {100 * r['tp'] / r['beats']:.2f} | "
              f"{100 * r['tp'] / max(r['detected'], 1):.2f} | {r['seconds']:.2f} | "
              f"{r['template_match']['diagnostic']:.2f} / {r['template_match']['realtime']:.2f} |" for rec, r in rows.items()]
    write_json(Path(args.out).with_suffix(".json"), {"total": {**tot, "se": se, "ppv": ppv, "median_offset_samples": med_offset},
                                                      "strips": {**strips, "se": strip_se, "ppv": strip_ppv}, "records": rows,
                                                      "wall_seconds": time.time() - t0,
                                                      "command": "python bench/detection.py " + " ".join(sys.argv[1:])})
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"total: Se {100 * se:.2f}%  +P {100 * ppv:.2f}%; 10-second strips: Se {100 * strip_se:.2f}%  "
          f"+P {100 * strip_ppv:.2f}%, first detection no beat in {strips['first_not_a_beat']} of {strips['strips']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
