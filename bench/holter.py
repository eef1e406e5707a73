"""Holter benchmark: `main.py predict` on a day of ECG and on a week, wall time and peak memory per model kind,
time per stage, and the network's own time in the same run.

    python bench/holter.py --data-dir ../shared/data/mitdb --offline --model runs/<diagnostic run>

The day: the first lead of each of the 48 MIT-BIH records, joined in record order into one WFDB record at
360 Hz (the records' own samples, format 212), written once to --cache. The week: the day 7 times over. Each
`predict` runs in a process of its own (its peak RSS from os.wait4), under an address-space limit (--limit-gb)
so that a run too large for the machine fails alone. The stages are timed in one more `predict` per model kind,
its stages' functions wrapped in timers; its network time is the base of the ratio. The machine's load average
is recorded before and after each run (other jobs share the CPU). --reference names the beats CSVs of an earlier
version's predict on the day ({kind} in the path: one per model kind), compared class by class with this run's.
--code names another checkout whose `predict` is measured (an earlier commit, for before and after).
Writes results/holter.md and results/holter.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("float32", "static-int8")
WEEK_KIND = "static-int8"
DAYS_IN_WEEK = 7


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_day(data_dir: Path, out: Path) -> Path:
    """The day as one single-lead WFDB record `out`/day (format 212, the records' own samples), made once."""
    import wfdb

    import data_loader as dl

    path = out / "day"
    if (out / "day.hea").is_file():
        return path
    parts, gain, baseline = [], None, None
    for rec in dl.ALL_RECORDS:
        r = wfdb.rdrecord(str(data_dir / rec), channels=[0], physical=False)
        if gain is None:
            gain, baseline = r.adc_gain[0], r.baseline[0]
        if (r.fs, r.adc_gain[0], r.baseline[0]) != (dl.FS, gain, baseline):
            raise SystemExit(f"error: record {rec} is not at {dl.FS} Hz with gain {gain} and baseline {baseline} "
                             f"as the others: cannot join its samples as they are")
        parts.append(r.d_signal[:, 0])
    out.mkdir(parents=True, exist_ok=True)
    # written as daytmp, then renamed: the header, last, marks a whole record
    wfdb.wrsamp("daytmp", fs=dl.FS, units=["mV"], sig_name=["ECG"], d_signal=np.concatenate(parts)[:, None],
                fmt=["212"], adc_gain=[gain], baseline=[baseline], write_dir=str(out))
    (out / "daytmp.dat").rename(out / "day.dat")
    (out / "day.hea").write_text((out / "daytmp.hea").read_text().replace("daytmp", "day"))
    (out / "daytmp.hea").unlink()
    return path


def make_days(day: Path, days: int) -> Path:
    """The day `days` times over, beside it: its signal file repeated (format 212 packs two samples in three
    bytes; a day holds an even number) and its header's length and checksum scaled."""
    path = day.with_name(f"days{days}")
    if path.with_suffix(".hea").is_file():
        return path
    head, sig = day.with_suffix(".hea").read_text().splitlines()[:2]
    name, n_sig, fs, length = head.split()[:4]
    fields = sig.split()
    assert n_sig == "1" and fields[1] == "212" and int(length) % 2 == 0, "a one-lead format-212 day"
    fields[0] = path.name + ".dat"
    checksum = (int(fields[6]) * days + 32768) % 65536 - 32768  # WFDB's: the samples' sum as a 16-bit integer
    fields[6] = str(checksum)
    with open(path.with_suffix(".dat"), "wb") as f:
        block = day.with_suffix(".dat").read_bytes()
        for _ in range(days):
            f.write(block)
    path.with_suffix(".hea").write_text(f"{path.name} 1 {fs} {int(length) * days}\n{' '.join(fields)}\n")
    return path


EDF_FS = 250  # Hz: the day and week again as a Holter's EDF file (a common rate for them)


def make_edf(day: Path, days: int = 1, fs: int = EDF_FS) -> Path:
    """The day (days times over) as an EDF file at fs Hz beside it: the day's samples resampled (scipy's polyphase
    filter) and written by edfio, in data records of 1 s; the week its data records repeated, the count in its header
    scaled. Made once."""
    import edfio
    import wfdb
    from scipy import signal

    path = day.with_name(f"day{fs}.edf" if days == 1 else f"days{days}_{fs}.edf")
    if path.is_file():
        return path
    if days == 1:
        r = wfdb.rdrecord(str(day), physical=False)
        d = signal.resample_poly(r.d_signal[:, 0].astype(np.float64), fs, int(r.fs))
        d = np.clip(np.round(d[:len(d) // fs * fs]), -32768, 32767).astype(np.int16)
        lo, hi = ((v - r.baseline[0]) / r.adc_gain[0] for v in (-32768, 32767))
        sig = edfio.EdfSignal.from_digital(d, fs, label="ECG", physical_dimension="mV", physical_range=(lo, hi),
                                           digital_range=(-32768, 32767))
        edfio.Edf([sig]).write(path.with_suffix(".tmp"))
    else:
        one = make_edf(day, 1, fs).read_bytes()
        head_bytes, records = int(one[184:192]), int(one[236:244])
        head = bytearray(one[:head_bytes])
        head[236:244] = str(records * days).ljust(8).encode()
        with open(path.with_suffix(".tmp"), "wb") as f:
            f.write(head)
            for _ in range(days):
                f.write(one[head_bytes:])
    path.with_suffix(".tmp").rename(path)
    return path


def run_measured(cmd: list[str], limit_gb: float, cwd: Path) -> dict:
    """Run cmd in its own process: wall seconds, its peak RSS (MB), exit status and the end of its output."""
    limit = int(limit_gb * 2 ** 30)

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=cap)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t
        log.seek(0)
        text = log.read().decode(errors="replace")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "exit": p.returncode,
            "output": text[-2000:]}


def time_stages(model: str, kind: str, record: str) -> dict:
    """Seconds of each stage of `main.py predict` on the record: predict itself runs, its stages' functions wrapped
    in timers (a stage called inside another counts in the outer one: the detector's own filters are detection)."""
    import contextlib

    import pandas as pd

    import chunked
    import data_loader as dl
    import detect
    import export
    import predict
    import recordings

    seconds, depth = {}, [0]

    def timed(stage, owner, name):
        f = getattr(owner, name)

        def wrapper(*args, **kwargs):
            depth[0] += 1
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t
        setattr(owner, name, wrapper)

    for stage, owner, name in [
            ("load model", predict, "load_classifier"), ("read", chunked.WfdbLead, "read"),
            ("read", recordings, "read_input"), ("fill gaps", dl, "hold_gaps"),
            ("filter", chunked.signal, "sosfiltfilt"), ("filter", chunked.SosFilter, "__call__"),
            ("detect", detect.QRSDetector, "feed"), ("detect", detect.QRSDetector, "flush"),
            ("windows", dl, "beat_windows"), ("templates", dl, "beat_templates"), ("RR features", dl, "rr_features"),
            ("network", export.OnnxModel, "predict_proba"), ("template match", dl, "template_match"),
            ("mains check", recordings, "mains_fraction"), ("writing", pd.DataFrame, "to_csv"),
            ("writing", predict, "beats_frame"), ("writing", predict, "write_annotations")]:
        timed(stage, owner, name)
    if kind == "float32" and not (Path(model) / export.FLOAT32_ONNX).is_file():
        timed("network", export.Classifier, "predict_proba")  # a run without the ONNX export: PyTorch's
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(sys.stderr):
        res = predict.run(predict.build_parser().parse_args(
            ["--model", model, "--kind", kind, "--record", record, "--out", out, "--no-plot"]))
    total = time.perf_counter() - t
    seconds["other"] = total - sum(seconds.values())
    header = Path(record + ".hea").read_text().split()
    return {"stage_seconds": seconds, "beats": len(res["beats"]["sample"]), "samples": int(header[3])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data/mitdb")
    p.add_argument("--offline", action="store_true")
    p.add_argument("--model", required=True, help="a diagnostic run directory (python main.py)")
    p.add_argument("--cache", default="cache-bench/holter", help="where the day and week records are written")
    p.add_argument("--code", default=str(ROOT), help="the checkout whose predict is measured (default: this one)")
    p.add_argument("--limit-gb", type=float, default=10.0, help="address-space limit of each predict process")
    p.add_argument("--no-week", action="store_true", help="skip the 7-day recording")
    p.add_argument("--no-edf", action="store_true", help="skip the day and week as EDF files at 250 Hz")
    p.add_argument("--reference", default=None, help="an earlier version's beats CSV of the day, {kind} in its path")
    p.add_argument("--out", default="results/holter")
    p.add_argument("--stages", default=None, help=argparse.SUPPRESS)  # (the stage-timing process: a model kind)
    p.add_argument("--record", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    code = Path(args.code).resolve()
    sys.path.insert(0, str(code))
    if args.stages:
        print(json.dumps(time_stages(args.model, args.stages, args.record)))
        return 0

    import data_loader as dl
    from outputs import write_json, write_text

    try:
        dl.ensure_records(args.data_dir, dl.ALL_RECORDS, offline=args.offline)
    except dl.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model = str(Path(args.model).resolve())
    cache = Path(args.cache).resolve()
    day = make_day(Path(args.data_dir), cache)
    python = sys.executable
    from machine import describe

    command = "python bench/holter.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"machine": describe(), "command": command,
              "code": str(code), "commit": git_commit(code), "cpu": cpu_name(),
              "cores": len(os.sched_getaffinity(0)), "model": args.model, "limit_gb": args.limit_gb, "kinds": {}}
    for kind in KINDS:
        with tempfile.TemporaryDirectory() as out:
            load = os.getloadavg()[0]
            run = run_measured([python, "main.py", "predict", "--model", model, "--kind", kind, "--record", str(day),
                                "--out", out, "--no-plot"], args.limit_gb, code)
            run["load_before"], run["load_after"] = load, os.getloadavg()[0]
            if args.reference and run["exit"] == 0:
                run["reference"] = compare(Path(args.reference.format(kind=kind)), Path(out) / "day_beats.csv")
        if run["exit"] != 0:
            print(run["output"], file=sys.stderr)
            raise SystemExit(f"error: predict ({kind}) failed on the day, exit {run['exit']}")
        print(f"{kind}: predict {run['seconds']:.1f} s, peak {run['peak_rss_mb']:.0f} MB", flush=True)
        staged = run_measured([python, str(Path(__file__).resolve()), "--code", str(code), "--model", model,
                               "--stages", kind, "--record", str(day)], args.limit_gb, ROOT)
        if staged["exit"] != 0:
            print(staged["output"], file=sys.stderr)
            raise SystemExit(f"error: the stage timing ({kind}) failed, exit {staged['exit']}")
        stages = json.loads(staged["output"].strip().splitlines()[-1])
        network = stages["stage_seconds"]["network"]
        result["kinds"][kind] = {"seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
                                 "load_before": run["load_before"], "load_after": run["load_after"],
                                 **({"reference": run["reference"]} if "reference" in run else {}),
                                 "stage_seconds": stages["stage_seconds"], "network_seconds": network,
                                 "ratio_to_network": run["seconds"] / network}
        result["beats"], result["hours"] = stages["beats"], stages["samples"] / dl.FS / 3600
        print(f"{kind}: network {network:.1f} s; "
              + ", ".join(f"{k} {v:.2f}" for k, v in stages["stage_seconds"].items()), flush=True)
    result["stage_seconds"] = result["kinds"][WEEK_KIND]["stage_seconds"]
    if not args.no_week:
        week = make_days(day, DAYS_IN_WEEK)
        with tempfile.TemporaryDirectory() as out:
            load = os.getloadavg()[0]
            run = run_measured([python, "main.py", "predict", "--model", model, "--kind", WEEK_KIND, "--record",
                                str(week), "--out", out, "--no-plot"], args.limit_gb, code)
        result["week"] = {"seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"], "exit": run["exit"],
                          "finished": run["exit"] == 0, "load_before": load, "load_after": os.getloadavg()[0]}
        if run["exit"] != 0:
            result["week"]["error"] = run["output"].strip().splitlines()[-1] if run["output"].strip() else ""
        print(f"week ({WEEK_KIND}): {'finished' if run['exit'] == 0 else 'failed'} after {run['seconds']:.1f} s, "
              f"peak {run['peak_rss_mb']:.0f} MB", flush=True)
    if not args.no_edf:
        result["edf"] = {"fs": EDF_FS}
        for name, days in (("day", 1),) + ((("week", DAYS_IN_WEEK),) if not args.no_week else ()):
            with tempfile.TemporaryDirectory() as out:
                load = os.getloadavg()[0]
                run = run_measured([python, "main.py", "predict", "--model", model, "--kind", WEEK_KIND, "--edf",
                                    str(make_edf(day, days)), "--out", out, "--no-plot"], args.limit_gb, code)
            if run["exit"] != 0:
                print(run["output"], file=sys.stderr)
                raise SystemExit(f"error: predict failed on the {name} as EDF, exit {run['exit']}")
            result["edf"][name] = {"seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
                                   "load_before": load, "load_after": os.getloadavg()[0]}
            print(f"{name} as EDF at {EDF_FS} Hz ({WEEK_KIND}): {run['seconds']:.1f} s, peak {run['peak_rss_mb']:.0f} "
                  f"MB", flush=True)
    write_json(Path(args.out).with_suffix(".json"), result)
    write_text(Path(args.out).with_suffix(".md"), report(result))
    print(report(result))
    return 0


def compare(reference: Path, beats: Path) -> dict:
    """This run's beats against an earlier version's (its beats CSV): beats, same samples, classes that differ,
    the largest difference of a probability (as written, to 5 decimals)."""
    import pandas as pd

    a, b = pd.read_csv(reference), pd.read_csv(beats)
    p = [f"p_{c}" for c in "NSVFQ"]
    same = len(a) == len(b) and bool((a["sample"].values == b["sample"].values).all())
    return {"file": str(reference), "beats": len(a), "same_samples": same,
            "classes_differ": int((a["class"].values != b["class"].values).sum()) if same else None,
            "max_probability_difference": float(np.nanmax(np.abs(a[p].values - b[p].values))) if same else None}


def git_commit(code: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True)
        return out.stdout.strip() or None
    except OSError:
        return None


def report(r: dict) -> str:
    day = r["kinds"][WEEK_KIND]
    lines = ["# A day of ECG: `predict` on 24 hours, and a week", "",
             f"Command: `{r['command']}`. Code measured: {r['code']} (commit {r['commit']}). "
             f"Machine: {r['machine']}. Model: `{r['model']}` (a diagnostic run).", "",
             f"The day: the first lead of each of the 48 MIT-BIH records joined into one record at 360 Hz, "
             f"{r['hours']:.1f} h, {r['beats']:,} beats detected. Each `main.py predict` (read, detect, classify, "
             f"write; the process's whole life, imports and model loading included) ran alone, under a "
             f"{r['limit_gb']:g} GB address-space limit; the machine's 1-minute load average before and after each "
             f"run is given (other jobs shared the CPU).", "",
             "| model | wall time (s) | peak memory (RSS, MB) | network alone (s) | wall / network "
             "| load before, after |",
             "| --- | --- | --- | --- | --- | --- |"]
    for kind, k in r["kinds"].items():
        lines.append(f"| {kind} | {k['seconds']:.1f} | {k['peak_rss_mb']:.0f} | {k['network_seconds']:.2f} | "
                     f"{k['ratio_to_network']:.1f} | {k['load_before']:.2f}, {k['load_after']:.2f} |")
    refs = {kind: k["reference"] for kind, k in r["kinds"].items() if "reference" in k}
    if refs:
        lines += ["", "Against the earlier version's beats on the day (`--reference`):", ""]
        for kind, c in refs.items():
            lines.append(f"- {kind}: {c['beats']:,} beats, "
                         + (f"the same samples; {c['classes_differ']} classes differ; probabilities within "
                            f"{c['max_probability_difference']:.0e} (as written, 5 decimals)" if c["same_samples"]
                            else "other samples") + f" ({c['file']})")
    lines += ["", "Time per stage (s), in one more `predict` on the day with its stages' functions timed ('other': "
              "the rest of that run: piece bookkeeping, checks, summary):", "",
              "| stage | " + " | ".join(r["kinds"]) + " |",
              "| --- |" + " --- |" * len(r["kinds"])]
    for stage in day["stage_seconds"]:
        lines.append(f"| {stage} | " + " | ".join(f"{k['stage_seconds'].get(stage, float('nan')):.2f}"
                                                    for k in r["kinds"].values()) + " |")
    lines.append("| total | " + " | ".join(f"{sum(k['stage_seconds'].values()):.2f}" for k in r["kinds"].values())
                 + " |")
    if "week" in r:
        w = r["week"]
        if w["finished"]:
            lines += ["", f"The week ({DAYS_IN_WEEK} days, {WEEK_KIND}): {w['seconds']:.1f} s "
                      f"({w['seconds'] / day['seconds']:.1f}x the day), peak memory {w['peak_rss_mb']:.0f} MB "
                      f"({w['peak_rss_mb'] / day['peak_rss_mb']:.2f}x the day); load {w['load_before']:.2f} before, "
                      f"{w['load_after']:.2f} after."]
        else:
            lines += ["", f"The week ({DAYS_IN_WEEK} days, {WEEK_KIND}) did not finish: it stopped after "
                      f"{w['seconds']:.1f} s at a peak of {w['peak_rss_mb']:.0f} MB, asking for more than its "
                      f"{r['limit_gb']:g} GB address-space limit allows (exit {w['exit']}: {w.get('error', '')})."]
    if "edf" in r:
        e = r["edf"]
        lines += ["", f"As a Holter's file: the day resampled to {e['fs']} Hz and written as EDF (edfio), and the week "
                  f"its data records 7 times over; `predict --edf` ({WEEK_KIND}) reads, checks and resamples them "
                  f"piece by piece:", "", "| recording | wall time (s) | peak memory (RSS, MB) | load before, after |",
                  "| --- | --- | --- | --- |"]
        for name in ("day", "week"):
            if name in e:
                lines.append(f"| {name}, EDF at {e['fs']} Hz | {e[name]['seconds']:.1f} | "
                             f"{e[name]['peak_rss_mb']:.0f} | {e[name]['load_before']:.2f}, "
                             f"{e[name]['load_after']:.2f} |")
        if "week" in e:
            lines += ["", f"The week as EDF: {e['week']['seconds'] / e['day']['seconds']:.1f}x the day's time, "
                      f"{e['week']['peak_rss_mb'] / e['day']['peak_rss_mb']:.2f}x its peak memory."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
