"""Edge benchmark: size, DS2 accuracy, single-beat latency and batch throughput of the float32,
dynamic int8 and static int8 models of trained runs, timings as ratios to float32 in the same run.

    python bench/edge.py runs/accuracy/diagnostic-seed0 runs/accuracy/realtime-seed0 --data-dir DIR --offline

Writes results/edge.md and results/edge.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data_loader as dl  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py, however this is imported
from machine import cpu, describe  # noqa: E402
from outputs import write_json, write_text  # noqa: E402


def runners(run: Path, threads: int):
    """name -> (file deployed, callable(x, rr) -> logits) for every model of a run, and PyTorch's deprecated dynamic
    int8 (torch.ao, which earlier versions shipped) for comparison: built here from the float32 model."""
    import warnings

    import torch

    from export import MODEL_FILES, OnnxModel
    from quantize import load_model

    torch.set_num_threads(threads)
    f, _ = load_model(run / "model_float32.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation, the reason it is no longer the product's
        from torch.ao.quantization import quantize_dynamic

        q = quantize_dynamic(load_model(run / "model_float32.pt")[0], {torch.nn.Linear}, dtype=torch.qint8)
    legacy = run / "torch_ao_int8.pt"  # its size as earlier versions saved it (model_int8.pt), not kept

    def torch_runner(m):
        def call(x, rr):
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return m(torch.from_numpy(x), torch.from_numpy(rr))
        return call

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(q.state_dict(), legacy)
    return {
        "float32 (PyTorch)": (run / MODEL_FILES["float32"], torch_runner(f)),
        "float32 (ONNX Runtime)": (run / "model_float32.onnx", OnnxModel(run / "model_float32.onnx", threads).logits),
        "dynamic-int8 (ONNX Runtime)": (run / MODEL_FILES["dynamic-int8"],
                                        OnnxModel(run / MODEL_FILES["dynamic-int8"], threads).logits),
        "static-int8 (ONNX Runtime)": (run / MODEL_FILES["static-int8"],
                                       OnnxModel(run / MODEL_FILES["static-int8"], threads).logits),
        "dynamic-int8 (PyTorch torch.ao, deprecated; earlier versions')": (legacy, torch_runner(q)),
    }


def latency_ms(call, x, rr, calls: int) -> float:
    for _ in range(50):
        call(x, rr)
    t = np.empty(calls)
    for i in range(calls):
        s = time.perf_counter()
        call(x, rr)
        t[i] = time.perf_counter() - s
    return float(np.median(t) * 1e3)


def throughput(call, x, rr, seconds: float) -> float:
    call(x, rr)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call(x, rr)
        n += len(x)
    return n / (time.perf_counter() - start)


def bench_run(run: Path, calls: int, batch: int, seconds: float, test) -> dict:
    """Sizes, speeds, and DS2 accuracy computed here, on this CPU, for every model of a run (test: its mode's DS2
    beats)."""
    import torch

    from evaluate import confusion, metrics

    mode = json.loads((run / "config.json").read_text())["mode"]
    n_rr = len(dl.RR_FEATURES[mode])
    g = np.random.default_rng(0)
    c = len(dl.WINDOW_CHANNELS)
    x1, rr1 = g.standard_normal((1, c, dl.WINDOW), np.float32), (g.random((1, n_rr), np.float32) + 0.5)
    xb, rrb = g.standard_normal((batch, c, dl.WINDOW), np.float32), (g.random((batch, n_rr), np.float32) + 0.5)
    from quantize import load_model

    params = sum(p.numel() for p in load_model(run / "model_float32.pt")[0].parameters())
    rows = {}
    one = runners(run, threads=1)
    for name, (path, call) in one.items():
        rows[name] = {"file": path.name, "bytes": os.path.getsize(path), "latency_ms": latency_ms(call, x1, rr1, calls)}
        logits = np.concatenate([np.asarray(call(test.x[i:i + 4096], test.rr[i:i + 4096]))
                                 for i in range(0, len(test), 4096)])
        rows[name]["metrics"] = metrics(confusion(test.y, logits.argmax(1)))
    (run / "torch_ao_int8.pt").unlink()
    two = runners(run, threads=2)
    for name, (_, call) in two.items():
        rows[name]["beats_per_s"] = throughput(call, xb, rrb, seconds)
    (run / "torch_ao_int8.pt").unlink()
    torch.set_num_threads(os.cpu_count() or 1)
    base = rows["float32 (PyTorch)"]
    fm = base["metrics"]
    for r in rows.values():
        r["latency_ratio"] = r["latency_ms"] / base["latency_ms"]
        r["throughput_ratio"] = r["beats_per_s"] / base["beats_per_s"]
        r["size_ratio"] = base["bytes"] / r["bytes"]
        m = r.pop("metrics")
        r["ds2"] = {c: {k: m["per_class"][c][k] for k in ("se", "ppv", "f1")} for c in "NSV"}
        r["macro_f1_nsv"] = m["macro_f1_nsv"]
        r["macro_f1_change"] = m["macro_f1_nsv"] - fm["macro_f1_nsv"]
        r["f1_change"] = {c: m["per_class"][c]["f1"] - fm["per_class"][c]["f1"] for c in "NSV"}
    return {"run": str(run), "mode": mode, "parameters": params, "models": rows}


def report(results: list[dict], args) -> str:
    lines = ["# Edge models: size, accuracy, speed", "",
             f"Command: `python bench/edge.py {' '.join(sys.argv[1:])}`", "",
             f"CPU: {describe(results[0]['cpu'])}: the int8 figures were computed here, and the int8 files give "
             "the same integers on x86-64 with AVX2 only and on ARM64 (7-bit weights: no int16 pair saturation; "
             "`tests/test_export.py`, `results/int8_cpus.md`). Latency: batch 1, "
             f"one thread, median of {args.calls} calls. Throughput: batch {args.batch}, two threads, "
             f"{args.seconds:.0f} s. Ratios are to float32 PyTorch measured in the same run (latency: lower is "
             "better; throughput and size: higher is better). DS2 figures are computed by this benchmark on this CPU; "
             "the static int8 model was calibrated on DS1 training beats only. The last row is the dynamic int8 "
             "that earlier versions shipped (PyTorch's torch.ao quantized tensors, deprecated and to be removed), "
             "built from the same float32 model for comparison.", ""]
    for r in results:
        lines += [f"## {r['mode']} mode (`{r['run']}`, {r['parameters']:,} parameters)", "",
                  "| model | file | bytes | smaller by | latency (ms) | vs float32 | beats/s | vs float32 | "
                  "S Se / +P / F1 | V Se / +P / F1 | N F1 | macro-F1 (N,S,V) (change) |",
                  "|---" * 12 + "|"]
        for name, m in r["models"].items():
            d = m["ds2"]
            lines.append(
                f"| {name} | {m['file']} | {m['bytes']:,} | {m['size_ratio']:.2f}x | {m['latency_ms']:.3f} | "
                f"{m['latency_ratio']:.2f} | {m['beats_per_s']:,.0f} | {m['throughput_ratio']:.2f} | "
                + " | ".join(f"{d[c]['se']:.3f} / {d[c]['ppv']:.3f} / {d[c]['f1']:.3f}" for c in "SV")
                + f" | {d['N']['f1']:.3f} | {m['macro_f1_nsv']:.4f} ({m['macro_f1_change']:+.4f}) |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run directories written by main.py")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--out", default="results/edge")
    p.add_argument("--data-dir", default="data/mitdb", help="MIT-BIH folder: DS2 is scored on this CPU")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--offline", action="store_true")
    args = p.parse_args(argv)
    missing = [r for r in args.runs if not (Path(r) / "model_int8_static.onnx").exists()]
    if missing:
        print(f"error: {', '.join(missing)} hold no complete run (model_int8_static.onnx missing); "
              "run `python main.py --out DIR` first", file=sys.stderr)
        return 2
    t0 = time.time()
    results = []
    for r in args.runs:
        mode = json.loads((Path(r) / "config.json").read_text())["mode"]
        test = dl.load_beats(args.data_dir, dl.DS2, mode, args.cache_dir, offline=args.offline, progress=False)
        results.append({**bench_run(Path(r), args.calls, args.batch, args.seconds, test), "cpu": cpu()})
    text = report(results, args)
    write_json(Path(args.out).with_suffix(".json"), {"results": results, "cpu": cpu(), "wall_seconds": time.time() - t0,
                                                      "command": "python bench/edge.py " + " ".join(sys.argv[1:])})
    write_text(Path(args.out).with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
