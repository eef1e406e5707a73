"""R-peak detection for recordings without beat annotations: a causal, streaming QRS detector.

One algorithm serves every caller. `QRSDetector` is fed samples a chunk at a time (any size, down
to one sample) and reports each R-peak once it is decided; `detect_r_peaks` feeds a whole record in
one chunk. Every stage is causal and carries its state between chunks, so the peaks do not depend
on how the signal was cut (tests/test_stream.py).

The method follows Pan & Tompkins (1985): band-pass 5-15 Hz, five-point derivative, squaring,
150 ms moving-window integration, then adaptive signal/noise peak levels with a 200 ms refractory
period and a slope test against T waves (a first QRS in the first 0.5 s waits for the next one: it
may be the T wave of a beat from before the recording began, or the end of a QRS the start cut).
Each detection is then placed on the largest deflection of the 0.5-50 Hz band-passed signal just
before it, where MIT-BIH's annotations sit.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

try:  # the kernel behind scipy.signal.sosfilt, called directly for small chunks
    from scipy.signal._sosfilt import _sosfilt
except ImportError:  # pragma: no cover - another scipy layout: the public function, slower
    _sosfilt = None

MATCH_S = 0.15  # s: EC57 tolerance for matching a detection to a reference beat

DETECT_BAND_HZ = (5.0, 15.0)  # QRS energy band
INTEGRATION_S = 0.15  # moving-window integration
PEAK_HALF_S = 0.2  # an integrated-signal peak is the largest within +-200 ms: the refractory period
LEARN_S = 2.0  # signal and noise levels are learned over the first 2 s
T_WAVE_S = 0.36  # a peak this soon after a QRS must show a steep slope to count as one
FIRST_S = 0.5  # a first QRS this early may be the T wave of a beat before the recording began
SEARCH_S = 0.25  # the R-peak is sought this far back from the integrated-signal peak
MIN_LAG_S = 0.05  # ... and in the first PEAK_HALF_S, at least this far back (see QRSDetector._classify)
THRESHOLD = 0.25  # a peak is QRS above noise level + THRESHOLD x (signal level - noise level)
RR_AVG = 8  # RR intervals in the running average
RR_MISSED = 1.66  # a gap this many average RRs long means a beat was missed: halve the threshold
PEAK_BLOCK = 1 << 16  # samples searched for candidate peaks at once
CANDIDATE_BLOCK = 4096  # candidate peaks whose buffer values are gathered at once


class SosFilter:
    """Causal IIR filter (second-order sections) carrying its state between chunks.

    Runs scipy's own sosfilt kernel without the per-call checks of the public function: the same
    arithmetic as scipy.signal.sosfilt, in microseconds per call even for one-sample chunks.
    """

    def __init__(self, sos: np.ndarray):
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.zi = np.zeros((1, self.sos.shape[0], 2))

    def settle(self, level: float) -> None:
        """State of a filter that has seen `level` forever: a constant input then gives no transient."""
        self.zi[0] = signal.sosfilt_zi(self.sos) * level

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.array(x, dtype=np.float64, ndmin=2, order="C", copy=True)
        if _sosfilt is None:
            y[0], self.zi[0] = signal.sosfilt(self.sos, y[0], zi=self.zi[0])
        else:
            _sosfilt(self.sos, y, self.zi)
        return y[0]


class QRSDetector:
    """Causal R-peak detector fed one chunk of samples at a time.

    `feed(chunk)` returns the sample indices (from the start of the stream) of the R-peaks decided
    with this chunk, in order; `flush()` decides the last ones at the end of a recording. A peak
    is decided PEAK_HALF_S after its integrated-signal maximum, which follows the R-peak by
    about 0.1 s.
    """

    def __init__(self, fs: float, record_decisions: bool = True):
        self.fs = float(fs)
        self.record_decisions = record_decisions  # a stream that runs for days keeps no list per beat
        self.half = int(round(PEAK_HALF_S * fs))
        self.search = int(round(SEARCH_S * fs))
        self.learn = int(round(LEARN_S * fs))
        self.t_wave = int(round(T_WAVE_S * fs))
        self.first = int(round(FIRST_S * fs))
        self.min_lag = int(round(MIN_LAG_S * fs))
        self.n_int = max(int(round(INTEGRATION_S * fs)), 1)
        from data_loader import bandpass_sos

        self._qrs = SosFilter(signal.butter(2, DETECT_BAND_HZ, btype="bandpass", fs=fs, output="sos"))
        self._ecg = SosFilter(bandpass_sos(fs))
        self._gain = fs / 8.0  # five-point derivative (2x[n] + x[n-1] - x[n-3] - 2x[n-4]) fs/8
        self._q_tail = np.zeros(4)  # last 4 band-passed samples (derivative)
        self._sq_tail = np.zeros(self.n_int)  # last n_int cumulative sums of the squared derivative
        self.filtered = np.zeros(0)  # 0.5-50 Hz band-passed samples of the last chunk
        # Buffers of recent values, buf[k] is sample self._start + k.
        self._start = 0
        self._buf_mwi = np.zeros(0)
        self._buf_slope = np.zeros(0)  # |derivative|
        self._buf_ecg = np.zeros(0)  # |0.5-50 Hz band-passed|
        self._n = 0  # samples fed so far
        self._next = 0  # first sample not yet tested as a candidate peak
        self.spk = self.npk = 0.0
        self._last_qrs = None  # (integrated-peak sample, its slope)
        self._last_r = -1  # last R-peak reported
        self.decided_at: list[int] = []  # for each R-peak reported (record_decisions): samples needed to decide it
        self._reported = False  # an R-peak has been reported
        self.waited: list[int] = []  # R-peaks reported only with the next QRS (held early first QRSs)
        self._rr = []  # the last RR_AVG intervals between integrated-signal peaks, samples
        self._round_off = 0.0  # deflections this small are round-off (set from the first sample)
        self._held_once = False  # a first QRS has been held already
        self._held = None  # an early first QRS (R-peak, its slope), until the next one tells it from a T wave

    def feed(self, chunk) -> list[int]:
        x = np.asarray(chunk, dtype=np.float64).reshape(-1)
        if len(x) == 0:
            return []
        if self._n == 0 and np.isfinite(x[0]):
            # A DC offset (ADC counts, a DC-coupled front end) would enter as a step at the first
            # sample: a transient larger than any QRS, learned as the signal level, after which no
            # beat reaches the threshold. Start both bands as if the first sample had always been
            # (as data_loader.bandpass does in real-time mode).
            self._qrs.settle(x[0])
            self._ecg.settle(x[0])
            # What float round-off leaves of that offset in the filters: no deflection of a heart
            # (relative to the offset, so any unit or scale of the signal gives the same beats).
            self._round_off = 1e-9 * abs(x[0])
        q = self._qrs(x)
        e = self.filtered = self._ecg(x)
        qq = np.concatenate([self._q_tail, q])
        d = (2.0 * qq[4:] + qq[3:-1] - qq[1:-3] - 2.0 * qq[:-4]) * self._gain
        self._q_tail = qq[-4:]
        # Moving-window integration as a difference of running sums, summed in stream order so
        # that any cut of the stream gives the same values.
        cs = np.cumsum(np.concatenate([self._sq_tail[-1:], d * d]))[1:]
        allcs = np.concatenate([self._sq_tail, cs])
        m = (allcs[self.n_int:] - allcs[:-self.n_int]) / self.n_int
        self._sq_tail = allcs[-self.n_int:]
        self._buf_mwi = np.concatenate([self._buf_mwi, m])
        self._buf_slope = np.concatenate([self._buf_slope, np.abs(d)])
        self._buf_ecg = np.concatenate([self._buf_ecg, np.abs(e)])
        self._n += len(x)
        return self._decide(final=False)

    def flush(self) -> list[int]:
        """Decide the peaks left at the end of the recording (no look-ahead remains)."""
        return self._decide(final=True)

    def earliest_undecided(self) -> int:
        """The earliest R-peak (a sample of the detector's stream) it may still report: a held first QRS, or one
        found from the candidates still to test (at most SEARCH_S before them)."""
        earliest = self._next - self.search - 1
        return max(min(earliest, self._held[0]) if self._held is not None else earliest, 0)

    def _decide(self, final: bool) -> list[int]:
        h, start, m = self.half, self._start, self._buf_mwi
        stop = self._n if final else self._n - h  # candidates need h samples after them
        out = []
        if stop > self._next:
            cand = self._next + _local_peaks(m, self._next - start, stop - start, h)
            for block in range(0, len(cand), CANDIDATE_BLOCK):
                self._decide_block(cand[block:block + CANDIDATE_BLOCK], out)
            self._next = stop
        if final and self._held is not None:  # no QRS followed: nothing to test it against
            self._report(out, self._held[0], self._n)
            self.waited.append(self._held[0])
            self._held = None
        # Keep what later decisions can still look at.
        keep_from = max(min(self._next - h, self._next - self.search - 1), 0)
        if self._next <= self.learn:
            keep_from = 0  # learning decisions look back to the first sample
        if keep_from > self._start:
            cut = keep_from - self._start
            self._buf_mwi, self._buf_slope, self._buf_ecg = (
                self._buf_mwi[cut:], self._buf_slope[cut:], self._buf_ecg[cut:])
            self._start = keep_from
        return out

    def _decide_block(self, cand: np.ndarray, out: list) -> None:
        """Decide the candidate peaks `cand` (samples, in order), appending the R-peaks reported to out."""
        h, start, m = self.half, self._start, self._buf_mwi
        # What each decision reads of the buffers, gathered at once (the loop below is plain Python): the
        # integrated peak, and over the SEARCH_S before it the steepest slope and the first largest deflection.
        back = np.maximum(cand[:, None] - start + np.arange(-self.search, 1), 0)  # (a buffer's start: its first)
        peaks = np.sqrt(m[cand - start]).tolist()
        slopes = self._buf_slope[back].max(axis=1).tolist()
        highest = (start + back[np.arange(len(cand)), self._buf_ecg[back].argmax(axis=1)]).tolist()
        for i, peak, slope, r_high in zip(cand.tolist(), peaks, slopes, highest):
            if i < h and i + h >= self._n:
                continue  # a recording under 0.4 s: too little on either side to call a peak
            # Learning phase: levels from what has been seen when the peak is decided.
            decided = min(i + h, self._n)
            if i < self.learn:
                upto = decided - start
                self.spk = np.sqrt(0.25 * m[:upto].max())
                self.npk = np.sqrt(0.5 * m[:upto].mean())
            r = self._classify(i, peak, slope, r_high)
            if r is None:
                continue
            at = min(i + h + 1, self._n)
            cut_qrs = False  # the held first QRS and this one: parts of one QRS the start cut
            if self._held is not None:
                r0, slope0 = self._held
                self._held = None
                cut_qrs = r - r0 < self.half
                if slope0 >= 0.5 * self._last_qrs[1] and not cut_qrs:
                    self._report(out, r0, at)
                    self.waited.append(r0)
                else:  # a T wave, or the end of a QRS cut by the start (its next part came within
                    self._rr = []  # the refractory period): its interval to this one is no RR interval
            if (not self._reported and r < self.first
                    and (cut_qrs or not self._held_once)):
                # A recording that starts between a QRS and its T wave shows the T wave first,
                # with no QRS before it to test its slope against: the next QRS decides. After
                # a cut QRS's first part, its next part is tested so in turn; after a T wave,
                # this is the QRS that told it, and counts.
                self._held = (r, self._last_qrs[1])
                self._held_once = True
                continue
            self._report(out, r, at)

    def _report(self, out: list, r: int, at: int) -> None:
        """R-peak r (sample), decided once `at` samples were fed."""
        out.append(r)
        self._reported = True
        if self.record_decisions:
            self.decided_at.append(at)

    def _classify(self, i: int, peak: float, slope: float, r_high: int):
        """Signal or noise for the integrated-signal peak at sample i; its R-peak if signal. peak: its RMS
        slope (the square root of the integrated signal: V beats do not dwarf the others); slope: the
        steepest |derivative| and r_high the first largest |deflection| of the SEARCH_S up to i."""
        start = self._start
        thr = self.npk + THRESHOLD * (self.spk - self.npk)
        late = (self._last_qrs is not None and len(self._rr) == RR_AVG
                and i - self._last_qrs[0] > RR_MISSED * (sum(self._rr) / RR_AVG))  # (integers: np.mean's value)
        if late:  # a beat was probably missed: the next one may be smaller (Pan-Tompkins' searchback)
            thr *= 0.5
        lo = max(i - self.search, start)
        is_qrs = peak > thr
        if is_qrs and self._last_qrs is not None and i - self._last_qrs[0] < self.t_wave:
            is_qrs = slope >= 0.5 * self._last_qrs[1]  # a T wave rises slowly
        if not is_qrs:
            self.npk = 0.125 * peak + 0.875 * self.npk
            return None
        lo = max(lo, self._last_r + 1)  # R-peaks strictly in order
        # the first largest from lo on: r_high unless the last R-peak cut the span (then sought again)
        r = r_high if r_high >= lo else lo + int(np.argmax(self._buf_ecg[lo - start:i - start + 1]))
        if self._buf_ecg[r - start] <= self._round_off:
            return None  # a flat line's float residue (its integrated peak is ~1e-21)
        if i < self.half and i - r < self.min_lag:
            # An integrated-signal peak follows its R-peak by about 0.1 s. One this early that follows
            # it by less peaked because the integration window was still filling: the end of a QRS
            # or a T wave the recording's start cut, not a QRS of its own.
            return None
        self.spk = (0.25 * peak + 0.75 * self.spk) if late else (0.125 * peak + 0.875 * self.spk)
        if self._last_qrs is not None:
            self._rr = (self._rr + [i - self._last_qrs[0]])[-RR_AVG:]
        self._last_qrs = (i, slope)
        self._last_r = r
        return r


def _local_peaks(m: np.ndarray, lo: int, hi: int, h: int) -> np.ndarray:
    """Offsets k (from lo) of the j in lo..hi-1 with m[j] above the h values before it and not
    below the h after it (fewer at the buffer's ends; the first sample, with none before it, is
    no peak). A QRS at a recording's very start has its integrated peak in the first h samples:
    it counts, with the samples there are to compare (its R-peak may still be a T wave's, which
    the held-first-QRS test tells)."""
    if hi - lo <= 32:  # a few samples: a plain loop is faster than building windows
        out = []
        n = len(m)
        for j in range(max(lo, 1), hi):
            v = m[j]
            if v <= m[j - 1] or (j + 1 < n and v < m[j + 1]):
                continue  # not above its neighbours (most samples): no need for the window maxima
            if v > m[max(j - h, 0):j].max() and (j + 1 >= n or v >= m[j + 1:j + h + 1].max()):
                out.append(j - lo)
        return np.asarray(out, dtype=np.int64)
    lo0, lo = lo, max(lo, 1)
    out = []
    for a in range(lo, hi, PEAK_BLOCK):  # in blocks: the work arrays stay small whatever the chunk
        b = min(a + PEAK_BLOCK, hi)
        # m from a - h to b + h, -inf past the buffer's ends, cut into blocks of h samples: the maximum of
        # any h in a row is that of a block's suffix and the next block's prefix (van Herk / Gil-Werman)
        v = np.full(-(-(b - a + 2 * h) // h) * h, -np.inf)
        v[max(h - a, 0):max(h - a, 0) + min(b + h, len(m)) - max(a - h, 0)] = m[max(a - h, 0):min(b + h, len(m))]
        rows = v.reshape(-1, h)
        prefix = np.maximum.accumulate(rows, axis=1).reshape(-1)
        suffix = np.maximum.accumulate(rows[:, ::-1], axis=1)[:, ::-1].reshape(-1)
        centre = v[h:h + b - a]
        # above the sample before and not below the one after (few samples are): only these are tested further
        p = np.flatnonzero((centre > v[h - 1:h - 1 + b - a]) & (centre >= v[h + 1:h + 1 + b - a])) + h
        before = np.maximum(suffix[p - h], prefix[p - 1])  # (np.maximum, as np.max, is NaN where one is)
        after = np.maximum(suffix[p + 1], prefix[p + h])
        out.append(p[(v[p] > before) & (v[p] >= after)] - h + a - lo0)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _append(buf: np.ndarray, new: np.ndarray) -> np.ndarray:
    return np.concatenate([buf, new]) if len(buf) else new


def detect_r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of an ECG lead sampled at fs Hz (the whole record in one chunk)."""
    x = np.asarray(x, dtype=np.float64)
    det = QRSDetector(fs)
    peaks = det.feed(x) + det.flush()
    return np.unique(np.asarray(peaks, dtype=np.int64))


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
