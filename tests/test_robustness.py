"""Recordings as they come (quality.py, predict.analyse): a reversed lead, a gap, a noisy stretch; clean
recordings unchanged."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import data_loader as dl
import main
import predict
import quality
import recordings
from conftest import fixture_record
from stream import run_stream

CLEAN = ("100", "103", "101", "106", "118", "124", "220", "223", "114")


def fixture(name: str) -> recordings.Recording:
    return recordings.read_wfdb(fixture_record(name))


def like(rec, x) -> recordings.Recording:
    return recordings.Recording(x, rec.fs, rec.name, rec.lead, rec.source)


@pytest.mark.parametrize("name", CLEAN)
def test_clean_fixture_records_get_no_new_warning_and_the_same_classes(diagnostic_run, capsys, name):
    rec = fixture(name)
    clf = predict.load_classifier(diagnostic_run)
    x, beats = predict.analyse(rec, clf)
    assert capsys.readouterr().err == ""
    filled, gaps = recordings.prepare(rec)
    assert np.array_equal(beats["class"], predict.classify(filled, clf, gaps)["class"])
    assert beats["polarity"] == "as recorded" and beats["unreadable_s"] <= quality.WARN_UNREADABLE * len(x) / dl.FS


@pytest.mark.parametrize("name", CLEAN)
def test_the_polarity_check_finds_every_inverted_fixture_record_and_no_upright_one(name):
    x, gaps = recordings.prepare(fixture(name))
    peaks = predict.detect_peaks(x, gaps)
    assert quality.polarity_score(x, peaks) < 0 < quality.polarity_score(-x, peaks)


def test_an_inverted_record_is_corrected_with_a_warning_and_the_choice_written(diagnostic_run, tmp_path, capsys):
    rec = fixture("106")
    clf = predict.load_classifier(diagnostic_run)
    _, upright = predict.analyse(rec, clf)
    capsys.readouterr()
    _, fixed = predict.analyse(like(rec, -rec.x), clf)
    err = capsys.readouterr().err
    assert "point the other way" in err and "--polarity keep" in err
    assert fixed["polarity"] == "inverted" and np.array_equal(fixed["class"], upright["class"])
    _, kept = predict.analyse(like(rec, -rec.x), clf, "keep")
    assert "--polarity invert corrects it" in capsys.readouterr().err and kept["polarity"] == "as recorded"
    # through the command line: the beats CSV says what was done
    csv = tmp_path / "inv.csv"
    pd.DataFrame({"MLII": -rec.x}).to_csv(csv, index=False)
    assert main.main(["predict", "--model", str(diagnostic_run), "--csv", str(csv), "--fs", "360",
                      "--out", str(tmp_path / "out"), "--no-plot"]) == 0
    frame = pd.read_csv(tmp_path / "out" / "inv_beats.csv")
    assert set(frame["polarity"]) == {"inverted"} and {"noise", "readable"} <= set(frame.columns)
    assert "lead inverted" in capsys.readouterr().out


def test_rr_intervals_across_a_gap_are_unknown_not_long():
    """Beats after a gap get the RR features of a recording whose gap interval was never there."""
    t = np.arange(400) * 0.8
    t[200:] += 10.0  # ten seconds of lead off between beats 199 and 200
    broken = np.zeros(len(t), bool)
    broken[200] = True
    with_gap = dl.rr_features(t * dl.FS, dl.FS, "realtime", broken=broken)
    without = dl.rr_features(np.arange(399) * 0.8 * dl.FS, dl.FS, "realtime")  # the same beats, no gap
    names = dl.RR_FEATURES["realtime"]
    after = [names.index(n) for n in ("long", "slow", "pre/long", "pre/slow")]
    assert np.allclose(with_gap[201:, after], without[200:, after], atol=1e-5)  # every beat after the gap
    assert with_gap[200, names.index("pre")] == dl.DEFAULT_RR  # unknown, as before the first beat
    before = dl.rr_features(t * dl.FS, dl.FS, "realtime")  # as the gap was taken: a 10.8 s interval
    assert before[201:, names.index("long")].max() > 0.8 + 0.02


def test_a_flat_stretch_is_a_gap_in_predict_and_the_stream_alike(realtime_run, capsys):
    rec = fixture("100")
    x = rec.x.copy()
    x[360 * 60:360 * 70] = x[360 * 60]  # lead off for 10 s
    filled, gaps = recordings.prepare(like(rec, x))
    assert "flat" in capsys.readouterr().err
    assert gaps[360 * 60 + 1:360 * 70].all() and gaps.sum() <= 360 * 10 + 1
    clf = predict.load_classifier(realtime_run, "static-int8")
    batch = predict.classify(filled, clf, gaps)
    after = batch["sample"] > 360 * 75
    long = dl.RR_FEATURES["realtime"].index("long")
    assert batch["rr"][after, long].max() < 1.5  # no 10 s interval in the average
    beats = run_stream(np.where(gaps, np.nan, filled), clf, 36)
    assert np.array_equal([b.label for b in beats], batch["class"])
    assert np.allclose(np.array([b.proba for b in beats]), batch["proba"], atol=1e-5, equal_nan=True)


def test_a_noisy_stretch_is_flagged_and_named(diagnostic_run, capsys):
    rec = fixture("101")
    x = rec.x.copy()
    rng = np.random.default_rng(0)
    x[360 * 60:360 * 120] += rng.standard_normal(360 * 60) * 0.5  # a minute of broadband noise, about 0 dB
    _, beats = predict.analyse(like(rec, x), predict.load_classifier(diagnostic_run))
    err = capsys.readouterr().err
    assert "too noisy to read" in err and "1:00-2:00" in err
    inside = (beats["sample"] >= 360 * 60) & (beats["sample"] < 360 * 120)
    assert not beats["readable"][inside].any() and beats["readable"][~inside].mean() > 0.9
    assert 60 <= beats["unreadable_s"] < 80


def test_flat_runs_are_found_at_their_own_rate():
    x = np.sin(np.arange(1000) / 7.0)
    x[100:300] = 1.0  # 0.8 s at 250 Hz: not a lead off
    x[500:800] = 2.0  # 1.2 s
    flat = quality.flat_stretches(x, 250.0)
    assert not flat[100:300].any() and flat[500:800].all() and flat.sum() == 300
