"""`main.py predict` on recordings without annotations: each input kind, each output, bad input."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from scipy import signal

import data_loader as dl
import main
import predict
import recordings
import csv_input
from detect import detect_r_peaks
from conftest import PNG_SIGNATURE, fixture_record


def run_predict(capsys, *args):
    code = main.main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def counts(frame) -> dict:
    return {c: int((frame["class"] == c).sum()) for c in dl.CLASSES}


@pytest.fixture(scope="module")
def record_100(diagnostic_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred100")
    res = predict.run(predict.build_parser().parse_args(
        ["--model", str(diagnostic_run), "--record", fixture_record("100"), "--out", str(out)]))
    res["frame"] = pd.read_csv(out / "100_beats.csv")  # (written batch by batch: run keeps no frame)
    return res


def test_wfdb_record_gives_csv_annotations_and_png(record_100):
    out = record_100["out"]
    frame = pd.read_csv(out / "100_beats.csv")
    assert list(frame.columns) == ["time_s", "sample", "class", "confidence", "p_N", "p_S", "p_V", "p_F",
                                   "p_Q", "classifiable", "noise", "readable", "polarity"]
    ref, _ = dl.read_beats(fixture_record("100"))
    assert abs(len(frame) - len(ref)) <= 0.02 * len(ref)
    assert np.allclose(frame[[f"p_{c}" for c in dl.CLASSES]].sum(axis=1), 1.0, atol=1e-3)
    assert (frame["confidence"] == frame[[f"p_{c}" for c in dl.CLASSES]].max(axis=1)).all()
    assert np.allclose(frame["time_s"], frame["sample"] / 360, atol=1e-3)
    # WFDB tools read the annotations: one per beat, the CSV's classes as beat symbols.
    ann = wfdb.rdann(str(out / "100"), "aami")
    assert list(ann.sample) == list(frame["sample"]) and list(ann.symbol) == list(frame["class"])
    assert (out / "100_strip.png").read_bytes()[:8] == PNG_SIGNATURE
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_detected_beats_are_classified_like_the_reference_beats(record_100, diagnostic_run):
    """The classes at detected peaks agree with the classes the same model gives the annotated peaks."""
    from detect import match_beats

    clf = predict.load_classifier(diagnostic_run)
    x, _ = dl.read_record(fixture_record("100"))
    ref, _ = dl.read_beats(fixture_record("100"))
    at_ref = predict.classify(x, clf, peaks=ref)["class"]
    det = record_100["beats"]
    ri, di = match_beats(ref, det["sample"], dl.FS)
    assert len(ri) >= 0.99 * len(ref)
    assert (at_ref[ri] == det["class"][di]).mean() >= 0.97


def test_summary_is_printed(diagnostic_run, tmp_path, capsys):
    code, out, _ = run_predict(capsys, "--model", diagnostic_run, "--record", fixture_record("100"),
                               "--out", tmp_path, "--no-plot")
    assert code == 0
    assert "beats in 3.0 min" in out and "bpm" in out and "confidence below" in out
    assert all(f"{c} " in out for c in dl.CLASSES)
    assert not (tmp_path / "100_strip.png").exists()


def test_250_hz_csv_copy_gives_the_same_class_counts(diagnostic_run, record_100, tmp_path, capsys):
    x, _ = dl.read_record(fixture_record("100"))
    x250 = signal.resample_poly(x, 25, 36)
    pd.DataFrame({"time": np.arange(len(x250)) / 250, "ECG": x250}).to_csv(tmp_path / "ecg.csv", index=False)
    code, out, err = run_predict(capsys, "--model", diagnostic_run, "--csv", tmp_path / "ecg.csv", "--fs", 250,
                                 "--column", "ECG", "--out", tmp_path / "o")
    assert code == 0, err
    assert "resampling ecg from 250 Hz to 360 Hz" in err
    c250 = counts(pd.read_csv(tmp_path / "o" / "ecg_beats.csv"))
    c360 = counts(record_100["frame"])
    total = sum(c360.values())
    assert all(abs(c250[c] - c360[c]) <= 0.02 * total for c in dl.CLASSES), (c250, c360)
    frame = pd.read_csv(tmp_path / "o" / "ecg_beats.csv")
    assert frame["sample"].max() < len(x250)  # samples in the CSV's own rate
    assert wfdb.rdann(str(tmp_path / "o" / "ecg"), "aami").fs == 250


def test_csv_column_by_index_and_first_numeric_by_default(diagnostic_run, tmp_path, capsys):
    x, _ = dl.read_record(fixture_record("100"))
    pd.DataFrame({"label": "x", "ECG": x}).to_csv(tmp_path / "a.csv", index=False)
    code, _, _ = run_predict(capsys, "--model", diagnostic_run, "--csv", tmp_path / "a.csv", "--fs", 360,
                             "--column", 1, "--out", tmp_path / "o1", "--no-plot")
    assert code == 0
    code, _, _ = run_predict(capsys, "--model", diagnostic_run, "--csv", tmp_path / "a.csv", "--fs", 360,
                             "--out", tmp_path / "o2", "--no-plot")
    assert code == 0
    assert pd.read_csv(tmp_path / "o1" / "a_beats.csv").equals(pd.read_csv(tmp_path / "o2" / "a_beats.csv"))


def test_lead_choice_and_fallback_to_the_first_channel(diagnostic_run, tmp_path, capsys):
    code, _, _ = run_predict(capsys, "--model", diagnostic_run, "--record", fixture_record("100"),
                             "--lead", "V5", "--out", tmp_path / "v5", "--no-plot")
    assert code == 0
    # A record without MLII: its first channel, with a warning.
    rec = wfdb.rdrecord(fixture_record("100"), channel_names=["V5"])
    wfdb.wrsamp("v5only", fs=360, units=["mV"], sig_name=["V5"], p_signal=rec.p_signal, fmt=["16"],
                write_dir=str(tmp_path))
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--record", tmp_path / "v5only",
                               "--out", tmp_path / "o", "--no-plot")
    assert code == 0
    assert "no MLII lead; using its first ECG-like channel 'V5'" in err


def test_edf_file(diagnostic_run, record_100, tmp_path, capsys):
    from wfdb.io.convert.edf import wfdb_to_edf

    wfdb_to_edf(fixture_record("100"), output_filename=str(tmp_path / "r100.edf"))
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--edf", tmp_path / "r100.edf",
                               "--out", tmp_path / "o", "--no-plot")
    assert code == 0, err
    # The EDF writer pads the last 10-s data record with a flat tail, whose step the zero-phase
    # filter spreads about a second back: the beats before that are the same.
    edf, wfdb_frame = pd.read_csv(tmp_path / "o" / "r100_beats.csv"), record_100["frame"]
    end = wfdb_frame["time_s"].max() - 2.0
    c_edf, c_wfdb = counts(edf[edf["time_s"] < end]), counts(wfdb_frame[wfdb_frame["time_s"] < end])
    assert all(abs(c_edf[c] - c_wfdb[c]) <= 0.02 * sum(c_wfdb.values()) for c in dl.CLASSES), (c_edf, c_wfdb)
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--edf", tmp_path / "r100.edf", "--lead", "II",
                               "--out", tmp_path / "o2")
    assert code == 2 and "has no signal 'II'; it has MLII, V5" in err


def write_edf(path, signals, seconds_per_record=1, plus=True, discontinuous=False):
    """A minimal EDF(+) writer: signals is [(label, rate in Hz, digital int16 array, gain, baseline)]; EDF+
    adds the annotations signal that almost every real EDF+ file carries."""
    chans = [(label, rate * seconds_per_record, d, (-32768 - base) / gain, (32767 - base) / gain)
             for label, rate, d, gain, base in signals]
    n_rec = len(signals[0][2]) // chans[0][1]
    if plus:
        chans.append(("EDF Annotations", 30, None, -1, 1))
    ns = len(chans)
    f = lambda v, w: str(v)[:w].ljust(w).encode("latin-1")  # noqa: E731
    head = (f("0", 8) + f("X X X X", 80) + f("Startdate X X X X", 80) + f("01.01.26", 8) + f("00.00.00", 8)
            + f(256 * (ns + 1), 8) + f(("EDF+D" if discontinuous else "EDF+C") if plus else "", 44)
            + f(n_rec, 8) + f(seconds_per_record, 8) + f(ns, 4))
    for key, width in ((0, 16), (None, 80), ("unit", 8), (3, 8), (4, 8), ("dmin", 8), ("dmax", 8), (None, 80),
                       (1, 8), (None, 32)):
        for c in chans:
            value = {None: "", "unit": "" if c[2] is None else "mV", "dmin": -32768, "dmax": 32767}.get(key, None)
            head += f(c[key] if value is None and key is not None and not isinstance(key, str) else value, width)
    body = bytearray()
    for r in range(n_rec):
        for label, n, d, _, _ in chans:
            if d is None:  # the record's time-keeping annotation, then zeros
                body += f"+{r * seconds_per_record}\x14\x14\x00".encode().ljust(2 * n, b"\x00")
            else:
                body += np.asarray(d[r * n:(r + 1) * n], dtype="<i2").tobytes()
    Path(path).write_bytes(head + bytes(body))


def test_edf_plus_with_signals_at_other_rates_reads_the_lead_at_its_own_rate(diagnostic_run, record_100,
                                                                                 tmp_path, capsys):
    """An EDF+ annotations signal and a 25 Hz respiration signal beside the ECG: the ECG is read at its own
    rate and in physical units, the same beats as from the WFDB record (wfdb's reader failed on the
    first and resampled every signal to the slowest common rate)."""
    rec = wfdb.rdrecord(fixture_record("100"), physical=False)
    ecg = rec.d_signal[:, 0]
    resp = np.round(1000 * np.sin(np.arange(len(ecg) // 360 * 25) / 25)).astype(int)
    write_edf(tmp_path / "holter.edf", [("Resp", 25, resp, 1.0, 0), ("ECG", 360, ecg, rec.adc_gain[0],
                                                                       rec.baseline[0])])
    x = recordings.read_edf(tmp_path / "holter.edf", "ECG")
    assert x.fs == 360 and np.allclose(x.x, wfdb.rdrecord(fixture_record("100")).p_signal[:, 0])
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--edf", tmp_path / "holter.edf", "--lead", "ECG",
                               "--out", tmp_path / "o", "--no-plot")
    assert code == 0, err
    edf = pd.read_csv(tmp_path / "o" / "holter_beats.csv")
    assert edf[["sample", "class"]].equals(record_100["frame"][["sample", "class"]])
    assert recordings.read_edf(tmp_path / "holter.edf").lead == "ECG"  # not the first signal, Resp
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--edf", tmp_path / "holter.edf", "--lead", "EEG",
                               "--out", tmp_path / "o2")
    assert code == 2 and "has no signal 'EEG'; it has Resp, ECG" in err  # the annotations are not a lead


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-1000], "is cut short: its header announces 180 data records"),
    (lambda b: b"not an EDF" + b[10:], "not an EDF header"),
    ("discontinuous", "discontinuous EDF+ file (EDF+D)"),
    (lambda b: b[:244] + b"0       " + b[252:], "its header is inconsistent"),  # data records of 0 s
    (lambda b: b[:512] + b"-32768  " + b[520:], "its header is inconsistent"),  # the ECG's digital max = its min
    (lambda b: b[:184] + b"512     " + b[192:], "its header is inconsistent"),  # 256 bytes for each of 2 signals
    (lambda b: b[:236] + b"0       " + b[244:], "holds no data records"),
])
def test_a_bad_edf_file_is_one_error_line(diagnostic_run, tmp_path, capsys, damage, message):
    rec = wfdb.rdrecord(fixture_record("100"), physical=False)
    write_edf(tmp_path / "a.edf", [("ECG", 360, rec.d_signal[:, 0], 200, 1024)],
              discontinuous=damage == "discontinuous")
    if callable(damage):
        (tmp_path / "a.edf").write_bytes(damage((tmp_path / "a.edf").read_bytes()))
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--edf", tmp_path / "a.edf", "--out", tmp_path / "o")
    assert code == 2 and message in err, err
    assert not (tmp_path / "o").exists()


def test_edf_data_records_as_announced(tmp_path):
    """An EDF file's data records: as many as its header announces (any after them are not read), or, announced
    as -1 (still being recorded when the header was written), as many as it holds."""
    rec = wfdb.rdrecord(fixture_record("100"), physical=False)
    write_edf(tmp_path / "a.edf", [("ECG", 360, rec.d_signal[:, 0], 200, 1024)])
    whole = recordings.read_edf(tmp_path / "a.edf")
    assert whole.fs == 360 and len(whole.x) == 180 * 360
    np.testing.assert_allclose(whole.x, (rec.d_signal[:180 * 360, 0] - 1024) / 200, atol=1e-9)
    data = (tmp_path / "a.edf").read_bytes()
    (tmp_path / "a.edf").write_bytes(data[:236] + b"-1      " + data[244:])
    np.testing.assert_array_equal(recordings.read_edf(tmp_path / "a.edf").x, whole.x)
    (tmp_path / "a.edf").write_bytes(data[:236] + b"179     " + data[244:])
    np.testing.assert_array_equal(recordings.read_edf(tmp_path / "a.edf").x, whole.x[:179 * 360])


@pytest.mark.parametrize("kind", ["dynamic-int8", "static-int8"])
def test_int8_models_and_realtime_runs(diagnostic_run, realtime_run, tmp_path, capsys, kind):
    for run in (diagnostic_run, realtime_run):
        code, out, err = run_predict(capsys, "--model", run, "--kind", kind, "--record", fixture_record("100"),
                                     "--out", tmp_path / run.name, "--no-plot")
        assert code == 0, err
        assert f"({kind})" in out
    code, _, _ = run_predict(capsys, "--model", realtime_run / "model_int8_static.onnx", "--record",
                             fixture_record("100"), "--out", tmp_path / "file", "--no-plot")
    assert code == 0


def test_nan_gap_marks_its_beats_unclassifiable(diagnostic_run, tmp_path, capsys):
    x, _ = dl.read_record(fixture_record("100"))
    x[360 * 60:360 * 70] = np.nan  # 10 s with the lead off
    pd.DataFrame({"ECG": x}).to_csv(tmp_path / "gap.csv", index=False)
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--csv", tmp_path / "gap.csv", "--fs", 360,
                               "--out", tmp_path / "o")
    assert code == 0
    assert "3600 missing samples (10 s; empty, text or NaN cells)" in err and "unclassifiable (Q)" in err
    frame = pd.read_csv(tmp_path / "o" / "gap_beats.csv")
    bad = frame[~frame["classifiable"]]
    assert len(bad) >= 1 and (bad["class"] == "Q").all() and bad["p_N"].isna().all()
    assert ((bad["time_s"] > 59) & (bad["time_s"] < 72)).all()
    assert frame["classifiable"].sum() >= len(frame) - 3


def test_a_leading_gap_finds_the_beats_of_a_recording_that_starts_after_it(diagnostic_run):
    """A lead connected late (NaN first) on a DC-offset signal: the beats after the gap are those of the
    same signal starting where the gap ends, each at its place; the gap is not a step that rings."""
    x, _ = dl.read_record(fixture_record("100"))
    x = x[:360 * 60] + 5.0  # an offset, as ADC counts or a DC-coupled front end give
    start = 360 * 2
    holed = x.copy()
    holed[:start] = np.nan
    filled, gaps = recordings.prepare(recordings.Recording(holed, dl.FS, "late", "MLII"))
    beats = predict.classify(filled, predict.load_classifier(diagnostic_run), gaps)
    assert np.array_equal(beats["sample"], detect_r_peaks(x[start:], dl.FS) + start)
    assert (filled[:start] == x[start]).all()  # held at the first sample present, not at 0


def test_the_default_folder_keeps_one_input_per_name(diagnostic_run, tmp_path, monkeypatch, capsys):
    """predictions/<name> is refused to a second input of the same name (it would overwrite the first's
    outputs unseen), with --out as the fix; the same input runs again into it."""
    x, _ = dl.read_record(fixture_record("100"))
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        pd.DataFrame({"ECG": x[:360 * 30]}).to_csv(tmp_path / folder / "ecg.csv", index=False)
    monkeypatch.chdir(tmp_path)
    args = ["--model", diagnostic_run, "--fs", 360, "--no-plot"]
    assert run_predict(capsys, *args, "--csv", "a/ecg.csv")[0] == 0
    first = (tmp_path / "predictions" / "ecg" / "ecg_beats.csv").read_bytes()
    code, _, err = run_predict(capsys, *args, "--csv", "b/ecg.csv")
    assert code == 2 and "holds the outputs of" in err and str(tmp_path / "a" / "ecg.csv") in err
    assert "--out" in err and "Traceback" not in err
    assert (tmp_path / "predictions" / "ecg" / "ecg_beats.csv").read_bytes() == first
    assert run_predict(capsys, *args, "--csv", "a/ecg.csv")[0] == 0  # a rerun of the same input
    assert run_predict(capsys, *args, "--csv", "b/ecg.csv", "--out", "other")[0] == 0
    # --out naming the marked folder overwrites it on purpose: it then holds b's outputs, and says so
    assert run_predict(capsys, *args, "--csv", "b/ecg.csv", "--out", "predictions/ecg")[0] == 0
    assert run_predict(capsys, *args, "--csv", "b/ecg.csv")[0] == 0
    assert run_predict(capsys, *args, "--csv", "a/ecg.csv")[0] == 2


def test_blank_lines_of_a_one_column_csv_are_missing_samples(tmp_path):
    """Some exports write a one-column file's empty cells as blank lines: they are gaps in place, not
    lines to skip (every later beat would move earlier); blank lines at the end are no samples."""
    x, _ = dl.read_record(fixture_record("100"))
    x = x[:360 * 60]
    lines = ["ECG"] + [f"{v:.5f}" for v in x]
    lines[1 + 360 * 30:1 + 360 * 31] = [""] * 360  # 1 s of empty cells
    (tmp_path / "blank.csv").write_text("\n".join(lines) + "\n\n\n")
    rec = csv_input.read_csv(tmp_path / "blank.csv", 360.0)
    assert len(rec.x) == len(x) and np.isnan(rec.x[360 * 30:360 * 31]).all()
    assert np.isfinite(rec.x[360 * 31:]).all() and np.allclose(rec.x[360 * 31:], x[360 * 31:], atol=1e-5)


def write_csv(tmp_path, values, name="bad.csv"):
    pd.DataFrame({"ECG": values}).to_csv(tmp_path / name, index=False)
    return tmp_path / name


def stale_copy(run, to, name, rr=True, channels=True, template=None):
    """A copy of a run as an earlier version wrote it: models that did not record their template's
    rule, trained (channels=True) without the template channel and (rr=True, a version further back)
    on the old six RR features; or (template) a model whose template was made by another rule."""
    import json
    import shutil

    import torch

    shutil.copytree(run, to)
    payload = torch.load(to / "model_float32.pt", weights_only=False)
    config = json.loads((to / "config.json").read_text())
    for meta in (payload, config):
        if template:
            meta["template"] = [template]
        else:
            del meta["template"]
        if channels:
            del meta["window_channels"]
        if rr:
            meta["rr_features"] = ["pre", "post", "long", "pre/long", "post/long", "post/pre"]
    torch.save(payload, to / "model_float32.pt")
    (to / "config.json").write_text(json.dumps(config))
    return to / name


def damaged_copy(run, dst, name, damage):
    """A copy of a run's config.json and static int8 ONNX model with `name`'s bytes damaged; the
    copy's folder, or the damaged model."""
    import shutil

    dst.mkdir()
    for f in ("config.json", "model_int8_static.onnx"):
        shutil.copy(run / f, dst / f)
    (dst / name).write_bytes(damage((dst / name).read_bytes()))
    return dst / name if name.endswith(".onnx") else dst


@pytest.mark.parametrize("case, message", [
    ("missing_record", "no WFDB record at"),
    ("missing_csv", "not found"),
    ("csv_folder", "is a folder; give the path of a CSV file in it"),
    ("csv_pipe", "is not a regular file (a pipe, standard input or a device)"),
    ("missing_edf", "EDF file"),
    ("not_edf", "cannot read"),
    ("unknown_lead", "has no lead 'V9'; it has MLII, V5"),
    ("no_fs", "--fs is required with --csv"),
    ("bad_fs", "--fs must be a positive sampling rate"),
    ("unknown_column", "has no column 'II'; columns are ECG"),
    ("short", "at least 5 s"),
    ("flat", "flat line (lead off?)"),
    ("all_nan", "has no numeric column that could be an ECG lead; columns: ECG"),
    ("two_inputs", "give one input"),
    ("fs_as_interval", "is outside 100-20000 Hz; it is samples per second"),
    ("plot_past_end", "--plot-start 500 s is past the end of the recording (60.0 s)"),
    ("low_confidence", "--low-confidence is a probability, between 0 and 1; got 5"),
    ("fs_with_record", "--fs is for --csv only; a WFDB record states its rate"),
    ("column_with_edf", "--column is for --csv only; an EDF file states its rate"),
    ("lead_with_csv", "--lead is for WFDB records and EDF files; a CSV's column is chosen with --column V5"),
    ("kind_with_model_file", "--kind static-int8 picks model_int8_static.onnx of a run directory; "),
    ("plot_seconds_inf", "--plot-seconds must be a positive number of seconds, got inf"),
    ("plot_start_nan", "--plot-start must be a number of seconds from the start, at least 0; got nan"),
    ("cut_onnx", "is not a readable ONNX model (cut short in a copy?)"),
    ("cut_config", "is not a run's config.json (cut short or edited?)"),
    ("config_without_mode", "is not a run's config.json (cut short or edited?)"),
    ("jit_model", "is a TorchScript export (for other programs); pass a run directory"),
    ("missing_model", "not found: pass a run directory"),
    ("not_a_model", "is not a Deep-ECG model"),
    ("stale_model", "Retrain it with `python main.py --mode diagnostic`"),
    ("stale_onnx", "Retrain it with `python main.py --mode diagnostic`"),
    ("no_template", "trained on the window channels of an earlier version; this version computes beat, "
                    "template. Retrain it with `python main.py --mode diagnostic`"),
    ("no_template_onnx", "trained on the window channels of an earlier version"),
    ("other_template", "trained on the template median of the last 16 beats; this version computes median "
                       "of the last 32 beats. Retrain it with `python main.py --mode diagnostic`"),
])
def test_bad_input_exits_2_with_a_clear_message_and_no_output(diagnostic_run, tmp_path, capsys, case, message):
    x, _ = dl.read_record(fixture_record("100"))
    model, rec = str(diagnostic_run), ["--record", fixture_record("100")]
    args = {
        "missing_record": lambda: ["--model", model, "--record", tmp_path / "nope"],
        "missing_csv": lambda: ["--model", model, "--csv", tmp_path / "nope.csv", "--fs", 360],
        "csv_folder": lambda: ["--model", model, "--csv", tmp_path, "--fs", 360],
        "csv_pipe": lambda: (os.mkfifo(tmp_path / "fifo"), ["--model", model, "--csv", tmp_path / "fifo", "--fs", 360])[1],
        "missing_edf": lambda: ["--model", model, "--edf", tmp_path / "nope.edf"],
        "not_edf": lambda: ["--model", model, "--edf", write_csv(tmp_path, x, "x.edf")],
        "unknown_lead": lambda: ["--model", model, *rec, "--lead", "V9"],
        "no_fs": lambda: ["--model", model, "--csv", write_csv(tmp_path, x)],
        "bad_fs": lambda: ["--model", model, "--csv", write_csv(tmp_path, x), "--fs", -5],
        "unknown_column": lambda: ["--model", model, "--csv", write_csv(tmp_path, x), "--fs", 360, "--column", "II"],
        "short": lambda: ["--model", model, "--csv", write_csv(tmp_path, x[:360 * 3]), "--fs", 360],
        "flat": lambda: ["--model", model, "--csv", write_csv(tmp_path, np.full(360 * 60, 0.25)), "--fs", 360],
        "all_nan": lambda: ["--model", model, "--csv", write_csv(tmp_path, np.full(360 * 60, np.nan)), "--fs", 360],
        "two_inputs": lambda: ["--model", model, *rec, "--csv", write_csv(tmp_path, x), "--fs", 360],
        "fs_as_interval": lambda: ["--model", model, "--csv", write_csv(tmp_path, x), "--fs", 1 / 360],
        "plot_past_end": lambda: ["--model", model, "--csv", write_csv(tmp_path, x[:360 * 60]), "--fs", 360,
                                  "--plot-start", 500],
        "low_confidence": lambda: ["--model", model, *rec, "--low-confidence", 5],
        "fs_with_record": lambda: ["--model", model, *rec, "--fs", 250],
        "column_with_edf": lambda: ["--model", model, "--edf", tmp_path / "any.edf", "--column", "ECG"],
        "lead_with_csv": lambda: ["--model", model, "--csv", write_csv(tmp_path, x), "--fs", 360, "--lead", "V5"],
        "kind_with_model_file": lambda: ["--model", diagnostic_run / "model_float32.pt", *rec, "--kind", "static-int8"],
        "plot_seconds_inf": lambda: ["--model", model, *rec, "--plot-seconds", "inf"],
        "plot_start_nan": lambda: ["--model", model, *rec, "--plot-start", "nan"],
        "cut_onnx": lambda: ["--model", damaged_copy(diagnostic_run, tmp_path / "cut", "model_int8_static.onnx",
                                                     lambda b: b[:5000]), *rec],
        "cut_config": lambda: ["--model", damaged_copy(diagnostic_run, tmp_path / "cut", "config.json",
                                                       lambda b: b[:9]) / "model_int8_static.onnx", *rec],
        "config_without_mode": lambda: ["--model", damaged_copy(diagnostic_run, tmp_path / "cut", "config.json",
                                                                lambda b: b"{}") / "model_int8_static.onnx", *rec],
        "jit_model": lambda: ["--model", diagnostic_run / "model_float32.jit.pt", *rec],
        "missing_model": lambda: ["--model", tmp_path / "no_run", *rec],
        "not_a_model": lambda: ["--model", write_csv(tmp_path, x, "model.pt"), *rec],
        "stale_model": lambda: ["--model", stale_copy(diagnostic_run, tmp_path / "old", "model_float32.pt"), *rec],
        "stale_onnx": lambda: ["--model", stale_copy(diagnostic_run, tmp_path / "old", "model_int8_static.onnx"), *rec],
        "no_template": lambda: ["--model", stale_copy(diagnostic_run, tmp_path / "old", "model_float32.pt", rr=False), *rec],
        "no_template_onnx": lambda: ["--model", stale_copy(diagnostic_run, tmp_path / "old", "model_int8_static.onnx", rr=False), *rec],
        "other_template": lambda: ["--model", stale_copy(diagnostic_run, tmp_path / "old", "model_float32.pt", rr=False,
                                                         channels=False, template="median of the last 16 beats"), *rec],
    }[case]()
    code, _, err = run_predict(capsys, *args, "--out", tmp_path / "out")
    assert code == 2
    assert err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_resampling_a_gap_does_not_ring_into_its_neighbours():
    """A NaN gap in a 250 Hz signal stays NaN at 360 Hz; the samples beside it are not disturbed."""
    fs = 250
    t = np.arange(20 * fs) / fs
    x = 1.0 + 0.5 * np.sin(2 * np.pi * 1.2 * t)  # a DC offset: zero-filling the gap would ring
    holed = x.copy()
    holed[2000:2500] = np.nan
    y, ref = recordings.resample(holed, fs), recordings.resample(x, fs)
    gap = np.isnan(y)
    edges = np.flatnonzero(np.diff(gap.astype(int)))
    assert len(edges) == 2 and abs(edges[0] - 2000 * 360 / fs) <= 2
    near = np.r_[edges[0] - 30:edges[0], edges[1] + 2:edges[1] + 30]
    assert np.max(np.abs(y[near] - ref[near])) < 0.02


@pytest.mark.parametrize("kind", ["float32", "static-int8"])
def test_a_model_that_did_not_record_its_template_rule_still_loads(diagnostic_run, tmp_path, kind):
    """Versions before the rule was recorded all made the template alike: their models are not stale."""
    stale_copy(diagnostic_run, tmp_path / "old", "model_float32.pt", rr=False, channels=False)
    x, _ = dl.read_record(fixture_record("100"))
    old = predict.classify(x, predict.load_classifier(tmp_path / "old", kind))
    now = predict.classify(x, predict.load_classifier(diagnostic_run, kind))
    assert np.array_equal(old["class"], now["class"]) and len(now["class"]) > 100


def test_an_output_folder_that_cannot_be_made_is_an_error_not_a_traceback(diagnostic_run, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--record", fixture_record("100"),
                               "--out", tmp_path / "taken", "--no-plot")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: cannot make the folder")
    assert "(--out): a file of that name exists; choose another --out" in err


def test_csv_dialects_a_time_column_and_a_text_cell_read_as_the_plain_csv(diagnostic_run, tmp_path, capsys):
    """A semicolon CSV with decimal commas, a one-column CSV with decimal commas, a leading time column, a
    packet counter, no header row, a units row under the header and a 'lead-off' text cell in the lead give
    the beats of the plain one-column CSV (the text cell is a gap)."""
    x, _ = dl.read_record(fixture_record("100"))
    x = np.round(x[:360 * 60], 3)
    write_csv(tmp_path, x, "plain.csv")
    (tmp_path / "semi.csv").write_text("ECG;V5\n" + "".join(f"{v:.3f};0,5\n".replace(".", ",") for v in x))
    (tmp_path / "comma.csv").write_text("ECG\n" + "".join(f"{v:.3f}\n".replace(".", ",") for v in x))
    pd.DataFrame({"time": np.arange(len(x)) / 360, "ECG": x}).to_csv(tmp_path / "time.csv", index=False)
    cells = [f"{v:.3f}" for v in x]
    cells[1000] = "lead-off"
    (tmp_path / "text.csv").write_text("ECG\n" + "\n".join(cells) + "\n")
    # Not leads either: a device's packet counter (wrapping at 256), a time rounded to 10 ms (it repeats)
    pd.DataFrame({"counter": np.arange(len(x)) % 256, "ECG": x}).to_csv(tmp_path / "counter.csv", index=False)
    pd.DataFrame({"t": np.round(np.arange(len(x)) / 360, 2), "ECG": x}).to_csv(tmp_path / "t10ms.csv", index=False)
    (tmp_path / "noheader.csv").write_text("".join(f"{v:.3f}\n" for v in x))  # the first row is a sample
    (tmp_path / "units.csv").write_text("time,ECG\ns,mV\n" + "".join(f"{k / 360:.4f},{v:.3f}\n" for k, v in enumerate(x)))
    # The separator is told by the rows, not the header (which may hold a ',' in a name) nor its absence
    rows = "".join(f"{k / 360:.4f};{v:.3f}\n".replace(".", ",") for k, v in enumerate(x))
    (tmp_path / "semi_named.csv").write_text("Zeit [s];EKG [mV, Abl. II]\n" + rows)
    (tmp_path / "semi_noheader.csv").write_text(rows)
    (tmp_path / "comma_noheader.csv").write_text("".join(f"{v:.3f}\n".replace(".", ",") for v in x))
    (tmp_path / "tab_named.csv").write_text("time\tECG (mV, II)\n" + "".join(f"{k / 360:.4f}\t{v:.3f}\n"
                                                                           for k, v in enumerate(x)))
    (tmp_path / "latin1.csv").write_bytes(("Zeit;EKG µV\n" + rows).encode("latin-1"))
    frames = {}
    dialects = ("semi_named", "semi_noheader", "comma_noheader", "tab_named", "latin1")
    for name in ("plain", "semi", "comma", "time", "text", "counter", "t10ms", "noheader", "units", *dialects):
        code, _, err = run_predict(capsys, "--model", diagnostic_run, "--csv", tmp_path / f"{name}.csv", "--fs", 360,
                                   "--out", tmp_path / name, "--no-plot")
        assert code == 0, err
        frames[name] = pd.read_csv(tmp_path / name / f"{name}_beats.csv")
    for name in ("semi", "comma", "time", "counter", "t10ms", "noheader", "units", *dialects):
        assert frames[name].equals(frames["plain"]), name
    text, plain = frames["text"], frames["plain"]
    assert text["sample"].equals(plain["sample"])
    near = (text["sample"] - 1000).abs() < 360
    assert (text.loc[near, "class"] == "Q").any() and text.loc[~near, "class"].equals(plain.loc[~near, "class"])


def test_a_file_name_with_spaces_and_dots_gets_every_output(diagnostic_run, tmp_path, capsys):
    """wfdb refuses such a name for annotations: it used to fail after the CSV was written (exit 1)."""
    x, _ = dl.read_record(fixture_record("100"))
    code, out, err = run_predict(capsys, "--model", diagnostic_run, "--csv",
                                 write_csv(tmp_path, x[:360 * 60], "holter 3.day1.csv"), "--fs", 360,
                                 "--out", tmp_path / "o")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "holter 3.day1_beats.csv", "holter 3.day1_strip.png", "holter_3_day1.aami"]
    ann = wfdb.rdann(str(tmp_path / "o" / "holter_3_day1"), "aami")
    assert len(ann.sample) == len(pd.read_csv(tmp_path / "o" / "holter 3.day1_beats.csv"))


def test_a_failure_while_writing_leaves_no_output(diagnostic_run, tmp_path, capsys, monkeypatch):
    import errno

    def broken_plot(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(predict, "plot_strip", broken_plot)
    with pytest.raises(dl.DataError, match="cannot write the outputs in .*: No space left on device; choose another "
                                           "folder with --out"):
        predict.run(predict.build_parser().parse_args(
            ["--model", str(diagnostic_run), "--record", fixture_record("100"), "--out", str(tmp_path / "o")]))
    assert not (tmp_path / "o").exists()  # the folder it made, taken away again once empty


def test_a_rerun_into_the_same_folder_leaves_no_strip_of_other_beats(diagnostic_run, tmp_path, capsys, monkeypatch):
    """The strip shows the beats of the run that drew it: a rerun with --no-plot, or one that fails part-way,
    does not leave an earlier run's strip beside its outputs."""
    import errno

    out = tmp_path / "o"
    args = ["--model", diagnostic_run, "--record", fixture_record("100"), "--out", out]
    assert run_predict(capsys, *args)[0] == 0 and (out / "100_strip.png").is_file()
    assert run_predict(capsys, *args, "--no-plot", "--lead", "V5")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["100.aami", "100_beats.csv"]

    assert run_predict(capsys, *args)[0] == 0 and (out / "100_strip.png").is_file()

    def broken_plot(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(predict, "plot_strip", broken_plot)
    code, _, err = run_predict(capsys, *args, "--lead", "V5")
    assert code == 2 and "No space left on device" in err
    assert list(out.iterdir()) == []  # the new CSV and annotations, and the earlier strip


def test_ctrl_c_is_one_line_and_exit_130_and_leaves_no_output(diagnostic_run, tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict, "write_annotations", interrupted)  # the beats CSV written, the folder made
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--record", fixture_record("100"),
                               "--out", tmp_path / "o")
    assert code == 130 and err == "interrupted\n"
    assert not (tmp_path / "o").exists()


def test_a_strip_longer_than_the_recording_stops_at_its_end(diagnostic_run, tmp_path, capsys):
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--record", fixture_record("100"),
                               "--out", tmp_path / "o", "--plot-start", "170", "--plot-seconds", "1e308")
    assert code == 0, err
    assert (tmp_path / "o" / "100_strip.png").read_bytes()[:8] == PNG_SIGNATURE


def test_an_onnx_model_beside_another_modes_config_is_refused(diagnostic_run, realtime_run, tmp_path, capsys):
    """On a device the mode comes from config.json; the ONNX file records its own, and they must agree."""
    import shutil

    (tmp_path / "mixed").mkdir()
    shutil.copy(realtime_run / "config.json", tmp_path / "mixed" / "config.json")
    shutil.copy(diagnostic_run / "model_int8_static.onnx", tmp_path / "mixed" / "model_int8_static.onnx")
    assert predict.load_classifier(diagnostic_run / "model_int8_static.onnx").mode == "diagnostic"
    code, _, err = run_predict(capsys, "--model", tmp_path / "mixed" / "model_int8_static.onnx", "--record",
                               fixture_record("100"), "--out", tmp_path / "o")
    assert code == 2 and "is a diagnostic model, but the config.json beside it is a realtime run's" in err, err


def test_noise_without_an_ecg_is_flagged(diagnostic_run, tmp_path, capsys):
    """Beats 'found' in noise do not resemble each other: a warning says so; a real ECG gets none."""
    x, _ = dl.read_record(fixture_record("100"))
    noise = np.random.default_rng(0).normal(scale=0.05, size=360 * 60)
    for name, values, flagged in (("noise", noise, True), ("ecg", x[:360 * 60], False)):
        code, _, err = run_predict(capsys, "--model", diagnostic_run, "--csv", write_csv(tmp_path, values, f"{name}.csv"),
                                   "--fs", 360, "--out", tmp_path / name, "--no-plot")
        assert code == 0, err
        assert ("the beats found do not resemble each other" in err) == flagged, err


def test_a_time_column_that_disagrees_with_fs_is_warned_of(tmp_path, capsys):
    """A CSV's time column (seconds, milliseconds, ...) stepping at another rate than --fs: a warning naming
    both rates. One that agrees (rounded in print, or with a gap), a sample index, or a clock too coarse or
    irregular to tell, passes in silence."""
    x, _ = dl.read_record(fixture_record("100"))
    x = x[:360 * 20]
    t = np.arange(len(x)) / 360
    files = {"s": {"time": t}, "ms": {"t_ms": t * 1000}, "index": {"time": np.arange(len(x))},
             "rounded": {"Time (s)": np.round(t, 3)}, "gap": {"time": np.where(t < 10, t, t + 5)},
             "whole_seconds": {"timestamp": 1.7e9 + np.floor(t)},
             "jitter": {"time": t + np.random.default_rng(0).uniform(0, 0.01, len(t))}}
    for name, columns in files.items():
        pd.DataFrame({**columns, "ECG": x}).to_csv(tmp_path / f"{name}.csv", index=False)
        assert len(csv_input.read_csv(tmp_path / f"{name}.csv", 360.0).x) == len(x)
        assert "warning" not in capsys.readouterr().err, name
    assert len(csv_input.read_csv(tmp_path / "s.csv", 250.0).x) == len(x)
    assert ("column 'time' steps 0.00277778 per row: 360 Hz if it counts seconds, 3.6e+05 Hz if milliseconds, but "
            "--fs says 250 Hz; if --fs is wrong, so is every RR interval and class") in capsys.readouterr().err
    pd.DataFrame({"time_ms": np.arange(len(x)), "ECG": x}).to_csv(tmp_path / "ms1000.csv", index=False)
    csv_input.read_csv(tmp_path / "ms1000.csv", 360.0)  # 1000 Hz in milliseconds, not a sample index
    assert "column 'time_ms' steps 1 per row" in capsys.readouterr().err


def test_a_text_first_cell_is_a_gap_not_a_units_row(tmp_path):
    """A one-column file whose lead was connected late ('lead-off' first) keeps every sample in place."""
    values = "".join(f"{np.sin(k / 10):.3f}\n" for k in range(1000))
    (tmp_path / "late.csv").write_text("ECG\nlead-off\nlead-off\n" + values)
    rec = csv_input.read_csv(tmp_path / "late.csv", 360.0)
    assert len(rec.x) == 1002 and np.isnan(rec.x[:2]).all() and rec.x[2] == 0 and rec.x[3] == 0.1
    (tmp_path / "units.csv").write_text("ECG\n[uV]\n" + values)
    assert len(csv_input.read_csv(tmp_path / "units.csv", 360.0).x) == 1000
    for units in ("msec,mV", "Seconds,Volts", "hh:mm:ss.mmm,millivolts"):  # any all-text row of several columns
        (tmp_path / "units2.csv").write_text("time,ECG\n" + units + "\n" + "".join(
            f"{k / 360:.4f},{np.sin(k / 10):.3f}\n" for k in range(1000)))
        assert len(csv_input.read_csv(tmp_path / "units2.csv", 360.0).x) == 1000, units


def test_a_record_cut_short_and_a_foreign_onnx_model_are_named(diagnostic_run, tmp_path, capsys):
    import shutil

    import onnx
    from onnx import TensorProto, helper

    for ext in ("hea", "dat"):
        shutil.copy(Path(fixture_record("100")).with_suffix(f".{ext}"), tmp_path / f"100.{ext}")
    with open(tmp_path / "100.dat", "r+b") as f:
        f.truncate(99_999)
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--record", tmp_path / "100", "--out", tmp_path / "o")
    assert code == 2 and "100.dat holds fewer samples than 100.hea promises" in err and "Copy the record again" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, foreign / "model.onnx")
    shutil.copy(Path(diagnostic_run) / "config.json", foreign / "config.json")
    code, _, err = run_predict(capsys, "--model", foreign / "model.onnx", "--record", fixture_record("100"),
                               "--out", tmp_path / "o")
    assert code == 2 and "is not a Deep-ECG model: it takes x and gives y" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_an_output_that_cannot_be_written_is_one_error_line_and_leaves_nothing(diagnostic_run, tmp_path, capsys):
    out = tmp_path / "o"
    (out / "100_strip.png").mkdir(parents=True)  # a folder where the strip's file should go
    code, _, err = run_predict(capsys, "--model", diagnostic_run, "--record", fixture_record("100"), "--out", out)
    assert code == 2 and err.startswith("error: cannot write the outputs in") and "(100_strip.png)" in err
    assert sorted(p.name for p in out.iterdir()) == ["100_strip.png"]  # the CSV and annotations taken away


@pytest.mark.parametrize("rows, header, expected", [
    (["995,1011", "990,1020", "1001,1005"], None, [[995, 990, 1001], [1011, 1020, 1005]]),  # two leads' counts
    (["0,995", "0,990", "1,1001"], None, [[0, 0, 1], [995, 990, 1001]]),  # a marker and counts
    (["-0,145", "0,150", "1,020"], None, [[-0.145, 0.15, 1.02]]),  # one column, decimal commas (-0: no integer)
    (["0,355", "0,061", "0,350"], None, [[0.355, 0.061, 0.35]]),  # all positive: 061 is no whole number
    (["0,355", "0,061", "0,350"], "EKG, mV", [[0.355, 0.061, 0.35]]),  # a ',' in the one name
    (["0,355", "0", "0,061"], "ECG", [[0.355, 0, 0.061]]),  # 0,000 written as 0 (Excel, %g)
    (["-0,145", "0,150", "1,020"], '"EKG [mV, Abl. II]"', [[-0.145, 0.15, 1.02]]),  # one name, quoted
    (["-1,145", "0,150", "1,020"], "EKG [mV, Abl. II]", [[-1.145, 0.15, 1.02]]),  # one name, a ',' in brackets
    (["0,0000;-0,1450", "# lead off", "# lead off", "0,0028;-0,1400"], "Zeit;EKG",
     [[0, np.nan, np.nan, 0.0028], [-0.145, np.nan, np.nan, -0.14]]),
])
def test_csv_rows_of_digits_and_commas(tmp_path, rows, header, expected):
    """Rows of whole numbers split by ',' are two columns unless the header names one column or a row reads
    -0,... or 0,0... (no whole number is written so); a ';' file's comment lines do not hide its separator (they
    are gaps)."""
    (tmp_path / "f.csv").write_text("".join(f"{r}\n" for r in ([header] if header else []) + rows))
    columns = [csv_input.read_csv(tmp_path / "f.csv", 360.0, str(i)).x for i in range(len(expected))]
    assert [list(c) for c in columns] == [pytest.approx(e, nan_ok=True) for e in expected]
    with pytest.raises(dl.DataError, match="has no column"):
        csv_input.read_csv(tmp_path / "f.csv", 360.0, str(len(expected)))


def test_a_headerless_csv_of_one_whole_number_and_digits_is_read_as_two_columns_with_a_warning(tmp_path, capsys):
    """Rows that all read 0,ddd (no -0, no 0,0dd) could be one column with a decimal comma or a constant column
    beside counts: read as two, and the user told how to have it read as one."""
    (tmp_path / "f.csv").write_text("0,355\n0,361\n0,350\n")
    assert list(csv_input.read_csv(tmp_path / "f.csv", 360.0, "1").x) == [355, 361, 350]
    err = capsys.readouterr().err
    assert "each row is 0,<digits> (0,355): read as two columns" in err and "give it a header row" in err
    (tmp_path / "g.csv").write_text("995,1011\n990,1020\n")  # two leads' counts: nothing to warn of
    csv_input.read_csv(tmp_path / "g.csv", 360.0, "1")
    assert "read as two columns" not in capsys.readouterr().err


@pytest.mark.parametrize("names, chosen", [(("time", "Resp", "ECG"), "ECG"), (("time", "V5", "MLII"), "MLII"),
                                           (("time", "Resp", "Lead II"), "Lead II"), (("Resp", "V1 [mV]"), "V1 [mV]"),
                                           (("ECG_Rate", "ECG_Raw"), "ECG_Raw"),
                                           (("V5 (mV)", "MLII (mV)"), "MLII (mV)"), (("ECG HR", "RESP", "II"), "II"),
                                           (("I [mA]", "ECG"), "ECG"), (("Resp", "ECG calibrated", "V1"), "ECG calibrated")])
def test_a_csv_lead_is_chosen_by_its_name_as_a_records_is(tmp_path, capsys, names, chosen):
    """MLII, else the first ECG-like name, as --lead would choose in a record (it was the first column that is
    not a time or counter: Resp, V5, a heart rate)."""
    k = np.arange(3000)
    columns = {n: (k / 360 if n == "time" else np.sin(k / (10 + 7 * i))) for i, n in enumerate(names)}
    pd.DataFrame(columns).to_csv(tmp_path / "f.csv", index=False)
    assert csv_input.read_csv(tmp_path / "f.csv", 360.0).lead == chosen
    assert f"'{chosen}'" in capsys.readouterr().err
    assert recordings.lead_like(chosen)


def test_a_csv_without_lead_names_takes_its_first_numeric_column(tmp_path):
    k = np.arange(3000)
    pd.DataFrame({"a": np.sin(k / 500), "b": np.sin(k / 10)}).to_csv(tmp_path / "g.csv", index=False)
    assert csv_input.read_csv(tmp_path / "g.csv", 360.0).lead == "a"  # no ECG-like name: the first


def test_a_records_lead_is_mlii_with_a_unit_too(capsys):
    assert recordings.choose_lead(["V5 (mV)", "MLII (mV)"], None, "record r", "lead", "channel") == "MLII (mV)"
    assert capsys.readouterr().err == ""  # MLII: no warning
    assert recordings.choose_lead(["RESP", "ECG HR", "II"], None, "record r", "lead", "channel") == "II"
    assert "has no MLII lead; using its first ECG-like channel 'II'" in capsys.readouterr().err
    for names, lead in ((["RESP", "CM5"], "CM5"), (["RESP", "D3"], "D3"), (["PLETH", "RESP", "V"], "V"),
                        (["RESP,", "II,"], "II,")):  # Holter, European, monitor names; trailing commas (BIDMC)
        assert recordings.choose_lead(names, None, "record r", "lead", "channel") == lead


def test_mains_hum_is_found_at_its_own_rate_and_where_it_folds():
    """60 Hz hum sampled at 100 Hz reads as 40 Hz (the check once looked for it at 60 Hz after resampling and never
    found it); an ECG holds almost none."""
    rng = np.random.default_rng(0)
    for fs, hz in ((100, 60), (125, 50), (250, 60), (360, 50)):
        t = np.arange(fs * 30) / fs
        hum = 0.3 * np.sin(2 * np.pi * hz * t + 0.3) + 0.01 * rng.normal(size=len(t))
        assert recordings.mains_fraction(hum, fs) > 0.9, (fs, hz)
    x, _ = dl.read_record(fixture_record("100"))
    assert recordings.mains_fraction(x, 360) < 0.01
    x[1000:2000] = np.nan  # a gap counts as the signal's median
    assert recordings.mains_fraction(x, 360) < 0.01


def test_a_wfdb_signal_file_given_as_csv_says_which_option_reads_it(tmp_path):
    """A binary signal file (a record's .dat) passed to --csv: one line naming the problem and the options
    that read such files, not pandas' tokenizer message alone."""
    dat = Path(fixture_record("100") + ".dat")
    with pytest.raises(predict.InputError) as caught:
        csv_input.read_csv(dat, 360.0)
    message = str(caught.value)
    assert "cannot read" in message and "--record" in message and "\n" not in message


def _mains_fraction_of_the_whole(x, fs):
    """recordings.mains_fraction as it was before it sampled long recordings: a Welch spectrum of every sample."""
    from scipy.signal import welch

    x = np.where(np.isnan(x), np.nanmedian(x), x)
    f, p = welch(x - np.mean(x), fs, nperseg=min(len(x), 2048))
    mains = (np.abs(f - 50) <= recordings.MAINS_BAND_HZ) | (np.abs(f - 60) <= recordings.MAINS_BAND_HZ)
    return float(p[mains].sum() / p[f >= 0.5].sum())


def test_the_mains_check_reads_a_sample_of_a_long_recording_only_and_says_the_same():
    x, _ = dl.read_record(fixture_record("100"))
    assert recordings.mains_fraction(x, 360) == _mains_fraction_of_the_whole(x, 360)  # up to 48 min: whole, as before
    rng = np.random.default_rng(1)
    day = np.tile(x, 16)  # 3 h 12 min: sampled
    t = np.arange(len(day)) / 360
    for hum_share in (0.0, 0.3, 0.6, 0.9):  # hum over the first part of the recording (electrodes off)
        y = day + 0.01 * rng.normal(size=len(day))
        end = int(hum_share * len(y))
        y[:end] = 0.3 * np.sin(2 * np.pi * 50 * t[:end]) + 0.01 * rng.normal(size=end)
        sampled, whole = recordings.mains_fraction(y, 360), _mains_fraction_of_the_whole(y, 360)
        assert abs(sampled - whole) < 0.01, (hum_share, sampled, whole)
        assert (sampled > recordings.MAX_MAINS) == (whole > recordings.MAX_MAINS)


def test_inference_loads_no_training_code(diagnostic_run):
    """predict, stream and loading a model (float32 or ONNX) import neither the training code nor quantization nor
    main.py: inference stands on its own."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys, predict, stream\n"
            f"predict.load_classifier({str(diagnostic_run)!r}, 'float32')\n"
            f"predict.load_classifier({str(diagnostic_run)!r}, 'static-int8')\n"
            "print(sorted(m for m in ('train', 'quantize', 'main', 'losses') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
