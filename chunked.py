"""Recordings of any length in bounded memory: read, fill, filter, detect and classify in pieces of PIECE samples,
with the beats of predict.classify on the whole recording (tests/test_chunked.py).

The zero-phase filter of each piece runs over MARGIN samples more on either side, where the transients of the
piece's edges have decayed below float round-off; the causal filter and the detector carry their state from piece
to piece, as the stream does; a beat's window is cut once the samples after its R-peak are filtered; templates and
RR features carry the beats they look back at; beats are classified in predict_proba's own batches of BATCH, so a
beat's probabilities are those of a whole-recording run. A lead is read as recordings.prepare makes it whole: its
flat stretches as gaps (FlatAsGaps), at another rate resampled to 360 Hz piece by piece with the same samples
(Resampled), a WFDB record or an EDF file read piece by piece (WfdbLead, EdfReader).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import signal

import data_loader as dl
import quality
from cli import InputError
from detect import QRSDetector, SosFilter
from recordings import MAINS_SEGMENT, MAINS_SEGMENTS, MIN_SECONDS, check_signal, prepare, read_input

PIECE = 1 << 20  # samples read and filtered at a time (48.5 min at 360 Hz)
# Samples filtered with a piece on either side (91 s): the zero-phase filter's response to the cut at a piece's
# edge has decayed by 1e-30 there (its slowest pole, 0.5 Hz), far below float64's round-off.
MARGIN = 1 << 15
BATCH = 4096  # beats classified at once: a multiple of OnnxModel's and predict_proba's batches (same probabilities)


class ArrayLead:
    """A lead in memory at 360 Hz: the filled signal and its gap mask (recordings.prepare)."""

    def __init__(self, x: np.ndarray, gaps: np.ndarray | None = None):
        self.x, self.gaps = x, gaps

    def __len__(self) -> int:
        return len(self.x)

    def read(self, a: int, b: int) -> np.ndarray:
        """Samples a..b-1, NaN in the gaps."""
        if self.gaps is None or not self.gaps[a:b].any():
            return self.x[a:b]
        return np.where(self.gaps[a:b], np.nan, self.x[a:b])


class WfdbLead:
    """One lead of a WFDB record at its own rate, read piece by piece (wfdb's sampfrom/sampto)."""

    def __init__(self, path, lead: str, length: int):
        self.path, self.lead, self.length = path, lead, length

    def __len__(self) -> int:
        return self.length

    def read(self, a: int, b: int) -> np.ndarray:
        import wfdb

        try:
            rec = wfdb.rdrecord(str(self.path), sampfrom=a, sampto=b, channel_names=[self.lead])
        except Exception as exc:
            raise InputError(f"cannot read the signal of record {self.path}: {exc}") from None
        return rec.p_signal[:, 0].astype(np.float64)


class FlatAsGaps:
    """A lead at fs Hz whose flat stretches (one value for quality.FLAT_S or more: a lead off) read as NaN gaps, as
    recordings.prepare makes them. Each read looks FLAT_S further on either side: enough to tell whether the run of
    equal values holding a sample read is that long."""

    def __init__(self, lead, fs: float = dl.FS):
        self.lead, self.fs, self.reach = lead, fs, int(np.ceil(quality.FLAT_S * fs)) + 1

    def __len__(self) -> int:
        return len(self.lead)

    def read_marked(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(samples a..b-1 as recorded, NaN where missing; the mask of those in flat stretches)."""
        s, e = max(a - self.reach, 0), min(b + self.reach, len(self.lead))
        raw = self.lead.read(s, e)
        return raw[a - s:b - s], quality.flat_stretches(raw, self.fs)[a - s:b - s]

    def read(self, a: int, b: int) -> np.ndarray:
        raw, flat = self.read_marked(a, b)
        return np.where(flat, np.nan, raw) if flat.any() else raw


class EdfReader:
    """One signal of an EDF file (recordings.open_edf), read piece by piece in physical units. Each read maps the file
    afresh (edfio's lazy loading) and lets it go: the pages read of a file mapped for good would stay in memory."""

    def __init__(self, edf):
        self.edf = edf

    def __len__(self) -> int:
        return self.edf.n

    def read(self, a: int, b: int) -> np.ndarray:
        import warnings

        import edfio

        from recordings import edf_values

        with warnings.catch_warnings():  # (edfio's word on the file's length: open_edf heard it)
            warnings.simplefilter("ignore")
            signal = edfio.read_edf(self.edf.path, True, header_encoding="latin-1").signals[self.edf.index]
            digital = signal.get_digital_slice(a / self.edf.fs, b / self.edf.fs)
        return edf_values(digital, self.edf.calibration)


class Resampled:
    """A lead at fs Hz read at 360 Hz, sample for sample as recordings.resample resamples it whole: each read
    resamples the stretch around it, starting on the polyphase filter's period and wide enough for its taps, a gap
    at its edge bridged to the nearest samples present beyond it, as the whole lead's gaps are."""

    def __init__(self, lead, fs: float):
        from fractions import Fraction

        frac = Fraction(dl.FS / fs).limit_denominator(1000)  # (recordings.resample's)
        self.lead, self.fs, self.up, self.down = lead, fs, frac.numerator, frac.denominator
        self.n = -(-len(lead) * self.up // self.down)  # resample_poly's length
        self.reach = 10 * max(self.up, self.down) // self.up + 2  # input samples the filter's taps reach, and more

    def __len__(self) -> int:
        return self.n

    def read(self, a: int, b: int) -> np.ndarray:
        n_in = len(self.lead)
        if b <= a:
            return np.zeros(0)
        i0 = max((a * self.down // self.up - self.reach) // self.down * self.down, 0)
        i1 = min(-(-b * self.down // self.up) + self.reach + 1, n_in)
        x = self.lead.read(i0, i1)
        gaps = np.isnan(x)
        if gaps.any():  # bridged by straight lines between the samples present, as recordings.resample does
            known = np.flatnonzero(~gaps) + i0
            before = present(self.lead, i0 - 1, -1) if gaps[0] else None
            after = present(self.lead, i1, n_in) if gaps[-1] else None
            xp = np.concatenate([[before[0]] if before else [], known, [after[0]] if after else []])
            fp = np.concatenate([[before[1]] if before else [], x[~gaps], [after[1]] if after else []])
            if not len(xp):  # no sample present in the whole lead (prepare refuses one)
                return np.full(b - a, np.nan)
            x = np.interp(np.arange(i0, i1), xp, fp)
        y = signal.resample_poly(x, self.up, self.down)[a - i0 * self.up // self.down:][:b - a]
        # a sample is a gap where the input's sample nearest in time is (recordings.resample's rule, on fs / 360:
        # where limit_denominator rounded the rate, that grid drifts from the filter's, maybe out of the stretch)
        src = np.clip(np.round(np.arange(a, b) * self.fs / dl.FS).astype(int), 0, n_in - 1)
        lo, hi = int(src.min()), int(src.max()) + 1
        if i0 <= lo and hi <= i1:
            if gaps.any():
                y[gaps[src - i0]] = np.nan
        else:
            y[np.isnan(self.lead.read(lo, hi))[src - lo]] = np.nan
        return y


def read_marked(lead, a: int, b: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(samples a..b-1 of a lead as recorded; the mask of those in flat stretches, None where the lead has them as
    gaps already)."""
    return lead.read_marked(a, b) if hasattr(lead, "read_marked") else (lead.read(a, b), None)


@dataclass
class Seen:
    """What the checks of recordings.prepare and check_signal need of a lead, gathered piece by piece."""

    finite: bool = True
    n_valid: int = 0
    low: float = np.inf
    high: float = -np.inf
    missing: int = 0
    flat: int = 0  # samples in flat stretches (FlatAsGaps)
    mains: list = field(default_factory=list)  # the samples the mains check reads (recordings.mains_fraction)


def mains_rows(n: int, seen: Seen):
    """(mains_starts of an n-sample lead, the array seen.mains holds their segments in, filled as they are read)."""
    at = mains_starts(n)
    if at is None:
        return None, None
    rows = np.empty((len(at), MAINS_SEGMENT))  # one array (not a thousand small ones kept)
    seen.mains.append(rows.reshape(-1))
    return at, rows


def see(seen: Seen, lead, a: int, own: np.ndarray, flat, mains_at, rows) -> bool:
    """Add samples a.. of a lead as recorded (own; flat: those in flat stretches, or None) to what was seen of it
    (the checks of recordings.prepare and check_signal); False once a value is infinite."""
    gaps = np.isnan(own)
    valid = own[~gaps]
    seen.finite &= bool(np.isfinite(valid).all())
    seen.n_valid += len(valid)
    seen.missing += int(gaps.sum())
    if len(valid):
        seen.low, seen.high = min(seen.low, valid.min()), max(seen.high, valid.max())
    if not seen.finite:
        return False
    seen.flat += int(flat.sum()) if flat is not None else 0
    b = a + len(own)
    if mains_at is None:  # a lead of under MAINS_SEGMENTS segments: read whole
        seen.mains.append(own.copy())
    else:
        for i in np.flatnonzero((mains_at >= a) & (mains_at < b)).tolist():
            m = int(mains_at[i])
            rows[i] = (own[m - a:m - a + MAINS_SEGMENT] if m + MAINS_SEGMENT <= b
                       else read_marked(lead, m, m + MAINS_SEGMENT)[0])
    return True


def check_lead(lead, piece: int = PIECE) -> Seen:
    """What the checks need of a lead at its own rate (FlatAsGaps of the input's samples), read piece by piece: for a
    lead classified at another rate (Resampled)."""
    seen, n = Seen(), len(lead)
    mains_at, rows = mains_rows(n, seen)
    for a in range(0, n, piece):
        raw, flat = read_marked(lead, a, min(a + piece, n))
        if not see(seen, lead, a, raw, flat, mains_at, rows):
            break
    return seen


def present(lead, start: int, stop: int, block: int = 1 << 16) -> tuple[int, float] | None:
    """(index, value) of the first sample present (not NaN) from start towards stop (exclusive; either way), read
    `block` samples at a time; None: none is."""
    step = 1 if stop > start else -1
    for a in range(start, stop, step * block):
        b = a + step * block
        lo, hi = (a, min(b, stop)) if step > 0 else (max(b, stop) + 1, a + 1)
        x = lead.read(lo, hi)
        idx = np.flatnonzero(~np.isnan(x))
        if len(idx):
            i = idx[0] if step > 0 else idx[-1]
            return lo + int(i), float(x[i])
    return None


POLARITY_STRETCHES, POLARITY_STRETCH_S = 12, 300.0  # a long lead's polarity: judged on an hour of it, spread over it


def mains_starts(n: int) -> np.ndarray | None:
    """The starts of the Welch segments recordings.mains_fraction reads of an n-sample lead (None: all of it)."""
    nperseg = min(n, MAINS_SEGMENT)
    if (n - nperseg) // max(nperseg // 2, 1) + 1 > MAINS_SEGMENTS:
        return np.linspace(0, n - nperseg, MAINS_SEGMENTS).astype(np.int64)
    return None


class PieceClassifier:
    """predict.classify over a lead fed in pieces, in order; each batch of beats goes to on_batch(beats) as made."""

    def __init__(self, clf, n: int, start: int, on_batch=None):
        self.clf, self.mode, self.n, self.start = clf, clf.mode, n, start
        self.on_batch = on_batch
        self.detector = QRSDetector(dl.FS, record_decisions=False)
        self.sos = dl.bandpass_sos(dl.FS)
        self.causal = None  # the real-time band-pass, started at the first filled sample (dl.bandpass)
        self.buf, self.buf0 = np.zeros(0), 0  # band-passed samples buf0.. (what windows still to cut need)
        self.peaks: list[int] = []  # the R-peaks from beat `first` on (those later batches still read)
        self.first = 0
        self.windows: list[np.ndarray] = []  # the windows of beats done.. cut so far
        self.done = 0  # beats classified
        self.history = 0  # the first beat the next batch's RR features read (dl.rr_history_start)
        self.past = np.zeros((0, dl.WINDOW), np.float32)  # the last TEMPLATE_BEATS windows before beat `done`
        self.gap_runs = np.zeros((0, 2), np.int64)  # [start, end) of the gaps the next beats' checks may reach
        self.kept = Kept(max(n - start, 0) // (self.detector.half + 1) + 2, n)
        # readability (predict.analyse, quality.py): each QUALITY_SEGMENT_S segment's noise once its beats are all cut
        self.segments = np.full(max(-(-n // quality.SEGMENT), 1), np.nan)
        self.complete = 0  # segments before this one are complete
        self.pending = (np.zeros(0, np.int64), np.zeros(0))  # the R-peaks and noise of cut beats in segments after

    def feed(self, a: int, filled: np.ndarray, gaps: np.ndarray, filtered: np.ndarray | None = None) -> None:
        """Samples a.. of the lead: filled (gaps held), the gap mask, and (diagnostic mode) band-passed."""
        b = a + len(filled)
        if self.mode == "realtime":
            if self.causal is None:
                self.causal = SosFilter(self.sos)
                self.causal.settle(filled[0])
            filtered = self.causal(filled)
        self.buf = np.concatenate([self.buf, filtered])
        if gaps.any():
            edges = np.diff(np.concatenate([[0], gaps.astype(np.int8), [0]]))
            runs = np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1) + a
            self.gap_runs = np.concatenate([self.gap_runs, runs])
        if b > self.start:
            self._add(self.detector.feed(filled[max(self.start - a, 0):]))
        if b == self.n and self.n > self.start:
            self._add(self.detector.flush())
        self._cut(b)
        self._classify(final=b == self.n)

    def _add(self, found) -> None:
        self.peaks += [p + self.start for p in found]

    def _cut(self, b: int) -> None:
        """Cut the windows of the beats whose samples up to WINDOW_AFTER past the R-peak are filtered."""
        k0 = self.done + len(self.windows)
        ready = [p for p in self.peaks[k0 - self.first:] if p + dl.WINDOW_AFTER <= b or b == self.n]
        if ready:
            r = np.asarray(ready, np.int64) - self.buf0
            # edge padding as dl.cut_windows pads: only at the lead's ends, which the buffer then holds
            lo, hi = max(-int(r.min()) + dl.WINDOW_BEFORE, 0), max(int(r.max()) + dl.WINDOW_AFTER - len(self.buf), 0)
            seg = np.pad(self.buf, (lo, hi), mode="edge") if lo or hi else self.buf
            new = dl.beat_windows(seg, r + lo)
            self.windows += list(new)
            self._judge(np.asarray(ready, np.int64), quality.beat_noise(new), final=b == self.n)
        elif b == self.n:  # the lead's end with no beat left to cut: the last segments are complete too
            self._judge(np.zeros(0, np.int64), np.zeros(0), final=True)
        # keep what windows still to cut can need: from the first peak not cut, or the earliest the detector
        # may still report
        k = self.done + len(self.windows)
        keep = self.peaks[k - self.first] if k < self.found else self.start + self.detector.earliest_undecided()
        keep = max(min(keep, b) - dl.WINDOW_BEFORE - 1, 0)
        if keep > self.buf0:
            self.buf = self.buf[keep - self.buf0:]
            self.buf0 = keep

    def _judge(self, samples: np.ndarray, noise: np.ndarray, final: bool) -> None:
        """Beats cut (R-peaks, quality.beat_noise): the noise of each segment they complete (quality.segment_noise)."""
        s, v = np.concatenate([self.pending[0], samples]), np.concatenate([self.pending[1], noise])
        seg = quality.segment_of(s, len(self.segments))
        # beats come in order: the segments before the last cut beat's are complete (all of them at the end)
        upto = len(self.segments) if final else int(seg[-1]) if len(seg) else self.complete
        done = seg < upto
        present, medians = quality.segment_medians(seg[done], v[done])
        self.segments[present] = medians
        self.pending = (s[~done], v[~done])
        self.complete = max(self.complete, upto)

    def _classify(self, final: bool) -> None:
        # a batch once its beats' windows are cut and the beat after it is known ('post', the next gap check), with
        # its readability (its segment complete)
        while self.done < self.found and (
                final and self.done + len(self.windows) == self.found
                or len(self.windows) >= BATCH and self.found > self.done + BATCH
                and self.peaks[self.done + BATCH - self.first] // quality.SEGMENT < self.complete):
            self._batch(min(BATCH, len(self.windows)))

    def _batch(self, size: int) -> None:
        k0, k1 = self.done, self.done + size
        w = np.stack(self.windows[:size])
        del self.windows[:size]
        both = np.concatenate([self.past, w])
        inputs = np.stack([w, dl.beat_templates(both, from_beat=len(self.past))], axis=1)
        self.past = both[-dl.TEMPLATE_BEATS:]
        h0 = self.history
        peaks = np.asarray(self.peaks[h0 - self.first:k1 + 1 - self.first], np.int64)  # and the next, where known
        self.history = h0 + dl.rr_history_start(peaks, k0 - h0, dl.FS)
        peaks = peaks[self.history - h0:]
        broken = None
        if len(self.gap_runs) and len(peaks):  # an RR interval holding a gap is not known (predict.gap_intervals)
            prev = np.concatenate([[0], peaks[:-1]])
            j = np.searchsorted(self.gap_runs[:, 1], prev, side="right")  # the first gap ending after prev
            broken = j < len(self.gap_runs)
            broken[broken] = self.gap_runs[j[broken], 0] <= peaks[broken]
        rr = dl.rr_features(peaks, dl.FS, self.mode, from_beat=k0 - self.history, broken=broken)[:size]
        proba = self.clf.predict_proba(inputs, rr).astype(np.float64)
        sample = peaks[k0 - self.history:k1 - self.history].copy()
        noise = quality.noise_at(self.segments, sample)
        proba = self._readable_again(inputs, peaks, k0 - self.history, broken, rr, proba, noise > quality.MAX_NOISE)
        cls = proba.argmax(1)
        if len(self.gap_runs):
            # a beat whose window or RR interval touches a gap cannot be trusted: Q, unclassifiable
            prev = np.concatenate([[0] if k0 == 0 else peaks[k0 - 1 - self.history:k0 - self.history], sample[:-1]])
            lo = np.clip(prev - dl.WINDOW_BEFORE, 0, self.n)
            hi = np.clip(sample + dl.WINDOW_AFTER, 0, self.n)
            j = np.searchsorted(self.gap_runs[:, 1], lo, side="right")  # the first gap ending after lo
            bad = j < len(self.gap_runs)
            bad[bad] = self.gap_runs[j[bad], 0] < hi[bad]
            proba[bad] = np.nan
            cls[bad] = dl.CLASS_INDEX["Q"]
            # kept while a later batch's checks or RR features (from beat `history` on) may reach them
            self.gap_runs = self.gap_runs[self.gap_runs[:, 1] > min(sample[-1] - dl.WINDOW_BEFORE, peaks[0])]
        beats = {"sample": sample, "class": cls, "proba": proba, "match": dl.template_match(inputs), "noise": noise,
                 "readable": ~(noise > quality.MAX_NOISE)}
        if self.on_batch is not None:
            self.on_batch(beats)
        self.kept.add(sample=sample, cls=cls, confidence=proba.max(1), match=beats["match"])
        self.done = k1
        del self.peaks[:self.history - self.first]  # (a week's peaks are not kept twice: `kept` holds them)
        self.first = self.history

    def _readable_again(self, inputs, peaks, first, broken, rr, proba, unreadable):
        """predict.analyse's second look: the intervals from and to beats in noise are not known to the readable
        beats, which are classified again so; the unreadable keep their classes. peaks: the RR features' span, the
        batch from its `first` beat; broken: its gap intervals; rr, proba, unreadable: the batch's."""
        noisy = quality.noise_at(self.segments, peaks) > quality.MAX_NOISE
        if not noisy.any():
            return proba
        noisy |= np.r_[False, noisy[:-1]]
        rr2 = dl.rr_features(peaks, dl.FS, self.mode, from_beat=first,
                             broken=noisy if broken is None else broken | noisy)[:len(rr)]
        if self.clf.batch_dependent:
            again = self.clf.predict_proba(inputs, rr2).astype(np.float64)
        else:  # a beat's probabilities are its own: only the beats whose RR features changed are run again
            again, changed = proba.copy(), np.flatnonzero((rr2 != rr).any(1))
            if len(changed):
                again[changed] = self.clf.predict_proba(inputs[changed], rr2[changed])
        return np.where(unreadable[:, None], proba, again)

    @property
    def found(self) -> int:
        """R-peaks found so far."""
        return self.first + len(self.peaks)

    def result(self) -> dict:
        """The beats (sample, class, confidence, match, noise, readable: one array each) and their segments' noise
        (segment_noise)."""
        beats = self.kept.result()
        beats["noise"] = quality.noise_at(self.segments, beats["sample"])
        beats["readable"], beats["segment_noise"] = ~(beats["noise"] > quality.MAX_NOISE), self.segments
        return beats


class Kept:
    """What predict needs of every beat once all are classified (the annotation file, the summary, the checks), in
    14 to 18 bytes a beat (a week: 11 MB), in arrays made at first for at most `capacity` beats (no more than the
    detector can find: their untouched pages take no memory) and filled as batches come. (Many small arrays kept
    among each batch's large passing ones scattered the heap: a week's peak memory grew by 40 MB more.)"""

    def __init__(self, capacity: int, last_sample: int = 2 ** 32 - 1):
        self.n = 0
        self.arrays = {"sample": np.empty(capacity, np.uint32 if last_sample < 2 ** 32 else np.int64),
                       "class": np.empty(capacity, np.int8), "confidence": np.empty(capacity, np.float64),
                       "match": np.empty(capacity, np.float32)}

    def add(self, sample, cls, confidence, match) -> None:
        k0, k1 = self.n, self.n + len(sample)
        if k1 > len(self.arrays["sample"]):  # (not reached: the capacity is the detector's most)
            self.arrays = {k: np.resize(v, 2 * k1) for k, v in self.arrays.items()}
        for key, value in zip(("sample", "class", "confidence", "match"), (sample, cls, confidence, match)):
            self.arrays[key][k0:k1] = value
        self.n = k1

    def result(self) -> dict:
        out = {k: v[:self.n] for k, v in self.arrays.items()}
        out["sample"] = out["sample"].astype(np.int64)
        return out


def classify_lead(lead, clf, on_batch=None, check: bool = False, strip: tuple[int, int] | None = None,
                  piece: int = PIECE, margin: int = MARGIN):
    """predict.classify of a lead at 360 Hz (ArrayLead, FlatAsGaps, Resampled: NaN where missing) read in pieces:
    (the beats, as PieceClassifier.result, what was seen of the lead (Seen, gathered where `check`), the filled
    samples of `strip` (a span to draw))."""
    n = len(lead)
    seen = Seen()
    first = present(lead, 0, n, piece)
    if first is None:  # all missing or flat: what the checks need to say which
        return None, check_lead(lead, piece) if check else seen, None
    start, first_value = first
    mains_at, rows = mains_rows(n, seen) if check else (None, None)
    pc = PieceClassifier(clf, n, start, on_batch)
    last = first_value  # the value held before the span read next (its filled sample before it)
    shown = []
    for a in range(0, n, piece):
        b = min(a + piece, n)
        s, e = (max(a - margin, 0), min(b + margin, n)) if clf.mode == "diagnostic" else (a, b)
        raw, flat = read_marked(lead, s, e)
        own = raw[a - s:b - s]
        if check and not see(seen, lead, a, own, None if flat is None else flat[a - s:b - s], mains_at, rows):
            break  # (of the lead as recorded, as recordings.prepare checks it)
        if flat is not None and flat.any():
            raw = np.where(flat, np.nan, raw)
        filled, _ = dl.hold_gaps(raw, last) if np.isnan(raw).any() else (raw, None)
        gaps = np.isnan(raw[a - s:b - s])
        filtered = None
        if clf.mode == "diagnostic":
            filtered = signal.sosfiltfilt(pc.sos, filled)[a - s:b - s]
        nxt = max(b - margin, 0) if clf.mode == "diagnostic" else b
        last = filled[nxt - 1 - s] if nxt > s else last
        if strip is not None and strip[0] < b and strip[1] > a:
            shown.append(filled[max(strip[0], a) - s:min(strip[1], b) - s])
        pc.feed(a, filled[a - s:b - s], gaps, filtered)
    return pc.result(), seen, (np.concatenate(shown) if shown else None)


# --------------------------------------------------------------------------- predict's pieces

WHOLE_SECONDS = 4 * 3600.0  # s: longer recordings are classified in pieces, in bounded memory


def open_lead(args):
    """(the Recording, the lead to classify in pieces at 360 Hz, or None for one classified whole (analyse), the lead
    at its own rate whose checks are still to make, or None). A recording up to WHOLE_SECONDS, or one whose beats are
    to be suggested for review, is classified whole; a longer one in pieces, in bounded memory (a WFDB record or an EDF
    file also read piece by piece, at any rate), its polarity judged (pieces_polarity)."""
    from recordings import Recording, open_edf, open_wfdb

    if args.record and not args.suggest:
        path, lead, header, source = open_wfdb(args.record, args.lead)
        k = header.sig_name.index(lead)
        if ((header.samps_per_frame or [1] * (k + 1))[k] == 1 and header.fs
                and (header.sig_len or 0) > WHOLE_SECONDS * header.fs):
            native = FlatAsGaps(WfdbLead(path, lead, header.sig_len), float(header.fs))
            return Recording(None, float(header.fs), path.name, lead, source), at_360(native), native
    if args.edf and not args.suggest:
        edf = open_edf(args.edf, args.lead, lazy=True)
        if edf.n > WHOLE_SECONDS * edf.fs:
            native = FlatAsGaps(EdfReader(edf), edf.fs)
            return Recording(None, edf.fs, edf.path.stem, edf.lead, str(edf.path.resolve())), at_360(native), native
    rec = read_input(args)
    if args.suggest or len(rec.x) <= WHOLE_SECONDS * rec.fs:
        return rec, None, None
    x, gaps = prepare(rec)
    return rec, ArrayLead(x, gaps), None


def at_360(native: FlatAsGaps):
    """A lead at its own rate as classified: at 360 Hz."""
    return native if native.fs == dl.FS else Resampled(native, native.fs)


class InvertedLead:
    """A lead read upside down (its QRS complexes pointing the other way)."""

    def __init__(self, lead):
        self.lead = lead

    def __len__(self) -> int:
        return len(self.lead)

    def read(self, a: int, b: int) -> np.ndarray:
        return -self.lead.read(a, b)

    def read_marked(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray | None]:
        raw, flat = read_marked(self.lead, a, b)
        return -raw, flat


def lead_polarity(lead, stretches: int = POLARITY_STRETCHES, seconds: float = POLARITY_STRETCH_S) -> float:
    """quality.polarity_score of a lead read in pieces: over `stretches` stretches of `seconds` spread evenly over
    it (all of it when it is shorter than they are together)."""
    from predict import detect_peaks

    n, span = len(lead), int(seconds * dl.FS)
    starts = (np.arange(0, n, span) if n <= stretches * span
              else np.linspace(0, n - span, stretches).astype(np.int64))
    features = []
    for s in starts:
        raw = lead.read(int(s), min(int(s) + span, n))
        if np.isnan(raw).all() or len(raw) < dl.FS * 10:
            continue
        x, gaps = dl.hold_gaps(raw)
        features.append(quality.polarity_features(x, detect_peaks(x, gaps), gaps))
    return quality.polarity_of(np.concatenate(features) if features else np.zeros((0, 1)))


def pieces_polarity(rec, lead, polarity: str):
    """The lead as it is to be classified in pieces (inverted where predict.analyse would invert it, with its
    warnings) and what was done ('inverted' or 'as recorded')."""
    flip = quality.polarity_choice(rec, lead_polarity(lead) if polarity != "invert" else float("nan"), polarity)
    return (InvertedLead(lead) if flip else lead), ("inverted" if flip else "as recorded")


def classify_input(args, clf, rec, lead, native, on_batch):
    """The beats of a lead at 360 Hz (classify_lead), the input's checks made (recordings.prepare's, check_signal) on
    `native`, the lead at its own rate (open_lead; None: made already); on_batch(beats) writes each batch as made.
    Returns (beats, the strip's samples or None, seconds)."""
    import dataclasses

    from predict import MIN_BEATS, too_few_beats

    from recordings import check_rate, check_values, say_resampling, warn_flat, warn_missing

    def report(seen: Seen) -> None:
        check_values(rec, len(native), seen.finite, seen.n_valid, seen.high - seen.low)
        if seen.flat:
            warn_flat(rec, seen.flat)
        if seen.missing:
            warn_missing(rec, seen.missing)

    t0 = time.time()
    n = len(lead)
    if native is not None:
        check_rate(rec.fs, rec.name, "the file's header")
        if len(native) / rec.fs < MIN_SECONDS:
            check_values(rec, len(native), True, len(native), 1.0)
    if not args.no_plot and args.plot_start >= n / dl.FS:
        raise InputError(f"--plot-start {args.plot_start:g} s is past the end of the recording ({n / dl.FS:.1f} s)")
    lo = int(max(args.plot_start, 0) * dl.FS)
    strip = None if args.no_plot else (lo, min(lo + int(min(args.plot_seconds, n / dl.FS) * dl.FS), n))
    in_loop = native is not None and rec.fs == dl.FS  # the lead classified is the lead as recorded: seen as it is read
    if native is not None and not in_loop:  # first a pass over the lead at its own rate, as prepare checks it first
        seen = check_lead(native)
        report(seen)
        say_resampling(rec)
    beats, seen_in_loop, shown = classify_lead(lead, clf, on_batch, in_loop, strip)
    if in_loop:
        seen = seen_in_loop
        report(seen)
    if beats is None or len(beats["sample"]) < MIN_BEATS:  # (None: no sample but in flat stretches)
        raise InputError(too_few_beats(rec, 0 if beats is None else len(beats["sample"]), n / dl.FS))
    beats["unreadable_s"], beats["worst"] = quality.readability(rec.name, beats["segment_noise"], n / dl.FS)
    seconds = time.time() - t0  # read, resample, filter, detect, classify (and write the beats)
    # the mains check reads these samples as it reads the whole lead (recordings.mains_fraction)
    mains = (seen.mains[0] if len(seen.mains) == 1 else np.concatenate(seen.mains)) if native is not None else None
    if native is not None:
        seen.mains.clear()  # (not held twice)
    check_signal(dataclasses.replace(rec, x=mains) if native is not None else rec, beats["match"])
    return beats, shown, seconds
