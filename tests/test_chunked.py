"""Chunked prediction (chunked.py) gives the beats of predict.classify on the whole recording."""
import numpy as np
import pytest

import chunked
import predict
import recordings
from conftest import fixture_record
from detect import QRSDetector


def whole_and_pieces(clf, x, gaps, **kwargs):
    whole = predict.classify(x, clf, gaps)
    pieces, seen, shown = chunked.classify_lead(chunked.ArrayLead(x, gaps), clf, check=True, **kwargs)
    return whole, pieces, seen, shown


def assert_same(whole, pieces):
    assert np.array_equal(pieces["sample"], whole["sample"])
    assert np.array_equal(pieces["class"], whole["class"])
    np.testing.assert_allclose(pieces["confidence"], whole["proba"].max(1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pieces["match"], whole["match"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["diagnostic", "realtime"])
@pytest.mark.parametrize("record", ["100", "118", "223"])
def test_pieces_give_the_whole_recordings_beats(mode, record, diagnostic_run, realtime_run, monkeypatch):
    """Pieces far smaller than a recording, a piece's edge inside a beat, batches of a few beats, gaps at the start
    and in the middle: the same beats, classes and probabilities."""
    clf = predict.load_classifier(diagnostic_run if mode == "diagnostic" else realtime_run, "static-int8")
    rec = recordings.read_wfdb(fixture_record(record))
    x = rec.x.copy()
    x[:400] = np.nan
    x[30000:30090] = np.nan
    x, gaps = recordings.prepare(recordings.Recording(x, rec.fs, record, rec.lead))
    peak = predict.classify(x, clf, gaps)["sample"][20]
    monkeypatch.setattr(chunked, "BATCH", 37)
    whole, pieces, seen, shown = whole_and_pieces(clf, x, gaps, piece=peak + 10, margin=20000,
                                                  strip=(1000, 4600))
    assert (pieces["class"] == 4).sum() >= 2  # the gaps' beats: unclassifiable
    assert_same(whole, pieces)
    assert seen.missing == 490 and np.array_equal(shown, x[1000:4600])


def test_an_hour_in_pieces_reads_the_mains_check_as_whole(diagnostic_run):
    """An hour (more beats than a batch, more samples than a piece, the mains check's sampled segments)."""
    clf = predict.load_classifier(diagnostic_run, "static-int8")
    x = np.tile(recordings.read_wfdb(fixture_record("100")).x, 20)
    whole, pieces, seen, _ = whole_and_pieces(clf, x, np.zeros(len(x), bool))
    assert len(pieces["sample"]) > chunked.BATCH and len(x) > chunked.PIECE
    assert_same(whole, pieces)
    assert recordings.mains_fraction(np.concatenate(seen.mains)) == recordings.mains_fraction(x)


def test_a_wfdb_lead_is_read_in_pieces_as_whole():
    rec = recordings.read_wfdb(fixture_record("100"))
    path, lead, header, _ = recordings.open_wfdb(fixture_record("100"))
    wf = chunked.WfdbLead(path, lead, header.sig_len)
    assert np.array_equal(np.concatenate([wf.read(a, min(a + 7000, len(wf))) for a in range(0, len(wf), 7000)]),
                          rec.x)


def test_the_detector_reports_no_peak_before_its_earliest_undecided():
    x = recordings.read_wfdb(fixture_record("223")).x
    det = QRSDetector(360)
    for a in range(0, len(x), 5000):
        earliest = det.earliest_undecided()
        found = det.feed(x[a:a + 5000])
        assert all(p >= earliest for p in found)


def test_predict_writes_the_whole_recordings_outputs(diagnostic_run, tmp_path, monkeypatch):
    """predict (pieces, batches of a few beats written as made) and the whole recording's beats: the same rows."""
    import pandas as pd

    monkeypatch.setattr(chunked, "BATCH", 50)
    res = predict.run(predict.build_parser().parse_args(
        ["--model", str(diagnostic_run), "--record", fixture_record("118"), "--out", str(tmp_path), "--no-plot"]))
    frame = pd.read_csv(tmp_path / "118_beats.csv")
    rec = recordings.read_wfdb(fixture_record("118"))
    whole = predict.classify(*recordings.prepare(rec)[:1], predict.load_classifier(diagnostic_run))
    assert list(frame["sample"]) == list(whole["sample"]) == list(res["beats"]["sample"])
    assert list(frame["class"]) == [predict.dl.CLASSES[k] for k in whole["class"]]


def test_annotations_are_wranns_bytes(tmp_path):
    """predict's annotation file, encoded at once: byte for byte what wfdb.wrann writes (long pauses: SKIP words)."""
    import wfdb

    rng = np.random.default_rng(0)
    for fs in (360.0, 250.0, 128.5):
        sample = np.cumsum(rng.choice([0, 1, 300, 1023, 1024, 70000, 2 ** 20 + 7], size=300))
        symbols = list(rng.choice(list("NSVFQ"), size=300))
        wfdb.wrann("r", "aami", sample, symbols, write_dir=str(tmp_path), fs=fs)
        assert predict.annotation_bytes(sample, symbols, fs) == (tmp_path / "r.aami").read_bytes()


def test_a_long_recording_goes_in_pieces_with_the_classes_of_a_whole_one(diagnostic_run, tmp_path, monkeypatch,
                                                                          capsys):
    """predict: a recording over chunked.WHOLE_SECONDS is classified in pieces and gives the classes, noise and
    summary the whole-recording path gives; a reversed lead is found and inverted back there too."""
    import pandas as pd
    import wfdb

    args = ["--model", str(diagnostic_run), "--kind", "static-int8", "--no-plot"]
    record = ["--record", fixture_record("118")]
    in_pieces = []
    monkeypatch.setattr(chunked, "classify_input", lambda *a, f=chunked.classify_input: in_pieces.append(1) or f(*a))
    assert predict.main([*args, *record, "--out", str(tmp_path / "whole")]) == 0
    whole_out = capsys.readouterr().out
    assert not in_pieces
    monkeypatch.setattr(chunked, "WHOLE_SECONDS", 20.0)
    assert predict.main([*args, *record, "--out", str(tmp_path / "pieces")]) == 0
    out, err = capsys.readouterr()
    assert in_pieces and "point the other way" not in err
    assert out.splitlines()[1:-1] == whole_out.splitlines()[1:-1]  # the summary (beats, classes, noise)
    whole, pieces = (pd.read_csv(tmp_path / d / "118_beats.csv") for d in ("whole", "pieces"))
    for column in ("sample", "class", "noise", "readable"):
        assert whole[column].tolist() == pieces[column].tolist()
    assert set(pieces["polarity"]) == {"as recorded"}
    # the same record with its lead reversed (electrodes swapped), a WFDB record read piece by piece
    rec = wfdb.rdrecord(fixture_record("118"), channel_names=["MLII"], physical=False)
    wfdb.wrsamp("rev", fs=360, units=["mV"], sig_name=["MLII"], d_signal=-rec.d_signal, fmt=["16"],
                adc_gain=rec.adc_gain, baseline=[-b for b in rec.baseline], write_dir=str(tmp_path))  # -x exactly
    reversed_ = ["--record", str(tmp_path / "rev")]
    assert predict.main([*args, *reversed_, "--out", str(tmp_path / "fixed")]) == 0
    assert "point the other way" in capsys.readouterr().err
    fixed = pd.read_csv(tmp_path / "fixed" / "rev_beats.csv")
    assert set(fixed["polarity"]) == {"inverted"}
    assert fixed["sample"].tolist() == pieces["sample"].tolist()
    assert fixed["class"].tolist() == pieces["class"].tolist()
    assert predict.main([*args, *reversed_, "--polarity", "keep", "--out", str(tmp_path / "kept")]) == 0
    assert "--polarity invert corrects it" in capsys.readouterr().err
    assert set(pd.read_csv(tmp_path / "kept" / "rev_beats.csv")["polarity"]) == {"as recorded"}


def test_the_beats_kept_outgrow_their_first_arrays_intact():
    """The kept beats' arrays are made for the most beats the detector can find; more (should the detector change)
    still keep every beat, samples past 2**32 included."""
    for last in (10_000, 2 ** 33):
        kept = chunked.Kept(3, last)
        for k in range(3):
            sample = np.arange(4 * k, 4 * k + 4) + last - 20
            kept.add(sample, np.full(4, k), np.full(4, 0.5 + k / 10), np.full(4, k, np.float32))
        got = kept.result()
        assert got["sample"].dtype == np.int64 and np.array_equal(got["sample"], np.arange(12) + last - 20)
        assert np.array_equal(got["class"], np.repeat([0, 1, 2], 4))
        assert np.allclose(got["confidence"], np.repeat([0.5, 0.6, 0.7], 4))


@pytest.mark.parametrize("mode", ["diagnostic", "realtime"])
def test_pieces_judge_noise_as_the_whole_recording_does(mode, diagnostic_run, realtime_run, monkeypatch):
    """A minute of noise: the same segments' noise, readable beats and classes as predict.analyse, the readable
    beats classified again without the intervals from and to the unreadable ones, the unreadable not."""
    import dataclasses

    clf = predict.load_classifier(diagnostic_run if mode == "diagnostic" else realtime_run, "static-int8")
    rec = recordings.read_wfdb(fixture_record("101"))
    x = rec.x.copy()
    x[360 * 60:360 * 120] += np.random.default_rng(0).standard_normal(360 * 60) * 0.5
    noisy = dataclasses.replace(rec, x=x)
    _, whole = predict.analyse(noisy, clf)
    filled, gaps = recordings.prepare(noisy)
    first = predict.classify(filled, clf, gaps)  # without the noise judged
    readable = whole["readable"]
    assert 0 < (~readable).sum() and not np.allclose(first["proba"][readable], whole["proba"][readable])
    monkeypatch.setattr(chunked, "BATCH", 37)
    pieces, _, _ = chunked.classify_lead(chunked.ArrayLead(filled, gaps), clf, piece=50000, margin=20000)
    assert_same(whole, pieces)
    assert np.array_equal(pieces["readable"], readable)
    np.testing.assert_array_equal(pieces["noise"], whole["noise"])
    np.testing.assert_array_equal(pieces["segment_noise"], whole["segment_noise"])
    # the noise up to a lead off that lasts to the end: the last piece cuts no beat, the last segments are judged
    x[360 * 118:] = np.nan
    _, whole = predict.analyse(dataclasses.replace(rec, x=x), clf)
    filled, gaps = recordings.prepare(dataclasses.replace(rec, x=x))
    pieces, _, _ = chunked.classify_lead(chunked.ArrayLead(filled, gaps), clf, piece=50000, margin=20000)
    assert_same(whole, pieces)
    np.testing.assert_array_equal(pieces["segment_noise"], whole["segment_noise"])
    assert np.array_equal(pieces["readable"], whole["readable"]) and not whole["readable"][-5:].any()


def test_a_flat_stretch_read_in_pieces_is_a_gap_as_in_a_whole_recording(diagnostic_run, tmp_path, capsys,
                                                                         monkeypatch):
    """A WFDB record read piece by piece: a lead off for 10 s (one value), across a piece's edge, is a gap as
    recordings.prepare makes it (its beats Q, no 10 s interval); 0.8 s of one value is not."""
    import wfdb

    rec = wfdb.rdrecord(fixture_record("118"), channel_names=["MLII"], physical=False)
    d = rec.d_signal.copy()
    d[18000:21600, 0] = d[18000, 0]  # 10 s
    d[40000:40300, 0] = d[40000, 0]  # 0.83 s
    wfdb.wrsamp("flat", fs=360, units=["mV"], sig_name=["MLII"], d_signal=d, fmt=["16"], adc_gain=rec.adc_gain,
                baseline=rec.baseline, write_dir=str(tmp_path))
    clf = predict.load_classifier(diagnostic_run, "static-int8")
    whole_rec = recordings.read_wfdb(tmp_path / "flat")
    x, gaps = recordings.prepare(whole_rec)
    assert "is flat" in capsys.readouterr().err and 3599 <= gaps.sum() <= 3601
    whole = predict.classify(x, clf, gaps)
    path, lead, header, _ = recordings.open_wfdb(tmp_path / "flat")
    flat_lead = chunked.FlatAsGaps(chunked.WfdbLead(path, lead, header.sig_len))
    pieces, seen, _ = chunked.classify_lead(flat_lead, clf, check=True, piece=18500, margin=20000)
    assert_same(whole, pieces)
    assert seen.flat == gaps.sum() and seen.missing == 0
    assert (pieces["class"][(pieces["sample"] > 18000) & (pieces["sample"] < 21600 + 360)] == 4).all()
    monkeypatch.setattr(chunked, "WHOLE_SECONDS", 20.0)  # predict: read in pieces, says so as the whole path does
    capsys.readouterr()
    assert predict.main(["--model", str(diagnostic_run), "--record", str(tmp_path / "flat"), "--no-plot", "--out",
                         str(tmp_path / "out")]) == 0
    assert "is flat (one value for 1 s or more: lead off?) for 10 s in all" in capsys.readouterr().err


@pytest.mark.parametrize("fs", [128.0, 250.0, 500.0, 1000.0, 257.0])
def test_a_lead_at_another_rate_reads_at_360_hz_as_the_whole_lead_resampled(fs):
    """chunked.Resampled gives recordings.resample's samples exactly, wherever a read starts and ends: at the lead's
    ends, inside and across gaps (bridged to samples present far outside the read), in short and long reads."""
    rng = np.random.default_rng(int(fs))
    x = np.cumsum(rng.normal(size=int(fs * 400)))
    for a, b in ((0, 40), (1000, 1300), (5000, 5003), (20000, 20000 + int(fs * 200)), (len(x) - 70, len(x))):
        x[a:b] = np.nan
    whole = recordings.resample(x, fs)
    lead = chunked.Resampled(chunked.ArrayLead(x), fs)
    assert len(lead) == len(whole)
    ends = rng.integers(0, len(whole), size=(60, 2))
    spans = [(0, len(whole)), (0, 1), (len(whole) - 1, len(whole)), (30000, 30500), (28000, 110000)]
    for a, b in spans + [tuple(sorted(e)) for e in ends]:
        np.testing.assert_array_equal(lead.read(int(a), int(b)), whole[a:b], err_msg=f"{fs} Hz, {a}..{b}")


@pytest.mark.parametrize("kind", ["edf", "wfdb"])
def test_a_long_recording_at_another_rate_is_read_and_classified_in_pieces_as_whole(kind, diagnostic_run, tmp_path,
                                                                                    capsys, monkeypatch):
    """predict on an EDF+ file or a WFDB record at 250 Hz (a Holter's) with a lead off: over chunked.WHOLE_SECONDS it
    is read piece by piece, checked at its own rate, resampled piece by piece, and gives the whole path's rows,
    summary and warnings."""
    import pandas as pd
    import wfdb
    from scipy import signal as sps

    from test_predict import write_edf

    rec = wfdb.rdrecord(fixture_record("118"), channel_names=["MLII"], physical=False)
    d = np.round(sps.resample_poly(rec.d_signal[:, 0].astype(float), 25, 36)).astype(int)
    d[10000:10500] = d[10000]  # 2 s of one value: a lead off
    if kind == "edf":
        write_edf(tmp_path / "holter.edf", [("ECG", 250, d, rec.adc_gain[0], rec.baseline[0])])
        given = ["--edf", str(tmp_path / "holter.edf")]
    else:
        wfdb.wrsamp("holter", fs=250, units=["mV"], sig_name=["MLII"], d_signal=d[:, None], fmt=["16"],
                    adc_gain=rec.adc_gain, baseline=rec.baseline, write_dir=str(tmp_path))
        given = ["--record", str(tmp_path / "holter")]
    args = ["--model", str(diagnostic_run), "--kind", "static-int8", *given, "--no-plot"]
    in_pieces = []
    monkeypatch.setattr(chunked, "classify_input", lambda *a, f=chunked.classify_input: in_pieces.append(1) or f(*a))
    outputs = {}
    for way, whole_seconds in (("whole", chunked.WHOLE_SECONDS), ("pieces", 20.0)):
        monkeypatch.setattr(chunked, "WHOLE_SECONDS", whole_seconds)
        assert predict.main([*args, "--out", str(tmp_path / way)]) == 0
        out, err = capsys.readouterr()
        assert "resampling holter from 250 Hz" in err and "is flat (one value for 1 s or more" in err
        outputs[way] = out.splitlines()[1:-1], pd.read_csv(tmp_path / way / "holter_beats.csv")
    assert len(in_pieces) == 1
    assert outputs["whole"][0] == outputs["pieces"][0]  # the summary
    whole, pieces = outputs["whole"][1], outputs["pieces"][1]
    pd.testing.assert_frame_equal(whole, pieces)
    assert (whole["class"][(whole["time_s"] > 39.5) & (whole["time_s"] < 43.5)] == "Q").sum() >= 2  # the lead off's


def test_a_rate_360_hz_is_no_simple_fraction_of_marks_gaps_as_the_whole_lead_does():
    """At 359.9 Hz, 360 / fs is rounded to 1 (limit_denominator): recordings.resample's gap rule (the input sample
    nearest in time, on fs / 360) drifts from the filter's grid, by more than a read's reach within minutes; a gap
    there is still marked where the whole lead marks it."""
    fs = 359.9
    x = np.sin(np.arange(int(fs * 600)) / 40.0)
    x[int(fs * 500):int(fs * 500) + 1000] = np.nan
    whole = recordings.resample(x, fs)
    lead = chunked.Resampled(chunked.ArrayLead(x), fs)
    assert (lead.up, lead.down) == (1, 1)
    at = int(500 * 360)
    for a, b in ((at - 2000, at + 2000), (at - 40, at + 1), (at + 900, at + 1100), (len(whole) - 500, len(whole))):
        np.testing.assert_array_equal(lead.read(a, b), whole[a:b], err_msg=f"{a}..{b}")


def test_a_long_lead_flat_throughout_at_two_levels_is_one_error_line(diagnostic_run, tmp_path, capsys, monkeypatch):
    """Every sample in a flat stretch (a lead off at one level, then another): no sample to detect beats on, said in
    one line with exit 2, as for any recording without beats."""
    import wfdb

    d = np.repeat([0, 100], 360 * 60)[:, None]
    wfdb.wrsamp("off", fs=360, units=["mV"], sig_name=["MLII"], d_signal=d, fmt=["16"], adc_gain=[200.0],
                baseline=[0], write_dir=str(tmp_path))
    monkeypatch.setattr(chunked, "WHOLE_SECONDS", 20.0)
    code = predict.main(["--model", str(diagnostic_run), "--record", str(tmp_path / "off"), "--no-plot", "--out",
                         str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "only 0 beats detected" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
