"""Deep-ECG: beat-by-beat arrhythmia classification on MIT-BIH, end to end.

    python main.py                      # diagnostic mode, full experiment
    python main.py --mode realtime      # strictly causal features and filter
    python main.py --epochs 1 --max-records 2   # smoke run
    python main.py predict --model runs/<run> --record data/mitdb/100   # classify any recording
    python main.py stream --model runs/<run> --record data/mitdb/100    # causal live replay
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import config
import data_loader as dl
import export
from cli import HelpFormatter, run_command  # noqa: F401  (main.HelpFormatter, as before)
from outputs import write_json


# The training options, each written once: (flag, default, help[, more of add_argument's keywords]). Each default
# is config's setting; a dict is one by mode (the option left out, check_args takes the mode's), a tuple is given
# comma-separated, True or False makes a switch. Each value goes to train.TrainConfig's field of the same name
# (--no-augment: augment), --validate to split_records.
TRAINING_FLAGS = (
    ("--epochs", config.EPOCHS, "training epochs"),
    ("--batch-size", config.BATCH_SIZE, "beats per training step"),
    ("--lr", config.LR, "peak learning rate of the one-cycle schedule"),
    ("--gamma", config.GAMMA, "focal loss focusing parameter, 0 = cross-entropy"),
    ("--alpha", config.ALPHA, f"focal per-class weights for {','.join(dl.CLASSES)} ('none': all 1)"),
    ("--balance", config.BALANCE, "class-balanced sampling strength: 0 natural frequencies, 1 fully balanced"),
    ("--no-augment", not config.AUGMENT, "turn off training augmentation"),
    ("--ema", config.EMA, "decay of the moving average of weights, the weights kept (0: plain weights)"),
    ("--validate", False, f"hold DS1 records {', '.join(dl.VALIDATION)} out of training and keep the epoch that "
                          "scores best on them (default: train on all DS1 and keep the last averaged weights, "
                          "which DS1 cross-validation favoured)"),
    ("--s-offset", config.S_OFFSET,
     "added to the S logit (folded into the model): > 0 finds more S beats, with more false alarms"),
    ("--ensemble", config.ENSEMBLE, "train K networks from seeds K*seed ... K*seed+K-1 and average their logits",
     {"metavar": "K"}),
    ("--seed", config.SEED, "same seed, same result on the same CPU model"),
)


def dest(flag: str) -> str:
    """An option's name in the parsed arguments: '--batch-size' -> 'batch_size'."""
    return flag[2:].replace("-", "_")


# option -> its default in each mode (left out of argv: argparse.SUPPRESS)
MODE_DEFAULTS = {dest(flag): default for flag, default, *_ in TRAINING_FLAGS if isinstance(default, dict)}


def by_mode(defaults: dict) -> str:
    """'(default: 2 in diagnostic mode, 1 in realtime mode)', for an option's help."""
    return f"(default: {', '.join(f'{v:g} in {m} mode' for m, v in defaults.items())})"


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """TRAINING_FLAGS' options, in order."""
    for flag, default, text, *more in TRAINING_FLAGS:
        kw = more[0] if more else {}
        if isinstance(default, dict):  # by mode
            p.add_argument(flag, type=type(next(iter(default.values()))), default=argparse.SUPPRESS,
                           help=f"{text} {by_mode(default)}", **kw)
        elif isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=default, help=text, **kw)
        elif isinstance(default, tuple):
            p.add_argument(flag, default=",".join(f"{a:g}" for a in default), help=text, **kw)
        else:
            p.add_argument(flag, type=type(default), default=default, help=text, **kw)


class ConfigError(Exception):
    """An inconsistent or impossible option; the message says which and what to use."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description=__doc__.split("\n")[0], allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("--mode", choices=dl.MODES, default="diagnostic",
                   help="diagnostic may use the next beat (post-RR); realtime is strictly causal")
    p.add_argument("--data-dir", default=os.environ.get("DEEP_ECG_DATA_DIR", "data/mitdb"),
                   help="MIT-BIH folder (downloaded here if missing); env DEEP_ECG_DATA_DIR sets the default")
    p.add_argument("--offline", action="store_true", help="never touch the network")
    p.add_argument("--cache-dir", default="cache", help="preprocessed beats are cached here")
    p.add_argument("--out", default=None, help="run directory (default runs/<mode>-seed<seed>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="allow --out to name an existing run")
    add_training_flags(p)
    p.add_argument("--device", default="cpu", help="cpu, or cuda when available")
    p.add_argument("--max-records", type=int, default=None,
                   help="smoke runs: use only the first N records of the train, validation and test lists")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or step-by-step lines (the results still print)")
    return p


def check_args(args, made: dict | None = None) -> None:
    """ConfigError for an option out of range; makes the output folders. `made` records what a failed run
    may take away again: that the folders were reached ('checked'), and which of them this call made."""
    made = {} if made is None else made
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    for name, default in MODE_DEFAULTS.items():  # options left out of argv (argparse.SUPPRESS)
        if getattr(args, name, None) is None:
            setattr(args, name, default[args.mode])
    for flag, *_ in TRAINING_FLAGS:  # (the float ones: --lr, --gamma, --balance, --ema, --s-offset)
        value = getattr(args, dest(flag))
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag} must be a finite number, got {value}")
    if args.lr <= 0:
        raise ConfigError(f"--lr must be positive, got {args.lr}")
    if args.gamma < 0:
        raise ConfigError(f"--gamma must be >= 0 (0 is cross-entropy), got {args.gamma}")
    if not 0 <= args.ema < 1:
        raise ConfigError(f"--ema must be in [0, 1), got {args.ema}")
    if not 0 <= args.balance <= 1:
        raise ConfigError(f"--balance must be between 0 and 1, got {args.balance}")
    if args.ensemble < 1:
        raise ConfigError(f"--ensemble must be at least 1 network, got {args.ensemble}")
    if not 0 <= args.seed * args.ensemble + args.ensemble - 1 < 2 ** 32:  # numpy's seed range, every member's
        raise ConfigError(f"--seed must be between 0 and {2 ** 32 // args.ensemble - 1} "
                          f"with {args.ensemble} network(s), got {args.seed}")
    if args.max_records is not None and args.max_records < 1:
        raise ConfigError(f"--max-records must be at least 1, got {args.max_records}")
    if args.alpha.lower() == "none":
        args.alpha = None
    else:
        try:
            alpha = [float(a) for a in args.alpha.split(",")]
        except ValueError:
            alpha = []
        if len(alpha) != len(dl.CLASSES) or not all(math.isfinite(a) and a > 0 for a in alpha):
            raise ConfigError(f"--alpha needs {len(dl.CLASSES)} positive numbers for "
                              f"{','.join(dl.CLASSES)}, e.g. 1,2,1,1,1; got {args.alpha!r}")
        args.alpha = alpha
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    elif args.device != "cpu":
        raise ConfigError(f"--device must be cpu or cuda, got {args.device!r}")
    if args.out is None:
        args.out = f"runs/{args.mode}-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    args.out = os.path.normpath(args.out)  # 'new/..' is '.' and 'a/new/../b' is 'a/b', as they are once made
    out = Path(args.out)
    made["checked"] = True  # from here on a failure may have made something to take away
    if (out / "config.json").exists() and not args.overwrite:
        raise ConfigError(f"{out} already holds a run; choose another --out or pass --overwrite")
    from outputs import FolderError, make_folder

    def make(path: Path, option: str) -> bool:  # whether this call made it (not: it was there, or a twin run made it)
        try:
            path.mkdir(parents=True)
            return True
        except OSError:
            make_folder(path, option)  # there already, or the error that names it
            return False

    try:
        made["out"] = make(out, "--out")
        made["cache"] = make(Path(args.cache_dir), "--cache-dir")
    except FolderError as exc:
        raise ConfigError(str(exc)) from None


def split_records(max_records: int | None, validate: bool = False):
    """(train, validation, test) record lists; DS2 is the test set.

    By default every DS1 record trains and there is no validation set (the last averaged weights
    are kept); with validate, dl.VALIDATION leaves DS1's training records to choose the checkpoint.
    """
    cut = (lambda r: list(r)[:max_records]) if max_records else list
    val = dl.VALIDATION if validate else ()
    return cut([r for r in dl.DS1 if r not in val]), cut(val), cut(dl.DS2)


def run(args, made: dict | None = None) -> dict:
    """The whole experiment; returns the metrics written to metrics.json. `made` (main's) learns which
    config.json this run wrote, for undo_failed_run."""
    import torch

    from evaluate import classification_report, confusion, metrics, plot_confusion, plot_history, write_report
    from model import designs
    from quantize import path_size, quantization_table, quantize_all
    from train import TrainConfig, fit_ensemble, member_seeds

    t0 = time.time()
    out = Path(args.out)
    train_recs, val_recs, test_recs = split_records(args.max_records, args.validate)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}, augment=not args.no_augment)
    config = {**vars(args), "train_records": train_recs, "validation_records": val_recs,
              "test_records": test_recs, "window": [dl.WINDOW_BEFORE, dl.WINDOW_AFTER],
              "bandpass_hz": list(dl.BANDPASS_HZ), "filter_order": dl.FILTER_ORDER,
              **export.model_inputs(args.mode), "model": designs(args.mode, args.ensemble),
              "member_seeds": member_seeds(args.seed, args.ensemble)}
    progress = not args.quiet
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))

    # Check every record up front so a missing one fails before training, not after,
    # and before config.json marks the directory as holding a run.
    dl.ensure_records(args.data_dir, train_recs + val_recs + test_recs, offline=args.offline)
    write_json(out / "config.json", config)
    if made is not None:  # this file, not another run's of the same --out: written by rename, its own inode
        made["config"] = (out / "config.json").stat().st_ino
    load = lambda recs: dl.load_beats(args.data_dir, recs, args.mode, args.cache_dir,  # noqa: E731
                                      offline=True, progress=progress)
    t_pre = time.time()
    train, val = load(train_recs), (load(val_recs) if val_recs else None)
    pre_s = time.time() - t_pre
    say(f"[{args.mode}] train {len(train)} beats {train.counts()}"
        + (f"; validation {len(val)} beats {val.counts()}" if val is not None else "") + f" ({pre_s:.1f} s)")

    t_train = time.time()
    model, history, best_epoch = fit_ensemble(args.mode, train, val, cfg, args.ensemble, progress=progress)
    train_s = time.time() - t_train
    say(f"trained {args.ensemble} x {cfg.epochs} epochs in {train_s:.0f} s; "
        + (f"best validation epoch {', '.join(map(str, best_epoch))}" if val is not None
           else "kept the last averaged weights"))
    models = quantize_all(model, train, out, args.mode, seed=args.seed)

    # Final evaluation: the first and only time DS2 is read.
    t_pre = time.time()
    test = load(test_recs)
    pre_s += time.time() - t_pre
    results, preds = {}, {}
    for name, (path, predict) in models.items():
        with torch.inference_mode():
            pred = preds[name] = predict(test.x, test.rr).argmax(1)
        cm = confusion(test.y, pred)
        results[name] = {"metrics": metrics(cm), "report": classification_report(test.y, pred),
                         "size_bytes": path_size(path), "file": path.name}
        plot_confusion(cm, out / f"confusion_{name}.png", f"DS2, {args.mode}, {name}")
    plot_history(history, out / "training_curves.png")
    write_predictions(out / "predictions.csv", test, preds)
    quant_table = quantization_table(results)
    f = results["float32"]["metrics"]
    summary = {"mode": args.mode, "seed": args.seed, "best_epoch": best_epoch, "history": history,
               "test_counts": test.counts(), "preprocess_seconds": pre_s, "train_seconds": train_s,
               "total_seconds": time.time() - t0,
               **{name: {"size_bytes": r["size_bytes"], "file": r["file"], **r["metrics"]}
                  for name, r in results.items()}}
    write_json(out / "metrics.json", summary)
    write_report(out / "report.md", f"Deep-ECG run: {args.mode} mode, seed {args.seed}",
                 {k: config[k] for k in sorted(config)}, results, history, extra=quant_table)
    print("\n" + quant_table.split("\n", 2)[2], flush=True)
    print(f"\nDS2 float32: S F1 {f['per_class']['S']['f1']:.3f}  V F1 {f['per_class']['V']['f1']:.3f}  "
        f"macro-F1(N,S,V) {f['macro_f1_nsv']:.3f}; outputs in {out} ({time.time() - t0:.0f} s)")
    return summary


def write_predictions(path, beats, preds: dict) -> None:
    """One row per DS2 beat: record, R-peak sample, reference class and each model's class."""
    import pandas as pd

    from outputs import atomic_path

    names = list(dl.CLASSES)
    frame = pd.DataFrame({"record": beats.record, "sample": beats.sample,
                          "reference": [names[i] for i in beats.y],
                          **{f"pred_{k}": [names[i] for i in p] for k, p in preds.items()}})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("predict", "stream", "adapt"):  # sub-commands: predict.py, stream.py, adapt.py
        import importlib

        return importlib.import_module(argv[0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    made = {}  # what a failed run takes away again: no folder marked as holding a run that is not there
    stop = lambda signum, frame: sys.exit(128 + signum)  # noqa: E731  (kill, a closed terminal: undone as Ctrl-C)
    signals = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    before = ({s: signal.signal(s, stop) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}  # (nohup)
              if threading.current_thread() is threading.main_thread() else {})

    def undo(exc: BaseException) -> None:
        for s in before:  # a second signal does not cut the undo short
            signal.signal(s, signal.SIG_IGN)
        undo_failed_run(args, made)
        if isinstance(exc, SystemExit):  # SIGTERM, SIGHUP
            print("stopped", file=sys.stderr)

    try:
        work = lambda: (check_args(args, made), run(args, made))  # noqa: E731
        return run_command(work, lambda exc: cannot_read_or_write(exc, args), errors=(ConfigError, dl.DataError),
                           cleanup=undo)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def cannot_read_or_write(exc: OSError, args) -> str | None:
    """The error line for an OSError naming a file (a folder not writable, a full disk; a file unreadable), or
    None for one that names none."""
    if not exc.filename:
        return None
    path = Path(exc.filename2 or exc.filename).resolve()
    ours = any(path.is_relative_to(Path(d).resolve()) for d in (args.out, args.cache_dir) if d)
    return (f"cannot {'write' if ours else 'read'} {exc.filename2 or exc.filename}: {exc.strerror or exc}"
            + ("; choose another --out or --cache-dir, or free space there" if ours else ""))


def undo_failed_run(args, made: dict) -> None:
    """After a failed run (`made` from check_args and run): the config.json it wrote (the mark of a run) removed,
    so the same command can run again, and each folder it made removed if still empty. An --overwrite run that
    wrote its config.json has replaced the earlier run's mark: the folder then holds no run. Nothing else is
    removed: files written before the failure are whole (written under a temporary name, then renamed) and stay."""
    from contextlib import suppress

    if "checked" not in made:  # refused before the folders were looked at
        return
    out = Path(args.out)
    with suppress(OSError):  # (what cannot be removed stays; the error printed is the run's own)
        if "config" in made and (out / "config.json").stat().st_ino == made["config"]:  # this run's, no other's
            (out / "config.json").unlink()
    for path, key in ((out, "out"), (Path(args.cache_dir), "cache")):
        with suppress(OSError):
            if made.get(key) and path.is_dir() and not any(path.iterdir()):
                path.rmdir()


if __name__ == "__main__":
    sys.exit(main())
