"""The beats a person reviews: the review list written for them (CSV, WFDB annotations, a PNG of each beat in its
context) and the labels they confirm read back (a CSV of beat times or samples and classes, or a WFDB annotation
file), each label matched to a detected beat."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

import data_loader as dl
from cli import InputError, warn
from outputs import atomic_path

MATCH_SECONDS = 0.15  # a label names the detected beat within this of its time
REVIEW_EXT = "review"  # the review list's WFDB annotation file: <name>.review
CONTEXT_SECONDS = 1.5  # each side of a suggested beat in the PNG
LABEL_COLUMNS = ("class", "label", "symbol", "aami")  # a labels CSV's class column, by any of these names
TIME_COLUMNS = {"time_s": 1.0, "time": 1.0, "seconds": 1.0, "sample": None}  # None: samples at the input's rate


def label_class(value, where: str) -> int:
    """An AAMI class (N S V F Q) or an MIT-BIH beat symbol (A, L, R, /, ...) -> its class index."""
    v = str(value).strip()  # (exactly: 'e' is an atrial escape beat, N; 'E' a ventricular one, V)
    if v in dl.AAMI_MAP:  # the AAMI letters are MIT-BIH symbols of their own class
        return dl.CLASS_INDEX[dl.AAMI_MAP[v]]
    raise InputError(f"{where}: unknown class {v!r}; use an AAMI class ({' '.join(dl.CLASSES)}) or an MIT-BIH beat "
                     f"symbol ({' '.join(s for s in dl.AAMI_MAP if s not in dl.CLASS_INDEX)})")


def read_labels_csv(path: Path, fs: float) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty: give a CSV with a header (time_s or sample, and class) and a row per "
                         f"confirmed beat") from None
    except (pd.errors.ParserError, UnicodeDecodeError, csv_error()) as exc:
        raise InputError(f"cannot read {path} as CSV ({str(exc).splitlines()[0][:120]}): give a header (time_s or "
                         f"sample, and class) and a row per confirmed beat") from None
    cols = {str(c).strip().lower(): c for c in frame.columns}
    cls_col = next((cols[c] for c in LABEL_COLUMNS if c in cols), None)
    time_col = next(((cols[c], scale) for c, scale in TIME_COLUMNS.items() if c in cols), None)
    if cls_col is None or time_col is None:
        raise InputError(f"{path}: its columns are {', '.join(map(str, frame.columns))}; a labels CSV needs a "
                         f"column time_s (or sample, at the recording's rate) and a column class (AAMI class or "
                         f"MIT-BIH symbol), as the review list predict --suggest writes")
    if not len(frame):
        raise InputError(f"{path} holds no labels (a header only): add a row per confirmed beat")
    col, scale = time_col
    try:
        t = frame[col].str.strip().astype(float).to_numpy()
    except ValueError:
        bad = next(i for i, v in enumerate(frame[col]) if not _is_number(v))
        raise InputError(f"{path} row {bad + 2}: {col} {frame[col].iloc[bad]!r} is not a number") from None
    if not np.isfinite(t).all():
        bad = int(np.flatnonzero(~np.isfinite(t))[0])
        raise InputError(f"{path} row {bad + 2}: {col} {frame[col].iloc[bad]!r} is not a time")
    seconds = t * scale if scale is not None else t / fs
    classes = np.array([label_class(v, f"{path} row {i + 2}") for i, v in enumerate(frame[cls_col])], np.int64)
    return seconds, classes


def csv_error():
    import csv

    return csv.Error


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def read_labels_wfdb(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A WFDB annotation file (record.atr, record.review, ...): its beat labels; other annotations (rhythm, noise)
    are not beats and are left out."""
    import wfdb

    hint = "give record.<extension> (e.g. 100.atr) or a CSV of time_s and class"
    with open(path, "rb") as f:  # the format ends with a zero annotation; wfdb would read any bytes as labels
        size = f.seek(0, 2)
        f.seek(max(size - 2, 0))
        if size % 2 or f.read(2) != b"\0\0":
            raise InputError(f"cannot read {path} as a WFDB annotation file (it lacks the format's end mark): {hint}")
    try:
        ann = wfdb.rdann(str(path.with_suffix("")), path.suffix.lstrip("."))
    except Exception as exc:
        raise InputError(f"cannot read {path} as a WFDB annotation file ({str(exc).splitlines()[0][:120] or 'empty'})"
                         f": {hint}") from None
    fs = float(ann.fs) if ann.fs else dl.FS
    keep = [i for i, s in enumerate(ann.symbol) if s in dl.AAMI_MAP]
    if not keep:
        raise InputError(f"{path} holds no beat labels (none of {' '.join(dl.AAMI_MAP)})")
    samples = np.asarray(ann.sample)[keep]
    return samples / fs, np.array([dl.CLASS_INDEX[dl.AAMI_MAP[ann.symbol[i]]] for i in keep], np.int64)


def read_labels(path, fs: float, duration_s: float, until_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(times in seconds, class indices) of the confirmed beats in a CSV or a WFDB annotation file; `fs`: the
    recording's rate (a CSV's sample column); `until_s`: only labels before this time."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file {path} not found: give the review list's CSV (predict --suggest), another CSV "
                         f"of time_s and class, or a WFDB annotation file (record.atr)")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty: give a CSV with a header (time_s or sample, and class) and a row per "
                         f"confirmed beat, or a WFDB annotation file")
    seconds, classes = (read_labels_csv(path, fs) if path.suffix.lower() in (".csv", ".tsv", ".txt")
                        else read_labels_wfdb(path))
    outside = np.flatnonzero((seconds < 0) | (seconds > duration_s))
    if len(outside):
        raise InputError(f"{path}: {len(outside)} label(s) outside the recording (0 to {duration_s:.1f} s), the "
                         f"first at {seconds[outside[0]]:.3f} s: are these labels another recording's, or samples "
                         f"at another rate?")
    if until_s is not None:
        keep = seconds < until_s
        seconds, classes = seconds[keep], classes[keep]
        if not len(seconds):
            raise InputError(f"{path} holds no labels before --until {until_s:g} s")
    return seconds, classes


def match_labels(seconds: np.ndarray, peaks: np.ndarray, path, tolerance: float = MATCH_SECONDS,
                 ignore_unmatched: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(each label's detected beat, an index into peaks (360 Hz samples); which labels those are): the nearest beat,
    which must lie within `tolerance` seconds. A label on no detected beat is an InputError naming it, or, with
    ignore_unmatched (a reference annotation of every beat, some of which the detector missed), left out with a
    warning."""
    t = np.asarray(peaks) / dl.FS
    pos = np.clip(np.searchsorted(t, seconds), 1, max(len(t) - 1, 1))
    left, right = t[pos - 1], t[np.minimum(pos, len(t) - 1)]
    nearest = np.where(np.abs(seconds - left) <= np.abs(right - seconds), pos - 1, np.minimum(pos, len(t) - 1))
    off = np.abs(t[nearest] - seconds)
    lost = np.flatnonzero(off > tolerance)
    listed = ", ".join(f"{seconds[i]:.3f} s" for i in lost[:5]) + (" ..." if len(lost) > 5 else "")
    if len(lost) and not ignore_unmatched:
        raise InputError(f"{path}: {len(lost)} label(s) on no detected beat (none within {1000 * tolerance:.0f} ms): "
                         f"{listed}; label the beats the detector found (predict's <name>_beats.csv or the review "
                         f"list lists them), or leave such labels out with --ignore-unmatched")
    if len(lost):
        warn(f"{path}: left out {len(lost)} label(s) on no detected beat: {listed}")
    kept = off <= tolerance
    return nearest[kept], np.flatnonzero(kept)


# --------------------------------------------------------------------------- the review list

def review_frame(beats: dict, idx: np.ndarray, fs_out: float, why: list[str]):
    """The review list: the chosen beats with the model's class, for a person to confirm or correct."""
    import pandas as pd

    s = beats["sample"][idx]
    proba = beats["proba"][idx]
    return pd.DataFrame({"time_s": np.round(s / dl.FS, 4), "sample": np.round(s * fs_out / dl.FS).astype(np.int64),
                         "class": [dl.CLASSES[k] for k in beats["class"][idx]],
                         "confidence": np.round(np.nan_to_num(proba.max(1)) if len(proba) else np.zeros(0), 3),
                         "why": why})


def write_review(out: Path, name: str, x360: np.ndarray, beats: dict, frame, fs_out: float) -> list[Path]:
    """<name>_review.csv (correct its class column, then pass it to `main.py adapt --labels`), <name>.review (WFDB
    annotations of the suggested beats: wfdb.rdann('<out>/<name>', 'review')) and <name>_review.png (each beat in
    its context). Each written whole or not at all; returns the paths."""
    import wfdb

    csv = out / f"{name}_review.csv"
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)
    ann = out / f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.{REVIEW_EXT}"
    with tempfile.TemporaryDirectory(dir=out, prefix=".wrann-") as tmp:
        written = Path(tmp) / ann.name
        if len(frame):
            wfdb.wrann(ann.stem, REVIEW_EXT, frame["sample"].to_numpy(), list(frame["class"]), write_dir=tmp,
                       fs=fs_out)
        else:
            written.write_bytes(b"\x00\x00")
        written.replace(ann)
    png = out / f"{name}_review.png"
    plot_review(x360, frame, png, name)
    return [csv, ann, png]


def plot_review(x360: np.ndarray, frame, path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(frame), 1)
    cols = min(5, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
    half = int(CONTEXT_SECONDS * dl.FS)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (i, row) in zip(axes.flat, frame.reset_index(drop=True).iterrows()):
        centre = int(round(row["time_s"] * dl.FS))
        lo, hi = max(centre - half, 0), min(centre + half, len(x360))
        ax.axis("on")
        ax.plot((np.arange(lo, hi) - centre) / dl.FS, x360[lo:hi], lw=0.7, color="black")
        ax.axvline(0, color="tab:red", alpha=0.4, lw=1)
        ax.set_title(f"{i + 1}: {row['time_s']:.2f} s, model: {row['class']} ({row['confidence']:.2f})", fontsize=8)
        ax.set_yticks([])
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{name}: beats to confirm (correct the class column of {name}_review.csv)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
