"""R-peak detection for recordings without beat annotations (wfdb's GQRS, then peak alignment)."""
from __future__ import annotations

import numpy as np

REFINE_S = 0.05  # s: a detection moves to the largest |deflection| within this distance
MATCH_S = 0.15  # s: EC57 tolerance for matching a detection to a reference beat


def detect_r_peaks(x: np.ndarray, fs: float, refine: bool = True) -> np.ndarray:
    """R-peak sample indices of an ECG lead (mV) sampled at fs Hz.

    GQRS (wfdb.processing.gqrs_detect) finds the QRS complexes (on MIT-BIH it misses far fewer
    ventricular beats than XQRS: results/detection.md); each is then moved to the largest absolute
    deflection of the band-passed signal within REFINE_S, where the reference annotations sit.
    """
    import wfdb.processing

    from data_loader import bandpass

    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2 * fs:
        return np.zeros(0, dtype=np.int64)
    peaks = np.asarray(wfdb.processing.gqrs_detect(sig=x, fs=fs), dtype=np.int64)
    if not refine or len(peaks) == 0:
        return peaks
    half = int(round(REFINE_S * fs))
    y = np.abs(bandpass(x, fs, "diagnostic"))
    idx = np.clip(peaks[:, None] + np.arange(-half, half + 1)[None, :], 0, len(x) - 1)
    refined = idx[np.arange(len(peaks)), y[idx].argmax(axis=1)]
    return np.unique(refined)


def match_beats(reference: np.ndarray, detected: np.ndarray, fs: float, tolerance_s: float = MATCH_S):
    """Pair detections with reference beats within tolerance_s, each used once, nearest first.

    Returns (reference index, detected index) arrays of the matched pairs.
    """
    reference, detected = np.asarray(reference), np.asarray(detected)
    if len(reference) == 0 or len(detected) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tol = tolerance_s * fs
    # Candidate pairs: each detection with its nearest reference beat on either side.
    pos = np.searchsorted(reference, detected)
    cand = []
    for shift in (-1, 0):
        r = np.clip(pos + shift, 0, len(reference) - 1)
        cand.append(np.stack([r, np.arange(len(detected)), np.abs(reference[r] - detected)], axis=1))
    cand = np.concatenate(cand)
    cand = cand[cand[:, 2] <= tol]
    cand = cand[np.argsort(cand[:, 2], kind="stable")]
    # Greedy on distance: keep the first pair for each reference beat and each detection.
    _, first_r = np.unique(cand[:, 0], return_index=True)
    cand = cand[np.sort(first_r)]
    _, first_d = np.unique(cand[:, 1], return_index=True)
    cand = cand[np.sort(first_d)]
    return cand[:, 0].astype(np.int64), cand[:, 1].astype(np.int64)
