"""Recordings as they come: a lead off (flat line), a lead reversed (QRS pointing the other way) and stretches too
noisy to read. predict and stream call these after reading a recording; every threshold here was chosen on DS1
records (the training patients) only, never on DS2 (results/robustness.md tells how)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import data_loader as dl
from cli import warn

# A lead off or a saturated amplifier holds one value: a run of equal samples this long (s) is a gap, like NaN.
# The longest run in the DS1 records is 0.74 s (116, clipped at its converter's top); in all 48, the same.
FLAT_S = 1.0

# Polarity: a linear classifier (polarity.json, made by lab/polarity.py from DS1 records upright and inverted) of
# the median beat of each POLARITY_SEGMENT_S of the zero-phase band-passed lead, POLARITY_BEFORE/AFTER samples
# around the R-peak, scaled to a peak of 1; the recording is inverted when the median of its segments' scores is > 0.
POLARITY_FILE = Path(__file__).with_name("polarity.json")
POLARITY_SEGMENT_S = 60.0
POLARITY_BEFORE, POLARITY_AFTER = 108, 180  # samples at 360 Hz: 300 ms before the R-peak, 500 ms from it

# Readability: each beat's noise (beat_noise: high-frequency power beside its QRS, relative to the beat's size), its
# median over each QUALITY_SEGMENT_S; a segment whose median is over MAX_NOISE is unreadable. Chosen on the 22 DS1
# records (bench/robustness.py --records ds1): MAX_NOISE is the 99.5th percentile of their segments as recorded;
# it flags 99% of the stretches of muscle-like noise at 6 dB and all at 0 dB, and 5% of 108, 2% of 209, the DS1
# records with the most noise of their own (their largest segment: 0.013). A warning when more than WARN_UNREADABLE
# of a recording is unreadable (twice 108's share), or a stretch of WARN_STRETCH_S or more (three times the longest
# in a DS1 record as recorded: 20 s, 108 and 209). The beat-template correlation (dl.template_match; Orphanidou et
# al. 2015, NeuroKit2's 'templatematch') was tried first: on DS1 it flagged stretches of ectopic beats in clean
# records (108, 208: up to 25%) and missed most of the noise. Electrode motion (slow, 0.5-10 Hz) is not seen.
QUALITY_SEGMENT_S = 10.0
SEGMENT = int(QUALITY_SEGMENT_S * dl.FS)  # samples at 360 Hz
MAX_NOISE = 0.0056
WARN_UNREADABLE = 0.10
WARN_STRETCH_S = 60.0
QRS_HALF = 36  # samples (100 ms) each side of the R-peak: the QRS, left out of the noise measure


def flat_stretches(x: np.ndarray, fs: float, seconds: float = FLAT_S) -> np.ndarray:
    """Mask of the samples in runs of one repeated value at least `seconds` long (x at its own rate fs Hz)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(len(x), bool)
    edges = np.flatnonzero(np.r_[True, x[1:] != x[:-1], True])  # starts of runs, and the end
    length = np.diff(edges)
    long = (length >= seconds * fs) & ~np.isnan(x[edges[:-1]])  # (a NaN run is a gap already)
    if not long.any():  # (most stretches of a long recording read in pieces: no mask to build)
        return np.zeros(len(x), bool)
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
    return polarity_of(polarity_features(x, peaks, gaps))


def polarity_of(f: np.ndarray) -> float:
    """polarity_score from polarity_features' rows (of one stretch of a lead, or of several)."""
    if not len(f):
        return float("nan")
    w = json.loads(POLARITY_FILE.read_text(encoding="utf-8"))
    return float(np.median(f @ np.asarray(w["weights"]) + w["intercept"]))


def polarity_choice(rec, score: float, polarity: str) -> bool:
    """Whether to invert a lead whose polarity_score is `score` (predict --polarity: auto inverts when the score
    says the lead is reversed; keep never; invert always), warning when it is reversed."""
    flip = polarity == "invert" or (polarity == "auto" and score > 0)
    if score > 0:
        what = (f"{rec.name}: the QRS complexes of lead {rec.lead!r} point the other way from the training records' "
                f"(electrodes swapped?)")
        warn(f"{what}; inverted before classifying (--polarity keep classifies it as recorded)" if flip else
             f"{what}; classified as recorded, which loses ventricular beats: --polarity invert corrects it")
    return flip


def beat_noise(windows: np.ndarray) -> np.ndarray:
    """Each beat's noise: the mean squared second difference of its z-scored window (dl.beat_windows, or the CNN
    input's first channel) outside the QRS. Jagged muscle and electrode noise raise it; P and T waves hardly do."""
    w = np.asarray(windows, dtype=np.float64)
    w = w[:, 0] if w.ndim == 3 else w
    d2 = [np.diff(part, 2, axis=1) for part in (w[:, :dl.WINDOW_BEFORE - QRS_HALF], w[:, dl.WINDOW_BEFORE + QRS_HALF:])]
    return (np.concatenate(d2, axis=1) ** 2).mean(axis=1)


def segment_noise(samples: np.ndarray, noise: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(each beat's segment noise, each QUALITY_SEGMENT_S segment's): the median of beat_noise over the beats of
    the segment (samples: R-peaks at 360 Hz); NaN for a segment without beats (a gap, or nothing detected)."""
    q = np.full(max(-(-n_samples // SEGMENT), 1), np.nan)
    seg = segment_of(samples, len(q))
    present, medians = segment_medians(seg, noise)
    q[present] = medians
    return q[seg], q


def segment_of(samples: np.ndarray, n_seg: int) -> np.ndarray:
    """The QUALITY_SEGMENT_S segment (of n_seg) each R-peak (a sample at 360 Hz) is in."""
    return np.clip(np.asarray(samples, dtype=np.int64) // SEGMENT, 0, n_seg - 1)


def noise_at(segments: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """The noise of the segment each R-peak is in (segments: segment_noise's second)."""
    return segments[segment_of(samples, len(segments))]


def segment_medians(seg: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the segments present in seg, the median of the beats' noise in each)."""
    v = np.asarray(noise, dtype=np.float64)
    if not len(v):
        return np.zeros(0, np.int64), np.zeros(0)
    order = np.lexsort((v, seg))
    s, v = np.asarray(seg)[order], v[order]
    present, starts = np.unique(s, return_index=True)
    counts = np.diff(np.r_[starts, len(s)])
    lo, hi = starts + (counts - 1) // 2, starts + counts // 2  # the middle one or two of each sorted segment
    return present, (v[lo] + v[hi]) / 2


def readability(name: str, segments: np.ndarray, duration_s: float) -> tuple[float, list]:
    """(the seconds of a recording too noisy to read, its unreadable stretches, the worst first) from its segments'
    noise (segment_noise); warns when they are too many or one is too long."""
    unreadable_s = float((segments > MAX_NOISE).sum() * QUALITY_SEGMENT_S)
    worst = unreadable_stretches(segments)
    share = unreadable_s / duration_s
    if share > WARN_UNREADABLE or any(b - a >= WARN_STRETCH_S for a, b, _ in worst):
        a, b, _ = worst[0]
        warn(f"{name}: {100 * min(share, 1):.0f}% of the recording is too noisy to read (high-frequency "
             f"noise); the worst stretch is {clock(a)}-{clock(b)}; its beats are written with readable False")
    return unreadable_s, worst


def unreadable_stretches(segment_noise: np.ndarray) -> list[tuple[float, float, float]]:
    """Runs of unreadable segments: (start s, end s, largest noise), the worst (noisiest, then longest) first."""
    bad = np.r_[False, segment_noise > MAX_NOISE, False]
    starts, ends = np.flatnonzero(bad[1:] & ~bad[:-1]), np.flatnonzero(~bad[1:] & bad[:-1])
    runs = [(a * QUALITY_SEGMENT_S, b * QUALITY_SEGMENT_S, float(np.max(segment_noise[a:b])))
            for a, b in zip(starts, ends)]
    return sorted(runs, key=lambda r: (-r[2], r[0] - r[1]))


def clock(seconds: float) -> str:
    """h:mm:ss (or m:ss) of a time in seconds."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
