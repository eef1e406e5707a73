"""Streaming real-time classification equals the batch real-time pipeline, whatever the chunk size."""
from __future__ import annotations

import os
import subprocess
import sys

from collections import deque

import numpy as np
import pytest
from scipy import signal

import data_loader as dl
import main
import predict
import recordings
import csv_input
import stream
from conftest import ROOT, fixture_record
from detect import FIRST_S, QRSDetector, SosFilter, detect_r_peaks


def feed_detector(x, chunk):
    det = QRSDetector(dl.FS)
    peaks = []
    for i in range(0, len(x), chunk):
        peaks += det.feed(x[i:i + chunk])
    return np.array(peaks + det.flush())


def test_sos_filter_in_chunks_is_scipys_sosfilt_bit_for_bit():
    x = np.random.default_rng(0).normal(size=5000)
    whole = signal.sosfilt(dl.bandpass_sos(), x)
    f = SosFilter(dl.bandpass_sos())
    parts = np.concatenate([f(x[i:i + n]) for i, n in zip(np.cumsum([0, 1, 7, 100, 3]), [1, 7, 100, 3, 5000])])
    assert np.array_equal(parts, whole)


@pytest.mark.parametrize("record", ["100", "118"])
def test_detector_peaks_do_not_depend_on_the_chunk_size(record):
    x, _ = dl.read_record(fixture_record(record))
    whole = detect_r_peaks(x, dl.FS)
    for chunk in (1, 7, 360):
        assert np.array_equal(feed_detector(x, chunk), whole), chunk


def stream_output(x, clf, chunk):
    beats = stream.run_stream(x, clf, chunk)
    return (np.array([b.sample for b in beats]), np.array([b.label for b in beats]),
            np.array([b.proba for b in beats]), beats)


@pytest.mark.parametrize("record, chunks", [("100", (1, 7, 360, 0)), ("118", (7, 360, 0)),
                                            ("124", (13, 0))])
def test_streaming_equals_batch_realtime(realtime_run, record, chunks):
    clf = predict.load_classifier(realtime_run)
    x, _ = dl.read_record(fixture_record(record))
    batch = predict.classify(x, clf)
    assert len(batch["sample"]) > 100
    for chunk in chunks:
        s, c, p, _ = stream_output(x, clf, chunk or len(x))
        assert np.array_equal(s, batch["sample"]), chunk
        assert np.array_equal(c, batch["class"]), chunk
        assert np.abs(p - batch["proba"]).max() < 1e-5, chunk


def test_streaming_equals_batch_with_the_int8_model_and_a_gap(realtime_run):
    clf = predict.load_classifier(realtime_run, "static-int8")
    x, _ = dl.read_record(fixture_record("100"))
    x[360 * 30:360 * 33] = np.nan
    filled, gaps = recordings.prepare(recordings.Recording(x, dl.FS, "gap", "MLII"))
    batch = predict.classify(filled, clf, gaps)
    s, c, p, _ = stream_output(x, clf, 50)
    assert np.array_equal(s, batch["sample"]) and np.array_equal(c, batch["class"])
    unclassifiable = np.isnan(p).any(1)
    assert unclassifiable.sum() >= 1 and (c[unclassifiable] == dl.CLASS_INDEX["Q"]).all()
    assert np.array_equal(unclassifiable, np.isnan(batch["proba"]).any(1))


def test_streaming_equals_batch_after_a_leading_gap(realtime_run):
    """A lead connected late, on a DC-offset signal: the stream waits for the first sample present,
    as batch mode starts there; both find the same beats, whatever the chunk size."""
    clf = predict.load_classifier(realtime_run)
    x, _ = dl.read_record(fixture_record("100"))
    x = x[:360 * 120] + 5.0
    x[:360 * 2 + 100] = np.nan
    filled, gaps = recordings.prepare(recordings.Recording(x, dl.FS, "late", "MLII"))
    batch = predict.classify(filled, clf, gaps)
    assert batch["sample"][0] > 360 * 2 + 100
    for chunk in (50, 360 * 3):  # the first chunk all gap, or gap and signal
        s, c, p, _ = stream_output(x, clf, chunk)
        assert np.array_equal(s, batch["sample"]) and np.array_equal(c, batch["class"]), chunk
        assert np.allclose(p, batch["proba"], atol=1e-5, equal_nan=True), chunk


def test_streaming_equals_batch_when_a_held_first_beat_arrives_with_the_next(realtime_run):
    """A first beat in the first 0.5 s waits for the next one (detect.FIRST_S); after a long first RR both
    arrive together, and the second's gap check must still see the gap before the first."""
    clf = predict.load_classifier(realtime_run)
    x, _ = dl.read_record(fixture_record("100"))
    ref, _ = dl.read_beats(fixture_record("100"))
    for start in ref[1:4] - 60:  # a beat at sample 60: held
        seg = x[start:start + 3600].copy()
        seg[200:900] = seg[200]  # no beat for 2 s: a long first RR
        seg[30:40] = np.nan
        filled, gaps = recordings.prepare(recordings.Recording(seg.copy(), dl.FS, "held", "MLII"))
        batch = predict.classify(filled, clf, gaps)
        for chunk in (7, 360):  # (the 2 s held are a flat line, a gap: the stream is fed as `main.py stream` feeds it)
            s, c, _, _ = stream_output(np.where(gaps, np.nan, filled), clf, chunk)
            assert np.array_equal(s, batch["sample"]) and np.array_equal(c, batch["class"]), (start, chunk)


def test_stream_and_training_see_the_same_beat_inputs(realtime_run, fixture_dir):
    """Train/serve agreement: at the annotated R-peaks, the inputs of the live pipeline are the
    training set's real-time inputs, bit for bit (causal filter, windows, past-only RR)."""
    x, _ = dl.read_record(fixture_record("100"))
    ref, _ = dl.read_beats(fixture_record("100"))
    train = dl.load_beats(fixture_dir, ["100"], "realtime", progress=False)
    wx, rr = dl.beat_inputs(x, ref, "realtime")
    assert np.array_equal(wx, train.x) and np.array_equal(rr, train.rr)
    # and the stream's own filtered signal is that filter's output
    det = QRSDetector(dl.FS)
    parts = []
    for i in range(0, len(x), 101):
        det.feed(x[i:i + 101])
        parts.append(det.filtered)
    assert np.array_equal(np.concatenate(parts), dl.bandpass(x, dl.FS, "realtime"))


def test_latency_is_within_the_stated_bound(realtime_run):
    clf = predict.load_classifier(realtime_run, "static-int8")
    x, _ = dl.read_record(fixture_record("100"))
    late = x.copy()
    late[:300] = np.nan  # a lead connected late: the detector's first 0.5 s start there
    for signal_, start in ((x, 0), (late, 300)):
        _, _, _, beats = stream_output(signal_, clf, 1)
        live = [b for b in beats if b.decided_at < len(x)]
        assert len(live) >= len(beats) - 2
        # A first beat in the detector's first FIRST_S waits for the next beat (it may be a T wave).
        early = [b for b in live if b.waited]
        assert len(early) == 1 and early[0] is live[0] and live[0].sample < start + FIRST_S * dl.FS
        assert early[0].decided_at > live[1].sample
        lat = np.array([b.latency_s for b in live if not b.waited])
        assert lat.max() <= stream.stated_latency_s() <= 0.5
        assert lat.min() >= dl.WINDOW_AFTER / dl.FS  # a label never comes before its window is complete


def test_stream_refuses_a_diagnostic_model(diagnostic_run, capsys):
    with pytest.raises(dl.DataError, match="needs a real-time model"):
        stream.StreamClassifier(predict.load_classifier(diagnostic_run))
    code = main.main(["stream", "--model", str(diagnostic_run), "--record", fixture_record("100"), "--speed", "0"])
    assert code == 2
    assert "needs a real-time model" in capsys.readouterr().err


def test_stream_command_prints_each_beat_and_a_summary(realtime_run, capsys):
    code = main.main(["stream", "--model", str(realtime_run), "--record", fixture_record("100"),
                      "--speed", "0", "--chunk", "7"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [ln for ln in out.splitlines() if "after the R-peak" in ln]
    ref, _ = dl.read_beats(fixture_record("100"))
    assert abs(len(lines) - len(ref)) <= 0.02 * len(ref)
    assert "latency R-peak -> label: mean" in out and "x real time" in out and "beats in 3.0 min" in out


def test_stream_reads_a_csv_as_predict_does(realtime_run, tmp_path, capsys):
    """A CSV export (here at 250 Hz, resampled as predict resamples it) streams to the beats that
    predict finds in it."""
    import pandas as pd

    x, _ = dl.read_record(fixture_record("100"))
    x250 = signal.resample_poly(x[:360 * 60], 25, 36)
    pd.DataFrame({"time": np.arange(len(x250)) / 250, "ECG": x250}).to_csv(tmp_path / "ecg.csv", index=False)
    code = main.main(["stream", "--model", str(realtime_run), "--csv", str(tmp_path / "ecg.csv"), "--fs", "250",
                      "--speed", "0", "--chunk", "25"])
    out = capsys.readouterr().out
    assert code == 0 and "streaming ecg (ECG, 1.0 min)" in out
    labels = [ln.split()[2] for ln in out.splitlines() if "after the R-peak)" in ln]
    filled, gaps = recordings.prepare(csv_input.read_csv(tmp_path / "ecg.csv", 250.0))
    batch = predict.classify(filled, predict.load_classifier(realtime_run, "static-int8"), gaps)
    assert labels == [dl.CLASSES[c] for c in batch["class"]] and len(labels) > 60


@pytest.mark.parametrize("opts, message", [(["--chunk", "0"], "--chunk must be at least 1"),
                                           (["--speed", "-1"], "--speed must be 0 (as fast as possible) or at least"),
                                           (["--speed", "1e-12"], "--speed must be 0 (as fast as possible) or at least"),
                                           (["--lead", "V9"], "has no lead 'V9'"),
                                           (["--fs", "250"], "--fs is for --csv only"),
                                           (["--csv", "x.csv"], "give one input")])
def test_stream_bad_options_exit_2(realtime_run, capsys, opts, message):
    code = main.main(["stream", "--model", str(realtime_run), "--record", fixture_record("100"), *opts])
    assert code == 2 and message in capsys.readouterr().err


def test_stream_refuses_a_kind_for_another_model_file(realtime_run, capsys):
    """--kind picks a run directory's model; with a model file it was ignored (float32 run as asked int8). The
    kind that names the file given is no contradiction."""
    code = main.main(["stream", "--model", str(realtime_run / "model_float32.pt"), "--kind", "dynamic-int8",
                      "--record", fixture_record("100"), "--speed", "0"])
    assert code == 2 and "--kind dynamic-int8 picks model_int8_dynamic.onnx of a run directory" in capsys.readouterr().err
    code = main.main(["stream", "--model", str(realtime_run / "model_int8_dynamic.onnx"), "--kind", "dynamic-int8",
                      "--record", fixture_record("100"), "--speed", "0", "--quiet"])
    assert code == 0 and "dynamic-int8 model" in capsys.readouterr().out


def test_replay_speed_paces_the_stream(realtime_run):
    clf = predict.load_classifier(realtime_run, "static-int8")
    x, _ = dl.read_record(fixture_record("100"))
    import time

    t = time.monotonic()
    stream.run_stream(x[:360 * 3], clf, 36, speed=6.0)  # 3 s of signal at 6x: about 0.5 s
    assert time.monotonic() - t >= 0.45


@pytest.mark.parametrize("command, first", [("stream", b"streaming "), ("stream", None), ("predict", None)])
def test_a_reader_that_stops_early_ends_the_command_quietly(realtime_run, tmp_path, command, first):
    """`main.py stream ... | head` (after the first line, or before any: `| head -c0`), and the same of
    predict: once the reader has gone, the command stops, exit 0, no traceback."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), command, "--model", str(realtime_run),
                             "--record", fixture_record("100"),
                             *(["--speed", "0"] if command == "stream" else ["--out", str(tmp_path), "--no-plot"])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    if first:
        assert proc.stdout.readline().startswith(first)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err


def test_predict_piped_with_its_warnings_into_head_still_writes_its_outputs(realtime_run, tmp_path):
    """`predict ... 2>&1 | head -1`: a warning meets the closed pipe before anything is written; the outputs
    are written all the same (it once exited 0 having written nothing)."""
    import pandas as pd

    x, _ = dl.read_record(fixture_record("100"))
    pd.DataFrame({"MLII": x[:360 * 30], "V5": x[:360 * 30]}).to_csv(tmp_path / "two.csv", index=False)
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "predict", "--model", str(realtime_run),
                             "--csv", str(tmp_path / "two.csv"), "--fs", "360", "--out", str(tmp_path / "o"),
                             "--no-plot"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert (tmp_path / "o" / "two_beats.csv").is_file()


def test_a_stream_without_beats_fails_as_predict_does(realtime_run, tmp_path, capsys):
    """A lead with no ECG on it (here: slow baseline wander alone) is an error, exit 2, not 'heart rate nan'."""
    import wfdb

    t = np.arange(360 * 20) / 360
    wfdb.wrsamp("hum", fs=360, units=["mV"], sig_name=["MLII"], p_signal=np.sin(2 * np.pi * 0.3 * t)[:, None],
                fmt=["16"], write_dir=str(tmp_path))
    code = main.main(["stream", "--model", str(realtime_run), "--record", str(tmp_path / "hum"), "--speed", "0",
                      "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert "beats detected in 20.0 s; is lead 'MLII' an ECG?" in captured.err
    assert "nan" not in captured.out


def test_a_long_stream_keeps_a_bounded_history_and_still_equals_batch(realtime_run):
    """Twelve minutes (the fixture record four times over, past the 300 s that 'long' and 'slow' span): the
    stream forgets the peaks no later beat reads (its work per beat once grew with the time it had run), and its
    beats still equal predict's on the whole recording."""
    x, _ = dl.read_record(fixture_record("100"))
    x = np.tile(x, 4)
    clf = predict.load_classifier(realtime_run, "static-int8")
    sc = stream.StreamClassifier(clf)
    beats, held = [], 0
    for i in range(0, len(x), 360):
        beats += sc.feed(x[i:i + 360])
        held = max(held, len(sc.peaks))
    beats += sc.flush()
    batch = predict.classify(x, clf)
    assert len(beats) == len(batch["sample"]) > 700
    assert np.array_equal([b.sample for b in beats], batch["sample"])
    assert np.array_equal([b.label for b in beats], batch["class"])
    assert np.abs(np.array([b.proba for b in beats]) - batch["proba"]).max() < 1e-5
    per_second = len(beats) / (len(x) / dl.FS)
    assert held <= per_second * dl.LONG_SECONDS * 1.2 + 20  # about 300 s of peaks, not all twelve minutes'


def test_a_dynamic_int8_stream_does_not_depend_on_its_chunks(realtime_run):
    """Dynamic int8 scales its activations by each call's beats; the stream classifies each beat alone, so one
    chunk size gives what another does (it once changed a class of record 208 between 36 and 3600)."""
    x, _ = dl.read_record(fixture_record("100"))
    clf = predict.load_classifier(realtime_run, "dynamic-int8")
    assert clf.batch_dependent and not predict.load_classifier(realtime_run, "float32").batch_dependent
    a = stream.run_stream(x[:360 * 60], clf, 1)
    b = stream.run_stream(x[:360 * 60], clf, 3600)
    assert [(s.sample, s.label) for s in a] == [(s.sample, s.label) for s in b]
    np.testing.assert_array_equal(np.array([s.proba for s in a]), np.array([s.proba for s in b]))


def test_a_lead_of_mains_hum_or_noise_is_warned_of_by_stream_and_predict(realtime_run, tmp_path, capsys):
    import pandas as pd

    rng = np.random.default_rng(0)
    t = np.arange(360 * 30) / 360
    pd.DataFrame({"ECG": 0.3 * np.sin(2 * np.pi * 50 * t) + 0.01 * rng.normal(size=len(t))}).to_csv(
        tmp_path / "hum.csv", index=False)
    pd.DataFrame({"ECG": 0.1 * rng.normal(size=len(t))}).to_csv(tmp_path / "noise.csv", index=False)
    for command in ("stream", "predict"):
        for name, message in (("hum", "is mostly mains hum"), ("noise", "do not resemble each other")):
            options = ["--speed", "0", "--quiet"] if command == "stream" else ["--out", str(tmp_path / name), "--no-plot"]
            main.main([command, "--model", str(realtime_run), "--csv", str(tmp_path / f"{name}.csv"), "--fs", "360",
                       *options])
            assert message in capsys.readouterr().err, (command, name)
    ecg, _ = dl.read_record(fixture_record("100"))
    assert recordings.mains_fraction(ecg) < 0.01


def test_stream_interrupted_while_loading_ends_quietly(realtime_run, monkeypatch, capsys):
    """Ctrl-C before the replay began ended in a traceback."""
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(recordings, "read_input", interrupted)
    code = main.main(["stream", "--model", str(realtime_run), "--record", fixture_record("100"), "--speed", "0"])
    assert code == 130 and "interrupted" in capsys.readouterr().err


def _onto_a_full_disk(*args) -> subprocess.CompletedProcess:
    """main.py with these arguments, its standard output on a full disk (/dev/full)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    command = " ".join(f'"{a}"' for a in (sys.executable, "main.py", *args))
    return subprocess.run(f"{command} > /dev/full", shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_stream_and_predict_with_stdout_full_say_so(realtime_run, tmp_path):
    """A full disk on standard output ended in a traceback; predict's outputs, written before, stay."""
    proc = _onto_a_full_disk("stream", "--model", realtime_run, "--record", fixture_record("100"), "--speed", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: cannot write the beats to standard output: No space left on device" in proc.stderr
    proc = _onto_a_full_disk("predict", "--model", realtime_run, "--record", fixture_record("100"), "--out", tmp_path,
                             "--no-plot")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: cannot write the summary to standard output: No space left on device" in proc.stderr
    assert (tmp_path / "100_beats.csv").is_file()


def _state_sizes(sc) -> dict:
    """Lengths of every list, deque and array the stream and its detector hold."""
    sizes = {}
    for owner, obj in (("stream", sc), ("detector", sc.detector)):
        for name, v in vars(obj).items():
            if isinstance(v, (list, deque, np.ndarray)):
                sizes[f"{owner}.{name}"] = len(v) if not isinstance(v, np.ndarray) else v.size
    return sizes


def test_the_stream_holds_as_much_after_twelve_minutes_as_after_six(realtime_run):
    """A stream runs for days on a device: past the 5 minutes its RR averages read (dl.LONG_SECONDS), what it
    keeps does not grow with the beats it has seen (the detector once kept a decision time per beat)."""
    clf = predict.load_classifier(realtime_run)
    x, _ = dl.read_record(fixture_record("100"))  # 3 minutes
    sizes = []
    for signal_ in (np.tile(x, 2), np.tile(x, 4)):
        sc = stream.StreamClassifier(clf)
        for i in range(0, len(signal_), 360):
            sc.feed(signal_[i:i + 360])
        sizes.append(_state_sizes(sc))
    short, long_ = sizes
    assert short.keys() == long_.keys()
    grown = {k: (short[k], long_[k]) for k in short if long_[k] > short[k] + 10}
    assert not grown, grown  # (six minutes more: about 450 beats)
