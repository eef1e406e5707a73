"""Int8 on other CPUs: a run's int8 models on DS2 beats, here and under an emulated x86-64 CPU with AVX2 only.

    python bench/int8_cpus.py runs/<diagnostic run> runs/<realtime run> --data-dir DIR --offline

Each run's static and dynamic int8 ONNX files classify a seeded sample of DS2 beats (every S, V and F beat of
the sample's records kept: the classes int8 can get wrong) natively, then under `qemu-x86_64 -cpu Haswell`
(Debian's qemu-user: an x86-64 CPU with AVX2 and FMA, no AVX-512, no VNNI), and the logits are compared. For
contrast, the same float32 model quantized with 8-bit weights, as earlier versions did, is run both ways too.
Writes results/int8_cpus.md and results/int8_cpus.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import data_loader as dl  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py, however this is imported
from machine import describe  # noqa: E402
from outputs import write_json, write_text  # noqa: E402

EMULATED = ["qemu-x86_64", "-cpu", "Haswell"]


def sample(test, beats: int, seed: int = 0) -> np.ndarray:
    """Indices of `beats` DS2 beats: every non-N beat up to half of them, the rest N, drawn with a seed."""
    rng = np.random.default_rng(seed)
    other = rng.permutation(np.flatnonzero(test.y != dl.CLASS_INDEX["N"]))[:beats // 2]
    normal = rng.permutation(np.flatnonzero(test.y == dl.CLASS_INDEX["N"]))[:beats - len(other)]
    return np.sort(np.concatenate([other, normal]))


def logits(files: list[str], inputs: str, out: str) -> None:
    """Worker: each file's logits on the inputs (.npz with x, rr), saved to out (.npz, by position)."""
    from export import OnnxModel

    z = np.load(inputs)
    np.savez(out, *[OnnxModel(f, threads=1).logits(z["x"], z["rr"]) for f in files])


def eight_bit(float_onnx: Path, path: Path, train) -> None:
    """The float32 model quantized as earlier versions did: static int8 with 8-bit weights."""
    from quantize import calibration_beats, quantize_static_onnx

    quantize_static_onnx(float_onnx, path, *calibration_beats(train), reduce_range=False)


def run_both(files: list[Path], x, rr, tmp: Path) -> tuple[list, list, float]:
    np.savez(tmp / "inputs.npz", x=x, rr=rr)
    cmd = [str(Path(sys.executable)), str(Path(__file__).resolve()), "--worker", str(tmp / "inputs.npz")]
    native = tmp / "native.npz"
    subprocess.run([*cmd, str(native), *map(str, files)], check=True, cwd=ROOT)
    t = time.time()
    emulated = tmp / "emulated.npz"
    subprocess.run([*EMULATED, *cmd, str(emulated), *map(str, files)], check=True, cwd=ROOT,
                   stderr=subprocess.DEVNULL)  # qemu's notes on CPU features it does not model
    seconds = time.time() - t
    load = lambda p: [z[f"arr_{i}"] for i in range(len(files)) for z in [np.load(p)]]  # noqa: E731
    return load(native), load(emulated), seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", help="run directories written by main.py")
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--beats", type=int, default=2000, help="DS2 beats per run (emulation is slow)")
    p.add_argument("--out", default="results/int8_cpus")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        logits(args.worker[2:], args.worker[0], args.worker[1])
        return 0
    if shutil.which(EMULATED[0]) is None:
        print("error: qemu-x86_64 not found; install Debian's qemu-user (apt-get install qemu-user)", file=sys.stderr)
        return 2
    from export import MODEL_FILES

    rows = []
    for run in map(Path, args.runs):
        mode = json.loads((run / "config.json").read_text())["mode"]
        config = json.loads((run / "config.json").read_text())
        test = dl.load_beats(args.data_dir, dl.DS2, mode, args.cache_dir, offline=args.offline, progress=False)
        idx = sample(test, args.beats)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            train = dl.load_beats(args.data_dir, config["train_records"], mode, args.cache_dir, offline=args.offline,
                                  progress=False)
            eight_bit(run / "model_float32.onnx", tmp / "eight_bit.onnx", train)
            kinds = {"static-int8": run / MODEL_FILES["static-int8"], "dynamic-int8": run / MODEL_FILES["dynamic-int8"],
                     "static-int8, 8-bit weights (earlier versions)": tmp / "eight_bit.onnx"}
            native, emulated, seconds = run_both(list(kinds.values()), test.x[idx], test.rr[idx], tmp)
        for (kind, _), a, b in zip(kinds.items(), native, emulated):
            ca, cb = a.argmax(1), b.argmax(1)
            rows.append({"run": str(run), "mode": mode, "model": kind, "beats": int(len(idx)),
                         "max_logit_difference": float(np.abs(a - b).max()),
                         "classes_differing": int((ca != cb).sum()),
                         "classes_differing_by_reference": {c: int(((ca != cb) & (test.y[idx] == i)).sum())
                                                            for i, c in enumerate(dl.CLASSES)},
                         "emulated_seconds": seconds})
            print(f"{run} {kind}: {rows[-1]['classes_differing']} of {len(idx)} classes differ, "
                  f"largest logit difference {rows[-1]['max_logit_difference']:.3g}", flush=True)
    native_cpu = describe()
    lines = ["# Int8 models on other CPUs", "",
             f"Command: `python bench/int8_cpus.py {' '.join(sys.argv[1:])}`", "",
             f"Native: {native_cpu}. Emulated: `qemu-x86_64 -cpu Haswell` on the same machine (x86-64 with AVX2 and "
             "FMA, no AVX-512, no VNNI: ONNX Runtime picks its AVX2 kernels there, whose uint8 x int8 products are "
             "summed in pairs into saturating int16). Each run's int8 files classify the same DS2 beats both ways "
             f"({args.beats} per run: every S, V, F and Q beat up to half, the rest N, seeded); the last rows of "
             "each mode are its float32 model quantized with 8-bit weights, as earlier versions shipped.", "",
             "| mode | model | beats | classes differing (S, V) | largest logit difference |", "|---|---|---|---|---|"]
    for r in rows:
        by = r["classes_differing_by_reference"]
        lines.append(f"| {r['mode']} | {r['model']} | {r['beats']} | {r['classes_differing']} ({by['S']}, {by['V']}) "
                     f"| {r['max_logit_difference']:.3g} |")
    write_json(Path(args.out).with_suffix(".json"), {"native_cpu": native_cpu, "emulated_cpu": " ".join(EMULATED),
                                                      "rows": rows,
                                                      "command": "python bench/int8_cpus.py " + " ".join(sys.argv[1:])})
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
