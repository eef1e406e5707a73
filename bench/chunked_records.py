"""Chunked prediction against whole-recording prediction on each of the 48 MIT-BIH records, both modes.

    python bench/chunked_records.py --data-dir ../shared/data/mitdb --offline --runs runs/accuracy

Each record's first lead (MLII where it has one) is classified whole (predict.analyse, as recorded: its noise judged,
the readable beats classified again without the intervals from and to unreadable ones) and in pieces
(chunked.classify_lead) of --piece samples with batches of --batch beats, by each run's static int8 model: R-peaks,
classes, top probabilities and readability compared beat by beat. Writes results/chunked_records.md and .json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import chunked  # noqa: E402
import data_loader as dl  # noqa: E402
import predict  # noqa: E402
import recordings  # noqa: E402
from outputs import write_json, write_text  # noqa: E402


def compare(run: Path, data_dir: Path, piece: int) -> dict:
    clf = predict.load_classifier(run, "static-int8")
    rows = {"beats": 0, "same_samples": True, "classes_differ": 0, "max_confidence_difference": 0.0,
            "unreadable": 0, "readable_differ": 0}
    for r in dl.ALL_RECORDS:
        rec = recordings.read_wfdb(data_dir / r, dl.LEAD if dl.LEAD in recordings.open_wfdb(data_dir / r)[2].sig_name
                                   else None)
        x, gaps = recordings.prepare(rec)
        whole = predict.analyse(rec, clf, "keep")[1]
        res, _, _ = chunked.classify_lead(chunked.ArrayLead(x, gaps), clf, piece=piece)
        same = np.array_equal(res["sample"], whole["sample"])
        rows["same_samples"] &= bool(same)
        rows["beats"] += len(whole["sample"])
        if same:
            rows["classes_differ"] += int((res["class"] != whole["class"]).sum())
            rows["unreadable"] += int((~whole["readable"]).sum())
            rows["readable_differ"] += int((res["readable"] != whole["readable"]).sum())
            rows["max_confidence_difference"] = max(rows["max_confidence_difference"], float(
                np.nanmax(np.abs(res["confidence"] - whole["proba"].max(1)), initial=0.0)))
    return {"mode": clf.mode, **rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--runs", default="runs/accuracy", help="a folder holding diagnostic-seed0 and realtime-seed0")
    p.add_argument("--piece", type=int, default=100_003, help="samples per piece (a record holds 650,000)")
    p.add_argument("--batch", type=int, default=512, help="beats per batch")
    p.add_argument("--out", default="results/chunked_records")
    args = p.parse_args(argv)
    dl.ensure_records(args.data_dir, dl.ALL_RECORDS, offline=args.offline)
    chunked.BATCH = args.batch
    result = {"command": "python bench/chunked_records.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "piece": args.piece, "batch": args.batch, "records": len(dl.ALL_RECORDS),
              "runs": {name: compare(Path(args.runs) / name, Path(args.data_dir), args.piece)
                       for name in ("diagnostic-seed0", "realtime-seed0")}}
    lines = ["# Chunked prediction against whole-recording prediction, 48 MIT-BIH records", "",
             f"Command: `{result['command']}`. Pieces of {args.piece:,} samples, batches of {args.batch} beats, "
             f"each run's static int8 model.", "",
             "| run | mode | beats | same R-peaks | classes that differ | largest top-probability difference | "
             "unreadable beats (whole) | readability that differs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in result["runs"].items():
        lines.append(f"| {name} | {r['mode']} | {r['beats']:,} | {'yes' if r['same_samples'] else 'no'} | "
                     f"{r['classes_differ']} | {r['max_confidence_difference']:.1e} | {r['unreadable']} | "
                     f"{r['readable_differ']} |")
    write_json(Path(args.out).with_suffix(".json"), result)
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
