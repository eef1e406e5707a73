"""Time the full experiment as a user runs it: `python main.py` twice on an empty cache.

The first run preprocesses every record; the second must find them all in the cache.

    python bench/full_run.py --data-dir ../shared/data/mitdb --offline [--mode diagnostic]

Writes results/full_run_<mode>.md and .json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outputs import write_json, write_text  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--mode", default="diagnostic")
    p.add_argument("--runs-dir", default="runs/full_run")
    p.add_argument("--out", default=None, help="default results/full_run_<mode>")
    args = p.parse_args(argv)
    out = Path(args.out or f"results/full_run_{args.mode}")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name in ("first run (empty cache)", "second run (cache filled)"):
            run = Path(args.runs_dir) / f"{args.mode}-{len(rows) + 1}"
            cmd = [sys.executable, "main.py", "--mode", args.mode, "--data-dir", args.data_dir, "--cache-dir",
                   cache, "--out", str(run), "--overwrite", "--quiet", *(["--offline"] if args.offline else [])]
            t = time.time()
            proc = subprocess.run(cmd, cwd=ROOT)
            wall = time.time() - t
            if proc.returncode:
                return proc.returncode
            m = json.loads((run / "metrics.json").read_text())
            rows.append({"run": name, "wall_seconds": wall, "preprocess_seconds": m["preprocess_seconds"],
                         "train_seconds": m["train_seconds"], "macro_f1_nsv": m["float32"]["macro_f1_nsv"],
                         "cache_files": len(list(Path(cache).glob("*.npz")))})
    command = "python bench/full_run.py " + " ".join(sys.argv[1:])
    lines = [f"# Full experiment, {args.mode} mode, default settings", "", f"Command: `{command}`", "",
             "| run | wall time (s) | preprocessing (s) | training (s) | DS2 macro-F1 (N,S,V) | cache files |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['wall_seconds']:.0f} | {r['preprocess_seconds']:.1f} | {r['train_seconds']:.0f} | "
              f"{r['macro_f1_nsv']:.4f} | {r['cache_files']} |" for r in rows]
    write_json(out.with_suffix(".json"), {"runs": rows, "command": command})
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
