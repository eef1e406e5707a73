"""Adapting a model to one patient: `predict --suggest K` writes the beats to confirm, `main.py adapt` fits the model
to the confirmed ones and leaves a run that predict and stream load; bad labels are one clear error."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import wfdb

import adapt
import data_loader as dl
import main
import review
from conftest import PNG_SIGNATURE, fixture_record
from export import load_model


def run_cmd(capsys, *args):
    code = main.main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def beats_124(diagnostic_run):
    """Record 124's excerpt (N, S, V and F beats) as the diagnostic run's network sees it."""
    model, _ = load_model(diagnostic_run / "model_float32.pt")
    b = dl.load_beats(dl.Path(fixture_record("124")).parent, ["124"], "diagnostic", progress=False)
    return model, b


def test_adapting_fits_the_head_to_the_confirmed_beats_and_leaves_the_rest_of_the_network(beats_124):
    model, b = beats_124
    feats = adapt.head_inputs(model, b.x, b.rr)
    before = adapt.head_logits(model, feats).argmax(1)
    idx = np.arange(0, len(b.y), 2)  # every other beat confirmed
    adapted = adapt.adapt_model(model, b.x, b.rr, idx, b.y[idx], feats=feats)
    after = adapt.head_logits(adapted, feats).argmax(1)
    # each class's share of its confirmed beats recognised, on average (the fit weighs a rare class up)
    recall = lambda pred: np.mean([(pred[idx][b.y[idx] == c] == c).mean() for c in np.unique(b.y[idx])])  # noqa
    assert recall(after) > recall(before) + 0.05
    # what the head decides from is the trained network's: only the head moved
    old, new = model.state_dict(), adapted.state_dict()
    moved = {k for k in old if not torch.equal(old[k], new[k])}
    assert moved and all(".head." in f".{k}" for k in moved), moved
    # the adapted model is an ordinary one: its full forward gives what its head gives
    with torch.no_grad():
        full = adapted(torch.from_numpy(b.x), torch.from_numpy(b.rr)).numpy()
    assert np.allclose(full, adapt.head_logits(adapted, feats), atol=1e-4)
    # and the model it came from is untouched
    assert torch.equal(model.state_dict()[next(iter(moved))], old[next(iter(moved))])


def test_no_confirmed_beat_leaves_the_model_as_it_was(beats_124):
    model, b = beats_124
    same = adapt.adapt_model(model, b.x, b.rr, [], [])
    assert all(torch.equal(a, c) for a, c in zip(model.state_dict().values(), same.state_dict().values()))


def test_suggested_beats_are_distinct_cluster_representatives_outside_the_excluded(beats_124):
    model, b = beats_124
    exclude = np.zeros(len(b.y), bool)
    exclude[:20] = True
    idx, sizes = adapt.suggest(model, b.x, b.rr, 8, exclude=exclude)
    assert len(idx) == 8 == len(set(idx)) and (np.diff(idx) > 0).all()
    assert idx.min() >= 20 and sizes.sum() == len(b.y) - 20
    # the clusters follow the beats' classes: the 8 representatives hold more than one class
    assert len(set(b.y[idx])) >= 2


def labels_csv(path, times, classes):
    pd.DataFrame({"time_s": times, "class": classes}).to_csv(path, index=False)
    return path


def test_suggest_then_adapt_then_predict_and_stream(realtime_run, tmp_path, capsys):
    """The clinician's round trip, real-time mode: the review list, corrected, adapts the model; the adapted run is
    loaded by predict (every kind) and by the stream, which gives the batch classes."""
    rec = fixture_record("124")
    code, out, err = run_cmd(capsys, "predict", "--model", realtime_run, "--record", rec, "--suggest", 6,
                             "--out", tmp_path / "pred", "--no-plot")
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "pred" / "124_review.csv")
    assert list(rows.columns) == ["time_s", "sample", "class", "confidence", "why"] and len(rows) == 6
    ann = wfdb.rdann(str(tmp_path / "pred" / "124"), review.REVIEW_EXT)
    assert list(ann.sample) == list(rows["sample"]) and list(ann.symbol) == list(rows["class"])
    assert (tmp_path / "pred" / "124_review.png").read_bytes()[:8] == PNG_SIGNATURE
    # the person corrects the list with the reference labels
    ref_peaks, ref_y = dl.read_beats(rec)
    near = np.abs(ref_peaks[None, :] - rows["sample"].to_numpy()[:, None]).argmin(1)
    rows["class"] = [dl.CLASSES[ref_y[i]] for i in near]
    rows.to_csv(tmp_path / "pred" / "124_review.csv", index=False)
    code, out, err = run_cmd(capsys, "adapt", "--model", realtime_run, "--record", rec, "--labels",
                             tmp_path / "pred" / "124_review.csv", "--out", tmp_path / "adapted")
    assert code == 0, err
    run = tmp_path / "adapted"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["mode"] == "realtime" and cfg["adapted"]["confirmed_beats"] == 6
    beats = pd.read_csv(run / "124_beats.csv")
    confirmed = pd.read_csv(run / "confirmed_labels.csv")
    got = beats.set_index("sample").loc[confirmed["sample"], "class"].tolist()
    assert got == confirmed["class"].tolist() == rows["class"].tolist()
    for kind in ("float32", "static-int8", "dynamic-int8"):
        code, out, err = run_cmd(capsys, "predict", "--model", run, "--kind", kind, "--record", rec, "--out",
                                 tmp_path / f"p-{kind}", "--no-plot")
        assert code == 0, err
    from int8_reference import exact_integers, layer_differences

    for name in ("model_int8_static.onnx", "model_int8_dynamic.onnx"):  # the same integers on every CPU (test_export)
        diffs = layer_differences(run / name)
        assert exact_integers(diffs), diffs
    batch = pd.read_csv(tmp_path / "p-static-int8" / "124_beats.csv")
    code, out, err = run_cmd(capsys, "stream", "--model", run, "--record", rec, "--speed", 0)
    assert code == 0, err
    streamed = [line.split()[2] for line in out.splitlines() if line.strip().endswith("R-peak)")]
    assert streamed == batch["class"].tolist()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"


def test_a_wfdb_annotation_file_and_the_first_five_minutes(diagnostic_run, tmp_path, capsys):
    rec = fixture_record("124")
    code, out, err = run_cmd(capsys, "adapt", "--model", diagnostic_run, "--record", rec, "--labels", f"{rec}.atr",
                             "--until", 60, "--out", tmp_path / "a")
    assert code == 2 and "on no detected beat" in err and "--ignore-unmatched" in err  # a beat the detector missed
    code, out, err = run_cmd(capsys, "adapt", "--model", diagnostic_run, "--record", rec, "--labels", f"{rec}.atr",
                             "--until", 60, "--ignore-unmatched", "--out", tmp_path / "a")
    assert code == 0, err
    assert "left out 1 label(s) on no detected beat" in err
    ref_peaks, _ = dl.read_beats(rec)
    confirmed = pd.read_csv(tmp_path / "a" / "confirmed_labels.csv")
    assert 0 < len(confirmed) <= (ref_peaks < 60 * dl.FS).sum() and confirmed["time_s"].max() < 60


@pytest.mark.parametrize("case, message", [
    ("unknown_class", "row 4: unknown class 'X'; use an AAMI class (N S V F Q) or an MIT-BIH beat symbol"),
    ("outside", "label(s) outside the recording (0 to 180.0 s), the first at 500.000 s"),
    ("no_beat", "1 label(s) on no detected beat (none within 150 ms): "),
    ("empty", "is empty: give a CSV with a header"),
    ("header_only", "holds no labels (a header only)"),
    ("no_class_column", "a labels CSV needs a column time_s (or sample, at the recording's rate) and a column class"),
    ("missing", "labels file"),
    ("not_annotations", "as a WFDB annotation file"),
    ("not_empty_out", "exists and is not empty"),
])
def test_bad_labels_exit_2_with_one_line_and_write_nothing(diagnostic_run, tmp_path, capsys, case, message):
    rec = fixture_record("124")
    peaks, _ = dl.read_beats(rec)
    t = peaks[:3] / dl.FS
    out = tmp_path / "out"
    labels = {
        "unknown_class": lambda: labels_csv(tmp_path / "l.csv", t, ["N", "V", "X"]),
        "outside": lambda: labels_csv(tmp_path / "l.csv", [t[0], 500.0], ["N", "N"]),
        "no_beat": lambda: labels_csv(tmp_path / "l.csv", [t[0], (t[1] + t[2]) / 2], ["N", "N"]),
        "empty": lambda: (tmp_path / "l.csv").write_text("") and None or tmp_path / "l.csv",
        "header_only": lambda: (tmp_path / "l.csv").write_text("time_s,class\n") and tmp_path / "l.csv",
        "no_class_column": lambda: (tmp_path / "l.csv").write_text("time_s,kind\n1,N\n") and tmp_path / "l.csv",
        "missing": lambda: tmp_path / "nope.csv",
        "not_annotations": lambda: (tmp_path / "l.atr").write_bytes(b"not an annotation file") and tmp_path / "l.atr",
        "not_empty_out": lambda: (out.mkdir(), (out / "keep").write_text("x"),
                                  labels_csv(tmp_path / "l.csv", t, ["N", "N", "N"]))[2],
    }[case]()
    if case == "no_beat":
        assert t[2] - t[1] > 0.5  # (halfway between two beats is no beat)
    code, _, err = run_cmd(capsys, "adapt", "--model", diagnostic_run, "--record", rec, "--labels", labels,
                           "--out", out)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in err
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in [labels, out] if p.exists()) or case == "missing", left
    if case != "not_empty_out":
        assert not out.exists()


def test_mit_bih_symbols_are_read_exactly():
    assert [dl.CLASSES[review.label_class(s, "x")] for s in ("N", "e", "E", "j", "J", "A", "f", "F", "/")] == \
        ["N", "N", "V", "N", "S", "S", "Q", "F", "Q"]
