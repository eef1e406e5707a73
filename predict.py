"""Classify any recording: read it, resample to 360 Hz, filter as in training, detect beats, classify.

    python main.py predict --model runs/<run> --record path/to/record [--lead MLII]
    python main.py predict --model runs/<run>/model_int8_static.onnx --csv ecg.csv --fs 250 --column ECG
    python main.py predict --model runs/<run> --edf holter.edf --lead "ECG1"

Writes into --out (default predictions/<input name>): <name>_beats.csv (one row per beat),
<name>.aami (a WFDB annotation file: wfdb.rdann('<out>/<name>', 'aami')) and <name>_strip.png,
and prints a summary; the default folder is refused when it holds another input's outputs of the
same name. The model's mode (diagnostic or realtime) decides the filter and the RR features,
exactly as in training.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from contextlib import suppress
from pathlib import Path

import numpy as np

import data_loader as dl
from cli import HelpFormatter, InputError, run_command
from export import MODEL_FILES, Classifier, load_classifier, model_kind  # noqa: F401  (predict.load_classifier)
from outputs import discard
from quality import clock
from recordings import add_input_arguments, cannot_read, check_input_options, check_signal, prepare
MIN_BEATS = 3
SOURCE_MARK = ".source"  # in a default output folder: the input whose outputs it holds
LOW_CONFIDENCE = 0.6  # beats whose top probability is below this are counted as uncertain
ANNOTATION_EXT = "aami"
SYMBOLS = {"N": "N", "S": "S", "V": "V", "F": "F", "Q": "Q"}  # AAMI class -> WFDB beat symbol


# --------------------------------------------------------------------------- classification

def classify(x: np.ndarray, clf: Classifier, gaps: np.ndarray | None = None, peaks=None, noisy=None) -> dict:
    """Beats of a 360 Hz signal: R-peak samples, class indices, probabilities (NaN if unclassifiable).

    Peaks are detected (detect.detect_r_peaks) unless given. The RR intervals holding a gap are not known
    (dl.rr_features); nor, where `noisy` masks the beats in unreadable noise (quality.py), those from and to them
    (false beats among them would make the next minutes' averages).
    """
    if peaks is None:
        peaks = detect_peaks(x, gaps)
    peaks = np.asarray(peaks, dtype=np.int64)
    broken = gap_intervals(peaks, gaps)
    if noisy is not None and noisy.any():
        noisy = noisy | np.r_[False, noisy[:-1]]
        broken = noisy if broken is None else broken | noisy
    windows, rr = dl.beat_inputs(x, peaks, clf.mode, broken=broken)
    proba = clf.predict_proba(windows, rr).astype(np.float64) if len(peaks) else np.zeros((0, len(dl.CLASSES)))
    cls = proba.argmax(1) if len(peaks) else np.zeros(0, np.int64)
    if gaps is not None and gaps.any() and len(peaks):
        # A beat whose window or RR interval touches a gap cannot be trusted: Q, unclassifiable.
        c = np.concatenate([[0], np.cumsum(gaps)])
        lo = np.clip(np.concatenate([[0], peaks[:-1]]) - dl.WINDOW_BEFORE, 0, len(x))
        hi = np.clip(peaks + dl.WINDOW_AFTER, 0, len(x))
        bad = c[hi] - c[lo] > 0
        proba[bad] = np.nan
        cls[bad] = dl.CLASS_INDEX["Q"]
    return {"sample": peaks, "class": cls, "proba": proba, "match": dl.template_match(windows), "windows": windows,
            "rr": rr}


def detect_peaks(x: np.ndarray, gaps: np.ndarray | None = None) -> np.ndarray:
    """R-peak samples of a 360 Hz signal (detect.detect_r_peaks) whose gaps are held (recordings.prepare)."""
    from detect import detect_r_peaks

    # The detector starts at the first sample present: the flat fill of a leading gap would
    # take its learning phase (signal and noise levels learned on a flat line).
    start = int(np.argmax(~gaps)) if gaps is not None and gaps.any() else 0
    return detect_r_peaks(x[start:], dl.FS) + start


def analyse(rec, clf: Classifier, polarity: str = "auto") -> tuple[np.ndarray, dict]:
    """A recording read (recordings.Recording) -> (its 360 Hz signal as classified, its beats): prepared, its
    polarity checked (auto: inverted when the check says so; keep; invert), classified, each beat's readability
    judged (quality.py). Warns of what it finds."""
    import quality

    x, gaps = prepare(rec)
    peaks = detect_peaks(x, gaps)  # (the detector finds the same peaks either way up)
    flip = quality.polarity_choice(rec, quality.polarity_score(x, peaks, gaps), polarity)
    if flip:
        x = -x
    beats = classify(x, clf, gaps, peaks)
    noise, segments = quality.segment_noise(beats["sample"], quality.beat_noise(beats["windows"]), len(x))
    unreadable = noise > quality.MAX_NOISE
    if unreadable.any():
        # The intervals of beats in noise (false beats among them) are not known: the readable beats are classified
        # again without them; the unreadable keep their classes (flagged, and not made worse by a default interval).
        again = classify(x, clf, gaps, peaks, noisy=unreadable)
        for key in ("class", "proba", "rr"):
            again[key][unreadable] = beats[key][unreadable]
        beats = again
    beats["noise"], beats["readable"], beats["segment_noise"] = noise, ~unreadable, segments
    beats["polarity"] = "inverted" if flip else "as recorded"
    beats["unreadable_s"], beats["worst"] = quality.readability(rec.name, segments, len(x) / dl.FS)
    return x, beats


def gap_intervals(peaks: np.ndarray, gaps: np.ndarray | None) -> np.ndarray | None:
    """Mask of the beats whose interval from the previous beat holds a gap sample: an RR interval not known."""
    if gaps is None or not gaps.any() or not len(peaks):
        return None
    c = np.concatenate([[0], np.cumsum(gaps)])
    return c[peaks + 1] - c[np.concatenate([[0], peaks[:-1]])] > 0


# --------------------------------------------------------------------------- outputs

def beats_frame(beats: dict, fs_out: float):
    """One row per beat, samples in the input's own rate."""
    import pandas as pd

    scale = fs_out / dl.FS
    sample = np.round(beats["sample"] * scale).astype(np.int64)
    proba = beats["proba"]
    frame = pd.DataFrame({"time_s": np.round(beats["sample"] / dl.FS, 4), "sample": sample,
                          "class": [dl.CLASSES[i] for i in beats["class"]],
                          "confidence": np.round(proba.max(1) if len(proba) else np.zeros(0), 5)})
    for i, c in enumerate(dl.CLASSES):
        frame[f"p_{c}"] = np.round(proba[:, i], 5)
    frame["classifiable"] = ~np.isnan(proba).any(1)
    if "readable" in beats:  # (quality.py, from analyse)
        frame["noise"] = np.round(beats["noise"], 5)
        frame["readable"] = beats["readable"]
    if "polarity" in beats:
        frame["polarity"] = beats["polarity"]
    return frame


def plot_strip(x360: np.ndarray, beats: dict, path, start_s: float, seconds: float, title: str, offset: int = 0,
               length: int | None = None) -> None:
    """The ECG from start_s (s) for `seconds` with its beats' classes; x360 holds samples offset.. of a recording
    of `length` samples (default: all of it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"N": "tab:green", "S": "tab:orange", "V": "tab:red", "F": "tab:purple", "Q": "tab:gray"}
    n = offset + len(x360) if length is None else length
    lo = int(max(start_s, 0) * dl.FS)
    seconds = min(seconds, n / dl.FS)  # a huge --plot-seconds (1e308) overflowed int()
    hi = min(lo + int(seconds * dl.FS), n)  # run() refused a start past the end, before writing
    fig, ax = plt.subplots(figsize=(min(4 + 1.2 * seconds, 40), 3.2))
    t = np.arange(lo, hi) / dl.FS
    shown = x360[lo - offset:hi - offset]
    ax.plot(t, shown, lw=0.8, color="black")
    sel = (beats["sample"] >= lo) & (beats["sample"] < hi)
    top = np.nanmax(shown)
    for s, k in zip(beats["sample"][sel], beats["class"][sel]):
        c = dl.CLASSES[k]
        ax.axvline(s / dl.FS, color=colours[c], alpha=0.3, lw=1)
        ax.text(s / dl.FS, top, c, color=colours[c], ha="center", va="bottom", fontsize=9, weight="bold")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ECG")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    from outputs import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_annotations(out_dir: Path, name: str, beats: dict, fs_out: float) -> Path:
    """WFDB annotation file <out_dir>/<name>.aami, written whole or not at all."""
    from outputs import write_bytes

    sample = np.round(beats["sample"] * fs_out / dl.FS).astype(np.int64)
    symbols = [SYMBOLS[dl.CLASSES[k]] for k in beats["class"]]
    # WFDB record names hold letters, digits, '-' and '_' only: 'holter 01.csv' -> holter_01.aami
    final = out_dir / f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.{ANNOTATION_EXT}"
    write_bytes(final, annotation_bytes(sample, symbols, fs_out) if len(sample) else b"\x00\x00")  # (empty: no beat)
    return final


def annotation_bytes(sample: np.ndarray, symbols: list[str], fs: float) -> bytes:
    """The bytes wfdb.wrann(..., fs=fs) writes for these beats (its time-resolution note first), encoded at once: wrann
    builds a list of bytes per beat (180 MB for a week's)."""
    import wfdb
    from wfdb.io.annotation import ann_label_table

    note = wfdb.Annotation("x", ANNOTATION_EXT, np.zeros(1, np.int64), ["N"], fs=fs).calc_fs_bytes()
    head = np.concatenate([note, [0, 236, 255, 255, 255, 255, 1, 0]]).astype(np.uint8)  # wrann's end of the note
    store = dict(zip(ann_label_table["symbol"], ann_label_table["label_store"]))
    code = np.array([store[s] for s in symbols], np.int64)
    d = np.diff(np.asarray(sample, np.int64), prepend=0)
    if len(d) and (d.min() < 0 or d.max() > 0x7FFFFFFF):
        raise ValueError("annotation samples must increase, by under 2**31 at a time")
    skip = d > 1023  # the interval in a SKIP word pair before the beat (high 16 bits first), the beat's own 0
    rows = np.zeros((len(d), 8), np.uint8)
    rows[:, 1] = 236
    for col, shift in zip(range(2, 6), (16, 24, 0, 8)):
        rows[:, col] = (d >> shift) & 255
    rows[:, 6] = np.where(skip, 0, d & 255)
    rows[:, 7] = 4 * code + np.where(skip, 0, d >> 8)
    keep = np.ones((len(d), 8), bool)
    keep[~skip, :6] = False
    return head.tobytes() + rows[keep].tobytes() + b"\x00\x00"


def too_few_beats(rec, n: int, duration_s: float) -> str:
    return f"{rec.name}: only {n} beats detected in {duration_s:.1f} s; is lead {rec.lead!r} an ECG?"


def summary(beats: dict, duration_s: float, low: float = LOW_CONFIDENCE) -> str:
    counts = {c: int((beats["class"] == i).sum()) for i, c in enumerate(dl.CLASSES)}
    n = len(beats["class"])
    rr = np.diff(beats["sample"]) / dl.FS
    hr = 60.0 / np.median(rr) if len(rr) else float("nan")
    # each beat's top probability (NaN: unclassifiable), kept by chunked.py in place of the probabilities
    top = beats["confidence"] if "confidence" in beats else beats["proba"].max(1) if n else np.zeros(0)
    ok = ~np.isnan(top)
    conf = top[ok]
    unclassifiable = int((~ok).sum())
    rate = (f"heart rate {hr:.0f} bpm (median RR), {n / duration_s * 60:.0f} bpm (mean)" if len(rr)
            else "no heart rate (fewer than 2 beats)")
    lines = [f"{n} beats in {duration_s / 60:.1f} min; {rate}",
             "  " + "  ".join(f"{c} {counts[c]} ({100 * counts[c] / max(n, 1):.1f}%)" for c in dl.CLASSES),
             f"  {int((conf < low).sum())} beats with confidence below {low:g}"
             + (f"; {unclassifiable} unclassifiable (gaps)" if unclassifiable else "")]
    if "readable" in beats:
        lines.append(f"  lead {beats['polarity']}; {beats['unreadable_s']:.0f} s "
                     f"({100 * min(beats['unreadable_s'] / duration_s, 1):.1f}%) too noisy to read, "
                     f"{int((~beats['readable']).sum())} beats there"
                     + (f" (worst {clock(beats['worst'][0][0])}-{clock(beats['worst'][0][1])})"
                        if beats["worst"] else ""))
    return "\n".join(lines)


def run(args) -> dict:
    import chunked

    check_input_options(args)
    clf = load_classifier(args.model, model_kind(args.model, args.kind, "float32"))
    rec, lead, native = chunked.open_lead(args)
    from outputs import FolderError, atomic_path, make_folder

    out = Path(args.out or Path("predictions") / rec.name)
    existed = out.is_dir()
    try:
        make_folder(out, "--out")
    except FolderError as exc:
        raise InputError(str(exc)) from None
    # The default folder is named after the input; another input of the same name (a/100 and b/100)
    # would overwrite its outputs unseen. The folder remembers which input it holds.
    mark = out / SOURCE_MARK
    try:
        other = mark.read_text(encoding="utf-8").strip() if mark.is_file() else ""
    except (OSError, UnicodeError):  # unreadable: as if absent
        other = ""
    if args.out is None and rec.source:
        if other and other != rec.source:
            if not existed:
                out.rmdir()
            raise InputError(f"{out} holds the outputs of {other}, another input named {rec.name!r}; "
                             f"choose a folder for {rec.source} with --out (or remove {out})")

    written = []  # a failure part-way removes what was written: all the outputs or none
    strip = out / f"{rec.name}_strip.png"
    review = None
    try:
        with atomic_path(out / f"{rec.name}_beats.csv") as tmp, open(tmp, "w", newline="") as csv:
            def write(batch: dict) -> None:  # the beats CSV, batch by batch as they are classified
                beats_frame(batch, rec.fs).to_csv(csv, header=csv.tell() == 0, index=False)

            if lead is None:
                t0 = time.time()
                x, beats = analyse(rec, clf, args.polarity)
                n = len(x)
                if len(beats["sample"]) < MIN_BEATS:
                    raise InputError(too_few_beats(rec, len(beats["sample"]), n / dl.FS))
                seconds = time.time() - t0
                check_signal(rec, beats["match"])
                if not args.no_plot and args.plot_start >= n / dl.FS:
                    raise InputError(f"--plot-start {args.plot_start:g} s is past the end of the recording "
                                     f"({n / dl.FS:.1f} s)")
                if args.suggest:
                    from adapt import suggest_review

                    review = suggest_review(args.model, beats, args.suggest, rec.fs)
                write(beats)
                shown, offset = x, 0
            else:
                lead, polarity = chunked.pieces_polarity(rec, lead, args.polarity)
                n = len(lead)
                beats, shown, seconds = chunked.classify_input(args, clf, rec, lead, native,
                                                               lambda b: write({**b, "polarity": polarity}))
                beats["polarity"] = polarity
                offset = int(max(args.plot_start, 0) * dl.FS)
        written.append(out / f"{rec.name}_beats.csv")
        ann = write_annotations(out, rec.name, beats, rec.fs)
        written.append(ann)
        if review is not None:
            from review import write_review

            written += write_review(out, rec.name, x, beats, review, rec.fs)
        if not args.no_plot:
            plot_strip(shown, beats, strip, args.plot_start, args.plot_seconds,
                       f"{rec.name} ({rec.lead}), {clf.mode} model ({clf.kind})", offset, n)
        elif strip.is_file():
            strip.unlink()  # an earlier run's, showing other beats than these
        if rec.source and (args.out is None or other) and not mark.is_dir():  # marked, given with --out: re-marked
            with atomic_path(mark) as tmp:
                tmp.write_text(rec.source + "\n", encoding="utf-8")
    except BaseException as exc:
        if written and strip.is_file():  # an earlier run's strip, beside none of its other outputs
            written.append(strip)
        for path in written:
            path.unlink(missing_ok=True)
        if not existed:  # the folder this run made, if left empty
            with suppress(OSError):
                out.rmdir()
        if isinstance(exc, OSError):  # a folder not writable, a full disk, a folder named as an output file
            name = exc.filename2 or exc.filename
            raise InputError(f"cannot write the outputs in {out}: {exc.strerror or exc}"
                             f"{f' ({Path(name).name})' if name else ''}; choose another folder with --out") from None
        raise
    text = summary(beats, n / dl.FS, args.low_confidence)
    try:
        print(f"{rec.name}: {clf.mode} model {clf.path} ({clf.kind})\n{text}\n"
              f"classified in {seconds:.2f} s; outputs in {out} ({len(beats['sample'])} rows, annotations {ann.name})"
              + (f"\n{len(review)} beats to confirm in {rec.name}_review.csv (and .png): correct its class column, "
                 f"then `main.py adapt --model {args.model} --labels {out / (rec.name + '_review.csv')} ...`"
                 if review is not None else ""))
    except BrokenPipeError:  # the reader stopped (`| head`): the outputs are written; stop without a traceback
        discard(sys.stdout)
    except OSError as exc:  # standard output on a full disk: the outputs are written, the summary is lost
        discard(sys.stdout)
        raise InputError(f"cannot write the summary to standard output: {exc.strerror or exc}; the outputs are "
                         f"in {out}") from None
    return {"beats": beats, "out": out, "seconds": seconds}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py predict", description=__doc__.split("\n")[0], allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="run directory from `python main.py`, or a model file")
    p.add_argument("--kind", choices=list(MODEL_FILES), default=None,
                   help="which model of a run directory to use (default: float32)")
    add_input_arguments(p)
    p.add_argument("--out", default=None, help="output folder (default predictions/<name>)")
    p.add_argument("--plot-start", type=float, default=0.0, help="start of the PNG strip, s")
    p.add_argument("--plot-seconds", type=float, default=10.0, help="length of the PNG strip, s")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG strip")
    p.add_argument("--suggest", type=int, default=0, metavar="K",
                   help="also write a review list of the K beats most worth confirming (<name>_review.csv, .review, "
                        "_review.png), for `main.py adapt` (needs the run's model_float32.pt)")
    p.add_argument("--polarity", choices=("auto", "keep", "invert"), default="auto",
                   help="a lead whose QRS complexes point the other way from the training records' (electrodes "
                        "swapped): auto inverts it when the check finds it so (with a warning), keep classifies it as "
                        "recorded, invert always inverts; the beats CSV's polarity column says which was done")
    p.add_argument("--low-confidence", type=float, default=LOW_CONFIDENCE,
                   help="beats whose top probability is below this are counted as uncertain")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        if not (0 < args.plot_seconds < np.inf):
            raise InputError(f"--plot-seconds must be a positive number of seconds, got {args.plot_seconds}")
        if not (0 <= args.plot_start < np.inf):
            raise InputError(f"--plot-start must be a number of seconds from the start, at least 0; "
                             f"got {args.plot_start}")
        if args.suggest < 0:
            raise InputError(f"--suggest is a number of beats, at least 0; got {args.suggest}")
        if not 0 <= args.low_confidence <= 1:
            raise InputError(f"--low-confidence is a probability, between 0 and 1; got {args.low_confidence:g}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            run(args)

    # An OSError here: reading the input or the model (a failed write says so as an InputError)
    return run_command(work, lambda exc: cannot_read(exc, args))


if __name__ == "__main__":
    sys.exit(main())
