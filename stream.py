"""Causal streaming classification: feed samples as they arrive, get each beat's label once decided.

    python main.py stream --model runs/<realtime run> --record data/mitdb/100 --speed 10
    python main.py stream --model runs/<realtime run> --csv ecg.csv --fs 250   # or --edf holter.edf

`StreamClassifier` runs the real-time pipeline incrementally: the causal band-pass filter and the
QRS detector carry their state from chunk to chunk, RR features and the template beat use past beats
only (the stream keeps the last TEMPLATE_BEATS windows), and a beat is
classified as soon as the 150 samples after its R-peak (the window's post-R part) have arrived.
Its output equals the batch real-time pipeline's (`predict.classify`) whatever the chunk size
(tests/test_stream.py, bench/streaming.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

import data_loader as dl
from outputs import discard
from detect import FIRST_S, QRSDetector


@dataclass
class Beat:
    sample: int  # R-peak, samples from the start of the stream (360 Hz)
    label: int  # AAMI class index; Q when unclassifiable (a gap in the signal)
    proba: np.ndarray  # (5,) class probabilities, NaN when unclassifiable
    decided_at: int  # samples received when the label was emitted
    waited: bool = False  # an early first beat that waited for the next one (detect.FIRST_S): off the bound
    match: float = float("nan")  # correlation of the beat's window with its template (dl.template_match)

    @property
    def latency_s(self) -> float:
        return (self.decided_at - self.sample) / dl.FS

    @property
    def confidence(self) -> float:
        return float(np.max(self.proba))


def stated_latency_s() -> float:
    """Worst algorithmic delay from an R-peak to its label in real-time mode.

    The label needs both the window's post-R part (the WINDOW_AFTER samples from the R-peak on)
    and the detector's decision, which comes with the sample PEAK_HALF_S after the
    integrated-signal peak; that peak lies at most SEARCH_S after the R-peak (the detector looks
    that far back for it). The causal band-pass filter adds no wait of its own: its group delay
    (a few ms in the QRS band) only shifts where the detected peak lies, and that shift is part of
    the window the model was trained on. One exception, not counted here: a first beat in the
    recording's first detect.FIRST_S waits for the next beat (it may be a T wave; see detect.py).
    """
    det = QRSDetector(dl.FS)
    return max(dl.WINDOW_AFTER, det.search + det.half + 1) / dl.FS


class StreamClassifier:
    """Real-time classifier fed chunks of 360 Hz samples of one lead (NaN = missing sample)."""

    def __init__(self, classifier):
        if classifier.mode != "realtime":
            raise dl.DataError(f"streaming needs a real-time model (trained with --mode realtime); "
                               f"{classifier.path} is a {classifier.mode} model, whose post-RR feature "
                               f"and zero-phase filter need the future")
        self.clf = classifier
        self.detector = QRSDetector(dl.FS, record_decisions=False)
        self._last = None  # last valid sample (gap filling holds it)
        self._offset = None  # stream sample of the detector's first: the first valid one (batch: predict.classify)
        self._start = 0  # buffers hold samples _start.. of the stream
        self._xf = np.zeros(0)  # band-passed signal
        self._gap = np.zeros(0, bool)
        self._first = None  # first band-passed sample: edge padding before the stream's start
        self._n = 0
        self.peaks: list[int] = []  # the R-peaks the next beats' RR features and gap checks still need
        self._broken: list[bool] = []  # for each decided peak: a gap in its RR interval (not known; dl.rr_features)
        self._pending: list[int] = []  # indices into self.peaks awaiting their window
        self._past = deque(maxlen=dl.TEMPLATE_BEATS)  # the last beats' windows: the template's source

    def feed(self, chunk) -> list[Beat]:
        x = np.asarray(chunk, dtype=np.float64).reshape(-1)
        if len(x) == 0:
            return []
        if self._offset is None:
            # A leading gap: nothing to detect or filter yet. Its samples are held at the first valid
            # one, whose band-passed value is 0 (the causal band-pass starts at the first sample's
            # level), and the detector starts at that first valid sample, as batch mode's does.
            valid = np.flatnonzero(~np.isnan(x))
            skip = valid[0] if len(valid) else len(x)
            if skip:
                self._first = 0.0
                self._xf = np.concatenate([self._xf, np.zeros(skip)])
                self._gap = np.concatenate([self._gap, np.ones(skip, bool)])
                self._n += skip
                x = x[skip:]
            if not len(x):
                return []
            self._offset = self._n
        x, gaps = dl.hold_gaps(x, self._last)  # as batch mode's (predict.prepare)
        self._last = x[-1]
        new_peaks = self.detector.feed(x)
        xf = self.detector.filtered  # the same causal 0.5-50 Hz band-pass as training's
        if self._first is None:
            self._first = xf[0]
        self._xf = np.concatenate([self._xf, xf])
        self._gap = np.concatenate([self._gap, gaps])
        self._n += len(x)
        self._add_peaks(new_peaks)
        return self._emit(final=False)

    def flush(self) -> list[Beat]:
        """End of the recording: decide the last peaks and pad their windows as batch mode does."""
        if self._offset is not None:
            self._add_peaks(self.detector.flush())
        return self._emit(final=True)

    def _add_peaks(self, detected) -> None:
        for p in detected:
            self.peaks.append(p + self._offset)
            self._pending.append(len(self.peaks) - 1)

    def _emit(self, final: bool) -> list[Beat]:
        ready = [k for k in self._pending if final or self.peaks[k] + dl.WINDOW_AFTER <= self._n]
        if not ready:
            return []
        self._pending = [k for k in self._pending if k not in ready]
        windows, rrs, bad = [], [], []
        peaks = np.asarray(self.peaks, dtype=np.int64)
        for k in ready:
            r = self.peaks[k]
            lo, hi = r - dl.WINDOW_BEFORE, r + dl.WINDOW_AFTER
            seg = self._segment(lo, hi)
            w = dl.beat_windows(seg, np.array([dl.WINDOW_BEFORE]))[0]
            template = dl.beat_templates(np.stack([*self._past, w]), from_beat=len(self._past))[0]
            windows.append(np.stack([w, template]))
            self._past.append(w)
            prev = self.peaks[k - 1] if k > 0 else 0
            self._broken.append(bool(self._gap[max(prev - self._start, 0):r + 1 - self._start].any()))  # as batch's
            rrs.append(dl.rr_features(peaks[:k + 1], dl.FS, "realtime", from_beat=k, broken=self._broken)[0])
            g0, g1 = max(prev - dl.WINDOW_BEFORE, self._start, 0), min(hi, self._n)
            bad.append(bool(self._gap[g0 - self._start:g1 - self._start].any()))
        windows, rrs = np.stack(windows), np.stack(rrs)
        if self.clf.batch_dependent:
            # One beat per call (as a device deciding each beat when it comes), so the chunk size does not change
            # the classes.
            proba = np.concatenate([self.clf.predict_proba(w[None], r[None]) for w, r in zip(windows, rrs)])
        else:
            proba = self.clf.predict_proba(windows, rrs)
        proba = proba.astype(np.float64)
        match = dl.template_match(windows)
        beats = []
        for k, p, b, m in zip(ready, proba, bad, match):
            if b:
                p = np.full(len(dl.CLASSES), np.nan)
            label = dl.CLASS_INDEX["Q"] if b else int(np.argmax(p))
            waited = self.peaks[k] - self._offset in self.detector.waited
            beats.append(Beat(self.peaks[k], label, p, self._n, waited, float(m)))
        self._trim()
        self._forget_peaks(peaks)
        return beats

    def _forget_peaks(self, peaks: np.ndarray) -> None:
        # The oldest beat still to be decided (or the newest peak: every later beat comes after it) reads
        # the peaks from dl.rr_history_start on; the ones before are dropped, so the work per beat and the
        # memory stay bounded however long the stream runs. (peaks: self.peaks as an array, from _emit.)
        k = min(self._pending) if self._pending else len(peaks) - 1
        drop = dl.rr_history_start(peaks, k, dl.FS) if k >= 0 else 0
        if drop > 0:
            del self.peaks[:drop]
            del self._broken[:drop]
            self._pending = [i - drop for i in self._pending]

    def _segment(self, lo: int, hi: int) -> np.ndarray:
        """Band-passed samples lo..hi-1, padded with the edge values as dl.beat_windows pads."""
        a, b = max(lo, 0), min(hi, self._n)
        seg = self._xf[a - self._start:b - self._start]
        return np.concatenate([np.full(a - lo, self._first), seg, np.full(hi - b, self._xf[-1])])

    def _trim(self) -> None:
        # Keep what pending beats and the next beat's gap check can still need: a beat's gap check
        # reaches back to the beat before it (two beats can arrive together: a held first one).
        oldest = min([self.peaks[max(k - 1, 0)] for k in self._pending]
                     + [self.peaks[-1] if self.peaks else 0, self._n - 2 * dl.FS])
        keep = max(oldest - dl.WINDOW_BEFORE - 1, 0)
        if keep > self._start:
            self._xf = self._xf[keep - self._start:]
            self._gap = self._gap[keep - self._start:]
            self._start = keep


MIN_SPEED = 1e-3  # --speed: a slower replay waits past what a timer can count (1e-12: years per sample)


def run_stream(x: np.ndarray, clf, chunk: int, on_beat=None, speed: float = 0.0) -> list[Beat]:
    """Feed a whole 360 Hz signal in chunks of `chunk` samples; `speed` > 0 paces it in real time."""
    sc = StreamClassifier(clf)
    beats, t0 = [], time.monotonic()
    for i in range(0, len(x), chunk):
        if speed > 0:
            wait = t0 + i / dl.FS / speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        new = sc.feed(x[i:i + chunk])
        beats += new
        if on_beat:
            for b in new:
                on_beat(b)
    new = sc.flush()
    beats += new
    if on_beat:
        for b in new:
            on_beat(b)
    return beats


def build_parser() -> argparse.ArgumentParser:
    from cli import HelpFormatter
    from export import MODEL_FILES
    from recordings import add_input_arguments

    p = argparse.ArgumentParser(prog="main.py stream", description=__doc__.split("\n")[0], allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="directory of a `python main.py --mode realtime` run, "
                                                  "or one of its model files")
    p.add_argument("--kind", choices=list(MODEL_FILES), default=None,
                   help="which model of a run directory to use (default: static-int8)")
    add_input_arguments(p)
    p.add_argument("--speed", type=float, default=1.0,
                   help="replay speed: 1 = real time, 10 = ten times faster, 0 = as fast as possible")
    p.add_argument("--chunk", type=int, default=36, help="samples per chunk fed (36 = 100 ms)")
    p.add_argument("--polarity", choices=("keep", "invert"), default="keep",
                   help="invert: a lead whose QRS complexes point the other way from the training records' (electrodes "
                        "swapped); the stream cannot wait to check, and warns at the end when it should have been")
    p.add_argument("--quiet", action="store_true", help="only the summary, not every beat")
    return p


def main(argv=None) -> int:
    import warnings

    from cli import run_command, warn
    from export import load_classifier, model_kind
    from predict import MIN_BEATS, summary, too_few_beats
    from recordings import cannot_read, check_input_options, check_signal, prepare, read_input

    args = build_parser().parse_args(argv)
    replaying = False  # from the first line printed on: an OSError is standard output's

    def work() -> None:
        nonlocal replaying
        with warnings.catch_warnings():  # torch's notices on loading a model are not the user's business
            warnings.simplefilter("ignore", UserWarning)
            if args.chunk < 1:
                raise dl.DataError(f"--chunk must be at least 1 sample, got {args.chunk}")
            if not (args.speed == 0 or args.speed >= MIN_SPEED):
                raise dl.DataError(f"--speed must be 0 (as fast as possible) or at least {MIN_SPEED:g} "
                                   f"(1: real time), got {args.speed}")
            check_input_options(args)
            clf = load_classifier(args.model, model_kind(args.model, args.kind, "static-int8"), threads=1)
            rec = read_input(args)
            StreamClassifier(clf)  # refuses a diagnostic model before anything is replayed
            x, gaps = prepare(rec)
            if args.polarity == "invert":
                x = -x

            def show(b: Beat) -> None:
                if not args.quiet:
                    conf = "  -  " if np.isnan(b.proba).any() else f"{b.confidence:.2f}"
                    print(f"{b.sample / dl.FS:9.3f} s  {dl.CLASSES[b.label]}  {conf}  "
                          f"(label {1000 * b.latency_s:.0f} ms after the R-peak)", flush=True)

            t0, replaying = time.perf_counter(), True
            print(f"streaming {rec.name} ({rec.lead}, {len(x) / dl.FS / 60:.1f} min) at "
                  f"{'full speed' if args.speed == 0 else f'{args.speed:g}x real time'} in chunks of {args.chunk} "
                  f"samples; {clf.kind} model; stated latency <= {1000 * stated_latency_s():.0f} ms after the "
                  f"R-peak, plus up to {1000 * (args.chunk - 1) / dl.FS:.0f} ms of waiting for the chunk to fill",
                  flush=True)
            beats = run_stream(np.where(gaps, np.nan, x), clf, args.chunk, show, args.speed)  # gaps as they come
            wall = time.perf_counter() - t0
            if len(beats) < MIN_BEATS:  # as predict: no rhythm to report is a failed run, not a result
                raise dl.DataError(too_few_beats(rec, len(beats), len(x) / dl.FS))
            check_signal(rec, np.array([b.match for b in beats]))
            from quality import polarity_score

            if polarity_score(x, np.array([b.sample for b in beats], dtype=np.int64), gaps) > 0:
                warn(f"{rec.name}: the QRS complexes of lead {rec.lead!r} point the other way from the training records' "
                     f"(electrodes swapped?), which loses ventricular beats: "
                     f"{'--polarity keep' if args.polarity == 'invert' else '--polarity invert'} corrects it")
            # Beats decided only when the record ended (the flush) have no live latency; an early first beat
            # waited for the next one (it may be a T wave), outside the stated bound.
            lat = np.array([b.latency_s for b in beats if b.decided_at < len(x) and not b.waited]) * 1000
            result = {"sample": np.array([b.sample for b in beats], dtype=np.int64),
                      "class": np.array([b.label for b in beats], dtype=np.int64),
                      "proba": np.array([b.proba for b in beats]).reshape(-1, len(dl.CLASSES))}
            print(summary(result, len(x) / dl.FS))
            if len(lat):
                print(f"  latency R-peak -> label: mean {lat.mean():.0f} ms, max {lat.max():.0f} ms "
                      f"(chunks of {args.chunk} samples add up to {1000 * (args.chunk - 1) / dl.FS:.0f} ms; a first "
                      f"beat in the first {FIRST_S:g} s waits for the next one)")
            print(f"  {len(x) / dl.FS:.0f} s of signal in {wall:.1f} s ({len(x) / dl.FS / wall:.0f}x real time)",
                  flush=True)

    def os_error(exc: OSError) -> str:
        if not replaying:  # the input or the model could not be read
            return cannot_read(exc, args)
        discard(sys.stdout)  # standard output on a full disk, or closed some other way
        return f"cannot write the beats to standard output: {exc.strerror or exc}"

    return run_command(work, os_error, broken_pipe=0)  # (the reader stopped, `| head`: so does the stream)


if __name__ == "__main__":
    sys.exit(main())
