"""Recordings as they come: a lead off (flat line), a lead reversed (QRS pointing the other way) and stretches too
noisy to read. predict and stream call these after reading a recording; every threshold here was chosen on DS1
records (the training patients) only, never on DS2 (results/robustness.md tells how)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import data_loader as dl

# A lead off or a saturated amplifier holds one value: a run of equal samples this long (s) is a gap, like NaN.
# The longest run in the DS1 records is 0.74 s (116, clipped at its converter's top); in all 48, the same.
FLAT_S = 1.0

# Polarity: a linear classifier (polarity.json, made by lab/polarity.py from DS1 records upright and inverted) of
# the median beat of each POLARITY_SEGMENT_S of the zero-phase band-passed lead, POLARITY_BEFORE/AFTER samples
# around the R-peak, scaled to a peak of 1; the recording is inverted when the median of its segments' scores is > 0.
POLARITY_FILE = Path(__file__).with_name("polarity.json")
POLARITY_SEGMENT_S = 60.0
POLARITY_BEFORE, POLARITY_AFTER = 108, 180  # samples at 360 Hz: 300 ms before the R-peak, 500 ms from it

# Readability: each beat's correlation with its template (dl.template_match, the template-matching index of
# Orphanidou et al. 2015, NeuroKit2's ecg_quality 'templatematch'), its median over each QUALITY_SEGMENT_S; a
# segment whose median is under MIN_QUALITY is unreadable. Chosen on DS1 with muscle-like noise added
# (bench/robustness.py --records ds1): see results/robustness.md.
QUALITY_SEGMENT_S = 10.0
MIN_QUALITY = 0.5
WARN_UNREADABLE = 0.02  # a warning when more than this share of the recording is unreadable


def flat_stretches(x: np.ndarray, fs: float, seconds: float = FLAT_S) -> np.ndarray:
    """Mask of the samples in runs of one repeated value at least `seconds` long (x at its own rate fs Hz)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x), bool)
    edges = np.flatnonzero(np.r_[True, x[1:] != x[:-1], True])  # starts of runs, and the end
    length = np.diff(edges)
    long = (length >= seconds * fs) & ~np.isnan(x[edges[:-1]])  # (a NaN run is a gap already)
    mask = np.zeros(len(x) + 1, np.int64)
    np.add.at(mask, edges[:-1][long], 1)
    np.add.at(mask, edges[1:][long], -1)
    return np.cumsum(mask[:-1]) > 0


def polarity_features(x: np.ndarray, peaks: np.ndarray, gaps: np.ndarray | None = None) -> np.ndarray:
    """(segments, POLARITY_BEFORE + POLARITY_AFTER): the median beat of each POLARITY_SEGMENT_S of a 360 Hz lead,
    zero-phase band-passed as in training, less its median, scaled to a largest deflection of 1."""
    xf = dl.bandpass(x, dl.FS, "diagnostic")
    p = np.asarray(peaks, dtype=np.int64)
    p = p[(p >= POLARITY_BEFORE) & (p < len(x) - POLARITY_AFTER)]
    if gaps is not None and gaps.any() and len(p):  # beats whose span touches a gap say nothing
        c = np.concatenate([[0], np.cumsum(gaps)])
        p = p[c[p + POLARITY_AFTER] - c[p - POLARITY_BEFORE] == 0]
    if not len(p):
        return np.zeros((0, POLARITY_BEFORE + POLARITY_AFTER))
    beats = xf[p[:, None] + np.arange(-POLARITY_BEFORE, POLARITY_AFTER)]
    segment = p // int(POLARITY_SEGMENT_S * dl.FS)
    medians = np.stack([np.median(beats[segment == s], axis=0) for s in np.unique(segment)])
    medians -= np.median(medians, axis=1, keepdims=True)
    return medians / (np.abs(medians).max(axis=1, keepdims=True) + 1e-9)


def polarity_score(x: np.ndarray, peaks: np.ndarray, gaps: np.ndarray | None = None) -> float:
    """> 0: the lead's QRS complexes point the other way from the training records' (inverted); NaN: no beats."""
    f = polarity_features(x, peaks, gaps)
    if not len(f):
        return float("nan")
    w = json.loads(POLARITY_FILE.read_text(encoding="utf-8"))
    return float(np.median(f @ np.asarray(w["weights"]) + w["intercept"]))


def beat_quality(samples: np.ndarray, match: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(each beat's quality: the median template match of its QUALITY_SEGMENT_S segment, each segment's quality).
    A segment without a beat with a match has NaN quality: not judged (a gap, or nothing detected)."""
    size = int(QUALITY_SEGMENT_S * dl.FS)
    n_seg = max(-(-n_samples // size), 1)
    seg = np.clip(np.asarray(samples, dtype=np.int64) // size, 0, n_seg - 1)
    q = np.full(n_seg, np.nan)
    m = np.asarray(match, dtype=np.float64)
    ok = np.isfinite(m)
    if ok.any():
        order = np.lexsort((m[ok], seg[ok]))
        s, v = seg[ok][order], m[ok][order]
        starts = np.searchsorted(s, np.unique(s))
        counts = np.diff(np.r_[starts, len(s)])
        lo, hi = starts + (counts - 1) // 2, starts + counts // 2  # the middle one or two of each sorted segment
        q[np.unique(s)] = (v[lo] + v[hi]) / 2
    return q[seg], q


def unreadable_stretches(segment_quality: np.ndarray) -> list[tuple[float, float, float]]:
    """Runs of unreadable segments: (start s, end s, lowest quality), the worst (lowest) first."""
    bad = np.r_[False, segment_quality < MIN_QUALITY, False]
    starts, ends = np.flatnonzero(bad[1:] & ~bad[:-1]), np.flatnonzero(~bad[1:] & bad[:-1])
    runs = [(a * QUALITY_SEGMENT_S, b * QUALITY_SEGMENT_S, float(np.min(segment_quality[a:b])))
            for a, b in zip(starts, ends)]
    return sorted(runs, key=lambda r: (r[2], r[0] - r[1]))
