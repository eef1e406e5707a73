"""Beats as the model sees them: band-passed, z-scored windows with the patient's template, RR features, the
DS1/DS2 split, and the cache of MIT-BIH's preprocessed records (mitdb.py reads the records themselves). The facts
of the data (the split, the window's channels) live here and in mitdb.py, the settings (window, filter, features)
in config.py; the other stages import both from here."""
from __future__ import annotations

import bisect
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from config import (BANDPASS_HZ, DEFAULT_RR, FILTER_ORDER, LOCAL_BEATS, LONG_SECONDS, RR_FEATURES,  # noqa: F401
                    SLOW_QUANTILE, TEMPLATE_BEATS, WINDOW_AFTER, WINDOW_BEFORE)  # (dl.*, as the mitdb names)
from mitdb import (AAMI_MAP, CLASS_INDEX, CLASSES, FS, LEAD, PHYSIONET_DB, RECORD_EXTENSIONS,  # noqa: F401 (dl.*)
                   BYTES_PER_SAMPLE, DataError, check_records, ensure_records, read_beats, read_record, record_files,
                   short_signal_file, signals_complete)

WINDOW = WINDOW_BEFORE + WINDOW_AFTER  # 280 samples = 0.78 s
MODES = ("diagnostic", "realtime")
CACHE_VERSION = 3  # 2: windows carry the template channel; 3: the causal band-pass starts at the first sample

# de Chazal et al. 2004 inter-patient split; paced records 102 104 107 217 are in neither.
DS1 = ("101 106 108 109 112 114 115 116 118 119 122 124 "
       "201 203 205 207 208 209 215 220 223 230").split()
DS2 = ("100 103 105 111 113 117 121 123 200 202 210 212 "
       "213 214 219 221 222 228 231 232 233 234").split()
PACED = ("102", "104", "107", "217")
ALL_RECORDS = sorted(DS1 + DS2 + list(PACED))
# Whole DS1 patients held out for checkpoint choice with `main.py --validate`: together 198 S,
# 520 V beats. 220's are ordinary premature atrial beats; S beats hidden in bundle-branch block
# (118) or with a normal rhythm (124's junctional beats) gave a validation S F1 of 0 at every
# epoch, so the choice ignored S altogether. By default the product trains on all of DS1 and keeps
# the last averaged weights: holding these out cost S F1 in DS1 cross-validation (lab/README.md).
VALIDATION = ("220", "223", "124")
# Patient-wise cross-validation within DS1 (model selection never looks at DS2):
# four folds of whole records, each holding S and V beats.
# Bundle-branch-block records (109, 207 LBBB; 118, 124 RBBB) are spread so that every fold
# trains on wide-QRS normal beats.
DS1_FOLDS = (("209", "119", "116", "101", "115", "109"),
             ("201", "220", "208", "108", "122", "118"),
             ("207", "203", "112", "205", "230"),
             ("223", "124", "114", "106", "215"))

WINDOW_CHANNELS = ("beat", "template")  # the CNN's input: each beat window and its patient's template


# --------------------------------------------------------------------------- signal

def bandpass_sos(fs: float = FS) -> np.ndarray:
    return signal.butter(FILTER_ORDER, BANDPASS_HZ, btype="bandpass", fs=fs, output="sos")


def hold_gaps(x: np.ndarray, last: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x with its gaps filled, the gap mask). Causal: each NaN takes the last valid value before it (`last`:
    the one held from before x, as a stream's earlier chunk); a leading gap with none takes the first valid
    value, so no step at the signal's start rings into a made-up beat. Needs one valid value."""
    gaps = np.isnan(x)
    if not gaps.any():
        return x, gaps
    idx = np.where(gaps, -1, np.arange(len(x)))
    np.maximum.accumulate(idx, out=idx)
    if last is None:
        first = np.argmax(~gaps)
        idx[:first] = first
        return x[idx], gaps
    return np.where(idx >= 0, x[np.maximum(idx, 0)], last), gaps


def bandpass(x: np.ndarray, fs: float = FS, mode: str = "diagnostic") -> np.ndarray:
    """Butterworth 0.5-50 Hz: zero-phase in diagnostic mode, causal in real-time mode."""
    sos = bandpass_sos(fs)
    if mode == "diagnostic":
        return signal.sosfiltfilt(sos, x)
    if mode == "realtime":
        # Started as if the first sample had always been (causal: x[0] is seen first): a DC offset,
        # as raw ADC counts carry, then starts no transient. detect.QRSDetector starts the same way.
        level = x[0] if len(x) and np.isfinite(x[0]) else 0.0
        return signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * level)[0]
    raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")


def cut_windows(x: np.ndarray, r_peaks: np.ndarray) -> np.ndarray:
    """Windows of WINDOW samples around each R-peak, as they are in x, shape (beats, WINDOW).

    Beats near the record's edges are padded with the edge value.
    """
    padded = np.pad(x, (WINDOW_BEFORE, WINDOW_AFTER), mode="edge")
    return padded[r_peaks[:, None] + np.arange(WINDOW)[None, :]]  # offset by the padding


def beat_windows(x: np.ndarray, r_peaks: np.ndarray) -> np.ndarray:
    """cut_windows, z-scored per beat, shape (beats, WINDOW)."""
    w = cut_windows(x, r_peaks)
    w = w - w.mean(axis=1, keepdims=True)
    return (w / (w.std(axis=1, keepdims=True) + 1e-6)).astype(np.float32)


def beat_templates(windows: np.ndarray, beats: int = TEMPLATE_BEATS, from_beat: int = 0) -> np.ndarray:
    """The patient's own template for each beat: the sample-wise median of the windows of the last
    `beats` earlier beats. Past beats only, in both modes; the first beat is its own template. Rows before
    from_beat are left out (a stream asks for its newest beat only). Shape (len(windows) - from_beat, WINDOW)."""
    w = np.asarray(windows, dtype=np.float32)
    n = len(w)
    k = np.arange(from_beat, n)  # beat i's template is the median of the `beats` beats before it
    out = np.empty((len(k), w.shape[1]), np.float32)
    for kk in k[k < beats]:  # fewer than `beats` beats so far
        out[kk - from_beat] = np.median(w[:kk], axis=0) if kk else w[0]
    full = k[k >= beats]
    if len(full):
        if len(full) > 64:  # many beats (a recording): a running median down each sample column
            out[full - from_beat] = running_median(w[full[0] - beats:full[-1]], beats)
        else:  # a stream's newest beat, a few: np.median of each set (the same values, no set-up)
            past = np.lib.stride_tricks.sliding_window_view(w, beats, axis=0)  # past[j] = w[j:j+beats].T
            out[full - from_beat] = np.median(past[full - beats], axis=2)
    return out


def running_median(x: np.ndarray, size: int) -> np.ndarray:
    """Row j: the median of rows j .. j + size - 1 of x (rows, columns), sample-wise, for every j that has
    them all; the same values as np.median over each set (NaN where a set holds one), in x's dtype.
    Bottleneck's moving median (a double heap, O(log size) a row); a large x's columns split between the CPU's
    cores (bottleneck runs without Python's lock)."""
    import bottleneck

    x = np.asarray(x)
    rows = len(x) - size + 1
    if rows <= 0:
        return np.empty((0,) + x.shape[1:], x.dtype)

    def median(part):  # move_median's row i: the median of rows i - size + 1 .. i (NaN unless all are numbers)
        return bottleneck.move_median(part, size, axis=0)[size - 1:]

    pool, cores = _pool() if x.ndim == 2 and x.size >= PARALLEL_VALUES else (None, 1)
    if pool is None:
        return median(x).astype(x.dtype, copy=False)
    parts = pool.map(median, np.array_split(x, cores, axis=1))
    return np.concatenate(list(parts), axis=1).astype(x.dtype, copy=False)


PARALLEL_VALUES = 1 << 18  # running_median splits arrays of this many values or more between threads


@functools.cache
def _pool():
    """(a pool of one thread per core, made once (None on one core), the cores)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return ThreadPoolExecutor(cores) if cores > 1 else None, cores


def with_templates(windows: np.ndarray, beats: int = TEMPLATE_BEATS) -> np.ndarray:
    """Beat windows (beats, WINDOW) of one recording -> the CNN input (beats, 2, WINDOW): each window and
    its template (beat_templates)."""
    w = np.asarray(windows, dtype=np.float32).reshape(-1, WINDOW)
    return np.stack([w, beat_templates(w, beats)], axis=1)


def beat_inputs(x: np.ndarray, peaks: np.ndarray, mode: str, fs: float = FS, template_beats: int = TEMPLATE_BEATS,
                **rr) -> tuple[np.ndarray, np.ndarray]:
    """The model's inputs for the beats at `peaks` (samples) of an unfiltered lead x at fs Hz: (windows and their
    templates (beats, 2, WINDOW), RR features (beats, n)); training, predict and the tests make them here, the
    stream beat by beat from the same functions. rr: rr_features' keyword arguments."""
    return (with_templates(beat_windows(bandpass(x, fs, mode), peaks), template_beats),
            rr_features(peaks, fs, mode, **rr))


def template_match(inputs: np.ndarray) -> np.ndarray:
    """Correlation of each beat window with its template, from the CNN input (beats, 2, WINDOW): a
    signal quality index. Real ECG beats resemble their recent beats (the median over a record is 0.79
    or more in all 48 MIT-BIH records, detected R-peaks, either mode); beats found in noise or mains hum
    do not (about 0)."""
    b = inputs[:, 0] - inputs[:, 0].mean(axis=1, keepdims=True)
    t = inputs[:, 1] - inputs[:, 1].mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (b * t).sum(axis=1) / np.sqrt((b * b).sum(axis=1) * (t * t).sum(axis=1))


def _window_mean(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Mean of the known (non-NaN) values[start[i] .. i], for every i; NaN where none is known."""
    known = ~np.isnan(values)
    s = np.concatenate([[0.0], np.cumsum(np.where(known, values, 0.0))])
    c = np.concatenate([[0], np.cumsum(known)])
    i = np.arange(len(values))
    count = c[i + 1] - c[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (s[i + 1] - s[start]) / count, np.nan)


def _window_quantile(values: np.ndarray, start: np.ndarray, q: float, first: int = 0) -> np.ndarray:
    """Quantile q of the known (non-NaN) values[start[i] .. i], for every i >= first; NaN where none is known.
    np.quantile's default ('linear') of each window, from a sorted window kept as it slides: O(log w) a value."""
    n = len(values)
    out = np.full(n, np.nan)
    if first >= n:
        return out
    known = ~np.isnan(values)
    c = np.concatenate([[0], np.cumsum(known)])
    i = np.arange(first, n)
    s = np.minimum(np.asarray(start)[first:], i + 1)  # (a window that starts after its end holds nothing)
    count = c[i + 1] - c[s]
    # np.quantile's indices: below and above the virtual index (n - 1) q, each the last value at or past the end
    virtual = (count - 1) * np.float64(q)
    below = np.floor(virtual)
    past_end = virtual >= count - 1
    below[past_end] = -1
    above = np.where(past_end, -1, below + 1)
    gamma = virtual - below
    lo, hi = np.full(len(i), np.nan), np.full(len(i), np.nan)
    vals, s_list, b_list, a_list = values.tolist(), s.tolist(), below.astype(np.int64).tolist(), above.astype(np.int64).tolist()
    window, a, b = [], int(s[0]), int(s[0])  # window: the known values[a:b], sorted
    for j, (si, k0, k1) in enumerate(zip(s_list, b_list, a_list)):
        e = first + j + 1
        if si < a or si > b:  # not a slide of the last window: sorted afresh
            window = sorted(v for v in vals[si:e] if v == v)
        else:
            for v in vals[a:si]:
                if v == v:  # (NaN is never in the window)
                    del window[bisect.bisect_left(window, v)]
            for v in vals[b:e]:
                if v == v:
                    bisect.insort(window, v)
        a, b = si, e
        if window:
            lo[j], hi[j] = window[k0], window[k1]
    # np.quantile's linear interpolation, operation for operation (numpy's _lerp)
    diff = hi - lo
    with np.errstate(invalid="ignore"):
        out[first:] = np.where(gamma >= 0.5, hi - diff * (1 - gamma), lo + diff * gamma)
    out[first:][count == 0] = np.nan
    return out


def rr_features(r_peaks: np.ndarray, fs: float = FS, mode: str = "diagnostic", names=None,
                from_beat: int = 0, long_seconds: float = LONG_SECONDS,
                slow_quantile: float = SLOW_QUANTILE, broken=None) -> np.ndarray:
    """RR-interval features in seconds and ratios, shape (beats, len(names or RR_FEATURES[mode])).

    Averages run over past beats only (the local one over the last LOCAL_BEATS intervals,
    the long one over the last long_seconds), so a beat is premature relative to its
    patient's own rhythm; 'slow' is the slow_quantile quantile of the long span's intervals.
    Only 'post' (next beat) looks ahead, and only in diagnostic mode. An interval not known
    (before the first beat, after the last, or across a gap in the signal: `broken`, a mask of the beats whose
    preceding interval holds a gap) counts as DEFAULT_RR in a beat's own features and is left out of every
    average. Rows before from_beat are left out (a stream asks for its newest beat only: same values, less work).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    t = np.asarray(r_peaks, dtype=np.float64) / fs
    n = len(t)
    pre = np.concatenate([[np.nan], np.diff(t)])[:n]
    if broken is not None:  # a lead off for a minute is not a 60 s RR interval: not known
        pre[np.asarray(broken, dtype=bool)] = np.nan
    i = np.arange(n)
    names = tuple(names or RR_FEATURES[mode])
    needed = {part for name in names for part in name.split("/")}
    # Where the last long_seconds begin, for each beat: shared by 'long' and 'slow'.
    long_start = np.searchsorted(t, t - long_seconds, side="left") if needed & {"long", "slow"} else None
    make = {
        "pre": lambda: pre,
        "post": lambda: np.append(pre[1:], np.nan)[:n],
        "prev": lambda: np.insert(pre, 0, np.nan)[:n],
        "local": lambda: _window_mean(pre, np.maximum(i - LOCAL_BEATS + 1, 0)),
        "long": lambda: _window_mean(pre, long_start),
        "slow": lambda: _window_quantile(pre, long_start, slow_quantile, from_beat),
    }
    unknown = needed - set(make)
    if unknown:
        raise ValueError(f"unknown RR feature {', '.join(sorted(unknown))}; known: {', '.join(make)}")
    base = {k: make[k]() for k in needed}  # only what the feature list uses
    base = {k: np.where(np.isnan(v), DEFAULT_RR, v) for k, v in base.items()}
    if mode == "realtime" and any("post" in n for n in names):
        raise ValueError("post-RR needs the next beat: not available in real-time mode")
    cols = []
    for name in names:
        num, _, den = name.partition("/")
        cols.append(base[num] / base[den] if den else base[num])
    return np.stack(cols, axis=1).astype(np.float32).reshape(n, len(cols))[from_beat:]


def rr_history_start(r_peaks: np.ndarray, k: int, fs: float = FS) -> int:
    """The first of r_peaks that beat k's real-time RR features read: the beat before the last
    LONG_SECONDS (whose interval is the span's first), and at least LOCAL_BEATS + 2 beats back. A stream
    keeps the peaks from here on, so its work per beat does not grow with the time it has run;
    rr_features(r_peaks[start:k + 1], from_beat=k - start) gives beat k's row (tests/test_rr.py)."""
    t = np.asarray(r_peaks[:k + 1], dtype=np.float64) / fs
    long_start = int(np.searchsorted(t, t[k] - LONG_SECONDS, side="left"))
    return max(0, min(long_start, k - LOCAL_BEATS - 2) - 1)


# --------------------------------------------------------------------------- beats + cache

@dataclass
class Beats:
    """Every scored beat of a set of records."""

    x: np.ndarray  # (beats, 2, WINDOW) float32: z-scored window, its template (WINDOW_CHANNELS)
    rr: np.ndarray  # (beats, features) float32
    y: np.ndarray  # (beats,) int64 AAMI class index
    record: np.ndarray  # (beats,) record name
    sample: np.ndarray  # (beats,) R-peak sample index

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> dict[str, int]:
        return {c: int((self.y == i).sum()) for i, c in enumerate(CLASSES)}


def preprocess_record(path, mode: str, long_seconds: float = LONG_SECONDS, slow_quantile: float = SLOW_QUANTILE,
                      template_beats: int = TEMPLATE_BEATS) -> dict[str, np.ndarray]:
    """One record -> its beat windows, RR features, labels and R-peak samples (the keyword values: rr_features',
    beat_templates')."""
    x, fs = read_record(path)
    if fs != FS:
        raise DataError(f"record {path} is sampled at {fs} Hz; MIT-BIH training expects {FS} Hz.")
    peaks, labels = read_beats(path)
    if not len(peaks):
        raise DataError(f"record {path} has no beat annotations (its .atr holds none of the labels "
                        f"{' '.join(AAMI_MAP)}); leave it out of the records trained and scored")
    windows, rr = beat_inputs(x, peaks, mode, fs, template_beats, long_seconds=long_seconds, slow_quantile=slow_quantile)
    return {"x": windows, "rr": rr, "y": labels, "sample": peaks}


def cache_key(record: str, digest: str, mode: str, long_seconds: float = LONG_SECONDS,
              slow_quantile: float = SLOW_QUANTILE, template_beats: int = TEMPLATE_BEATS) -> str:
    spec = dict(version=CACHE_VERSION, record=record, digest=digest, mode=mode, fs=FS,
                lead=LEAD, band=BANDPASS_HZ, order=FILTER_ORDER, before=WINDOW_BEFORE,
                after=WINDOW_AFTER, rr=RR_FEATURES[mode], local=LOCAL_BEATS,
                long=long_seconds, slow_quantile=slow_quantile, default_rr=DEFAULT_RR,
                channels=WINDOW_CHANNELS, template_beats=template_beats)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _save_atomic(path: Path, arrays: dict) -> None:
    from outputs import atomic_path

    with atomic_path(path) as tmp:  # (its name ends in .npz: np.savez adds nothing)
        np.savez(tmp, **arrays)


def _load_cached(path: Path) -> dict[str, np.ndarray] | None:
    """A cache file's arrays, or None where it cannot be read whole (cut short, emptied): made again."""
    try:
        with np.load(path) as z:
            part = {k: z[k] for k in z.files}
    except Exception:  # np.load of a damaged file: EOFError, zipfile.BadZipFile, ValueError, OSError, ...
        return None
    return part if {"x", "rr", "y", "sample"} <= set(part) else None


def load_beats(data_dir, records, mode: str = "diagnostic", cache_dir=None, offline: bool = False,
               progress: bool = True, long_seconds: float = LONG_SECONDS, slow_quantile: float = SLOW_QUANTILE,
               template_beats: int = TEMPLATE_BEATS) -> Beats:
    """Beats of the given records, preprocessed once (preprocess_record, with the keyword values) and cached on
    disk under a key that holds everything that changes them."""
    from tqdm import tqdm

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    records = list(records)
    digests = ensure_records(data_dir, records, offline=offline)
    settings = dict(long_seconds=long_seconds, slow_quantile=slow_quantile, template_beats=template_beats)
    parts = []
    for rec in tqdm(records, desc=f"beats ({mode})", disable=not progress, leave=False):
        cached = Path(cache_dir) / f"{rec}-{cache_key(rec, digests[rec], mode, **settings)}.npz" if cache_dir else None
        part = _load_cached(cached) if cached is not None and cached.exists() else None
        if part is None:
            part = preprocess_record(Path(data_dir) / rec, mode, **settings)
            if cached is not None:
                _save_atomic(cached, part)
        part["record"] = np.full(len(part["y"]), rec)
        parts.append(part)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("x", "rr", "y", "record", "sample")}
    return Beats(**cat)
