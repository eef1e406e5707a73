"""Accuracy benchmark: the full protocol (train on all of DS1 as main.py does, test once on DS2)
for several seeds in both modes, float32 and int8, beside the published inter-patient results.

    python bench/accuracy.py --data-dir ../shared/data/mitdb --offline      # 5 seeds x 2 modes

Writes results/accuracy.md and results/accuracy.json; each run's own directory stays under
--runs-dir (config, models, metrics, report, predictions).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data_loader as dl  # noqa: E402
import export  # noqa: E402
import main as pipeline  # noqa: E402
from evaluate import f1_score as f1  # noqa: E402
from model import designs  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py, however this is imported
from machine import cpu, describe, update_readme  # noqa: E402
from outputs import write_json, write_text  # noqa: E402

# Published DS1 -> DS2 results (the evaluation protocol's table): S Se, S +P, V Se, V +P in %, or F1
# where only F1 is given.
PUBLISHED = [
    ("de Chazal 2004, linear discriminants", 76, 38, 77, 82),
    ("Llamedo & Martinez 2011", 77, 39, 81, 87),
    ("Mar et al. 2011", 83.2, 33.5, 86.8, 75.9),
    ("Zhang et al. 2014, SVM", 79.1, 36.0, 85.5, 92.7),
    ("Lin & Yang 2014", 81, 31, 86, 73),
    ("Garcia et al. 2017", 62.0, 53.0, 87.3, 59.4),
]
PUBLISHED_F1 = [("Guo et al. 2019, DenseNet + GRU", 61.3, 89.8),
                ("Niu et al. 2020, multi-perspective CNN", 76.6, 89.7)]
MODELS = ("float32", "dynamic-int8", "static-int8")


def aggregate(runs: list[dict]) -> dict:
    """Mean and std over seeds of every per-class figure, for each model."""
    out = {}
    for model in MODELS:
        ms = [r[model] for r in runs]
        per = {c: {k: {"mean": float(np.mean([m["per_class"][c][k] for m in ms])),
                       "std": float(np.std([m["per_class"][c][k] for m in ms]))}
                   for k in ("se", "ppv", "f1", "fpr")} for c in dl.CLASSES}
        out[model] = {"per_class": per, **{k: {"mean": float(np.mean([m[k] for m in ms])),
                                               "std": float(np.std([m[k] for m in ms]))}
                                           for k in ("accuracy", "macro_f1_nsv", "macro_f1_all")},
                      "size_bytes": ms[0]["size_bytes"]}
    return out


def per_record_errors(run_dirs: list[Path]) -> dict:
    """Mean over seeds of each DS2 record's S and V misses (FN) and false alarms (FP), float32 model."""
    import pandas as pd

    tables = []
    for d in run_dirs:
        p = pd.read_csv(d / "predictions.csv", dtype={"record": str})
        rows = {}
        for rec, g in p.groupby("record"):
            row = {}
            for c in ("S", "V"):
                ref, pred = g["reference"] == c, g["pred_float32"] == c
                row[f"{c} beats"] = int(ref.sum())
                row[f"{c} missed"] = int((ref & ~pred).sum())
                row[f"{c} false"] = int((~ref & pred).sum())
            rows[rec] = row
        tables.append(pd.DataFrame(rows).T)
    mean = sum(tables) / len(tables)
    return {rec: {k: float(v) for k, v in row.items()} for rec, row in mean.iterrows()}


def pm(d, scale=1.0, digits=3):
    return f"{d['mean'] * scale:.{digits}f} ± {d['std'] * scale:.{digits}f}"


def networks(k: int) -> str:
    return f", {k} networks each" if k > 1 else ""


def report(summary: dict, errors: dict, args, wall: float, runs: int, train_wall: float, reused: int,
           split: dict, ensemble: dict) -> str:
    """results/accuracy.md; split is a run's config.json (its train and validation records), ensemble
    the networks per model by mode."""
    lines = ["# Accuracy on DS2 (inter-patient: trained on DS1, tested on DS2, de Chazal et al. 2004; "
             "AAMI EC57 classes)", "",
             f"Command: `python bench/accuracy.py {' '.join(sys.argv[1:])}`", "",
             f"CPU: {describe()}. The int8 figures were computed on it; the int8 files give the same integers on "
             "x86-64 with AVX2 only and on ARM64 (7-bit weights, no int16 pair saturation: `tests/test_export.py`, "
             "`results/int8_cpus.md`).", "",
             f"Mean ± std over {args.seeds} seeds. "
             + (f"Trained on {len(split['train_records'])} DS1 records, checkpoint chosen on held-out DS1 "
                f"patients {' '.join(split['validation_records'])}" if split["validation_records"] else
                f"Trained on {len(split['train_records'])} DS1 records, keeping the last averaged weights "
                "(no checkpoint choice)")
             + "; DS2 read once, after training. "
             f"Every design choice was made by DS1 cross-validation (lab/README.md). "
             f"The {runs} training runs took {train_wall / 60:.1f} min in all (each run's own wall time, "
             f"summed); this command took {wall / 60:.1f} min"
             + (f", reusing {reused} finished runs (--resume)" if reused else "") + ".", ""]
    for mode, s in summary.items():
        lines += [f"## {mode} mode", ""]
        if ensemble[mode] > 1:
            lines += [f"Each seed's model is an ensemble of {ensemble[mode]} networks (`--ensemble {ensemble[mode]}`: "
                      f"seed s trains seeds {ensemble[mode]}s to {ensemble[mode]}s+{ensemble[mode] - 1}, their "
                      "logits averaged); int8 quantizes the whole ensemble.", ""]
        lines += ["| model | N Se | N +P | N F1 | S Se | S +P | S F1 | V Se | V +P | V F1 | F F1 | "
                  "macro-F1 (N,S,V) | accuracy | size (bytes) |", "|---" * 14 + "|"]
        for model in MODELS:
            m, p = s[model], s[model]["per_class"]
            lines.append(f"| {model} | " + " | ".join(pm(p[c][k]) for c in "NSV" for k in ("se", "ppv", "f1"))
                         + f" | {pm(p['F']['f1'])} | {pm(m['macro_f1_nsv'])} | {pm(m['accuracy'], digits=4)}"
                         f" | {m['size_bytes']:,} |")
        lines.append("")
        for model in MODELS[1:]:
            d = s[model]["macro_f1_nsv"]["mean"] - s["float32"]["macro_f1_nsv"]["mean"]
            lines.append(f"{model} - float32 macro-F1 (N,S,V): {d:+.4f}  ")
        lines.append("")
    lines += ["## Published DS1 -> DS2 results beside this one (%)", "",
              "| method | S Se | S +P | S F1 | V Se | V +P | V F1 |", "|---|---|---|---|---|---|---|"]
    for name, sse, sp, vse, vp in PUBLISHED:
        lines.append(f"| {name} | {sse} | {sp} | {100 * f1(sse / 100, sp / 100):.1f} | {vse} | {vp} | "
                     f"{100 * f1(vse / 100, vp / 100):.1f} |")
    for name, sf1, vf1 in PUBLISHED_F1:
        lines.append(f"| {name} | | | {sf1} | | | {vf1} |")
    for mode, s in summary.items():
        p = s["float32"]["per_class"]
        lines.append(f"| **Deep-ECG, {mode}** (mean of {args.seeds} seeds{networks(ensemble[mode])}) | "
                     + " | ".join(f"{100 * p[c][k]['mean']:.1f}" for c in "SV" for k in ("se", "ppv", "f1"))
                     + " |")
    lines += ["", "## Where the model fails: DS2 errors per record (diagnostic mode, float32, mean over seeds)",
              "", "| record | S beats | S missed | S false alarms | V beats | V missed | V false alarms |",
              "|---|---|---|---|---|---|---|"]
    for rec, e in sorted(errors.items()):
        lines.append(f"| {rec} | {e['S beats']:.0f} | {e['S missed']:.1f} | {e['S false']:.1f} | "
                     f"{e['V beats']:.0f} | {e['V missed']:.1f} | {e['V false']:.1f} |")
    return "\n".join(lines) + "\n"


def readme_table(summary: dict, args, ensemble: dict) -> str:
    """The README's results table, rewritten by this benchmark so that it cannot drift from it."""
    nets = "; ".join(f"{m}: {k} networks per model" for m, k in ensemble.items() if k > 1)
    lines = [f"DS2, mean ± std over {args.seeds} seeds (float32; int8 beside{'; ' + nets if nets else ''}), "
             f"from `results/accuracy.md`, computed on {describe()}; the int8 files give the same integers on every "
             "CPU (x86-64 with AVX2 only or with AVX-512/VNNI, ARM64: `results/int8_cpus.md`):", "",
             "| mode | model | S Se | S +P | S F1 | V Se | V +P | V F1 | N F1 | macro-F1 (N,S,V) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, s in summary.items():
        for model in MODELS:
            p = s[model]["per_class"]
            lines.append(f"| {mode} | {model} | " + " | ".join(pm(p[c][k]) for c in "SV" for k in ("se", "ppv", "f1"))
                         + f" | {pm(p['N']['f1'])} | {pm(s[model]['macro_f1_nsv'])} |")
    return "\n".join(lines)


# main.py options that change where a run reads, writes or computes, or what it prints; not its result.
PLACES = {"data_dir", "cache_dir", "out", "overwrite", "quiet", "offline", "device"}


def finished_alike(out: Path, argv: list[str]) -> bool:
    """Whether out holds a finished run (metrics.json) of the main.py options argv, as main.py would
    run them today: every option its config.json recorded equal to today's (one it did not record,
    from an older version, is not compared) and every model input (data_loader.model_inputs) equal,
    recorded or as older versions computed it. --resume reuses only such runs, so a changed default
    (e.g. config.GAMMA), input (the template) or network (model.design) trains again instead of reporting the old
    model."""
    if not (out / "metrics.json").exists() or not (out / "config.json").exists():
        return False
    args = pipeline.build_parser().parse_args([*argv, "--overwrite"])  # out holds a run: that is the point
    pipeline.check_args(args)
    saved = json.loads((out / "config.json").read_text())
    try:
        export.check_model_inputs(out, args.mode, saved)  # the rule predict.py loads models by
    except export.StaleModelError:
        return False
    recorded = saved.get("model")  # the networks: once one design for every member; not recorded: unknown
    if isinstance(recorded, dict):
        recorded = [recorded] * args.ensemble
    if recorded != designs(args.mode, args.ensemble):
        return False
    now = {k: v for k, v in vars(args).items() if k not in PLACES}
    return all(json.loads(json.dumps(v)) == saved[k] for k, v in now.items() if k in saved)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--modes", default="diagnostic,realtime")
    p.add_argument("--runs-dir", default="runs/accuracy")
    p.add_argument("--out", default="results/accuracy", help="writes OUT.md and OUT.json")
    p.add_argument("--resume", action="store_true",
                   help="reuse runs that already finished in --runs-dir with the options this command gives")
    p.add_argument("--update-readme", action="store_true", help="rewrite the README's results table")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: options passed on to main.py")
    args = p.parse_args(argv)
    extra = [a for a in args.extra if a != "--"]
    modes = args.modes.split(",")
    t0 = time.time()
    summary, runs_by_mode, run_seconds, reused, configs = {}, {}, [], 0, {}
    for mode in modes:
        runs, dirs = [], []
        for seed in range(args.seeds):
            out = Path(args.runs_dir) / f"{mode}-seed{seed}"
            run_argv = ["--mode", mode, "--seed", str(seed), "--data-dir", args.data_dir, "--cache-dir", args.cache_dir,
                        "--out", str(out), "--overwrite", "--quiet", *(["--offline"] if args.offline else []), *extra]
            if args.resume and finished_alike(out, run_argv):
                reused += 1
            else:
                t = time.time()
                code = pipeline.main(run_argv)
                if code:
                    return code
                print(f"{mode} seed {seed}: {time.time() - t:.0f} s", flush=True)
            runs.append(json.loads((out / "metrics.json").read_text()))
            run_seconds.append(runs[-1]["total_seconds"])
            dirs.append(out)
        summary[mode] = aggregate(runs)
        runs_by_mode[mode] = dirs
        configs[mode] = json.loads((dirs[0] / "config.json").read_text())
    ensemble = {mode: config.get("ensemble", 1) for mode, config in configs.items()}
    errors = per_record_errors(runs_by_mode.get("diagnostic", next(iter(runs_by_mode.values()))))
    wall = time.time() - t0
    write_json(Path(args.out).with_suffix(".json"), {
        "summary": summary, "per_record_errors": errors, "seeds": args.seeds, "wall_seconds": wall, "cpu": cpu(),
        "run_seconds": run_seconds, "reused_runs": reused, "ensemble": ensemble,
        "command": "python bench/accuracy.py " + " ".join(sys.argv[1:]),
        "runs": {m: [str(d) for d in ds] for m, ds in runs_by_mode.items()}})
    split = next(iter(configs.values()))
    text = report(summary, errors, args, wall, len(run_seconds), sum(run_seconds), reused, split, ensemble)
    write_text(Path(args.out).with_suffix(".md"), text)
    if args.update_readme:
        update_readme("accuracy", readme_table(summary, args, ensemble))
    print(text)
    print(f"wall time {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
