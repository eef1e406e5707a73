"""main.py end to end on the fixture: every artifact, the cache, and --out protection."""
from __future__ import annotations

import json

import numpy as np
import pytest
import wfdb

import data_loader as dl
import main
import predict
from conftest import PNG_SIGNATURE, PROTOCOL_LABEL, fixture_record, smoke_args

ARTIFACTS = ("config.json", "metrics.json", "report.md", "confusion_float32.png",
             "confusion_dynamic-int8.png", "training_curves.png", "model_float32.pt", "model_int8_dynamic.onnx",
             "predictions.csv")
MODELS = {"float32": "model_float32.pt", "dynamic-int8": "model_int8_dynamic.onnx"}


def _ds2_reference_counts():
    """Reference AAMI counts of the DS2 fixture records, straight from the annotation files."""
    counts = np.zeros(len(dl.CLASSES), dtype=int)
    for rec in dl.DS2[:2]:
        for s in wfdb.rdann(fixture_record(rec), "atr").symbol:
            if s in PROTOCOL_LABEL:
                counts[dl.CLASSES.index(PROTOCOL_LABEL[s])] += 1
    return counts


def test_every_artifact_is_written(e2e_run):
    for name in ARTIFACTS:
        path = e2e_run.out / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert "Traceback" not in e2e_run.proc.stderr
    assert not [p.name for p in e2e_run.out.iterdir() if p.name.startswith(".")], "temporary files left"


def test_config_json_records_the_run(e2e_run):
    config = json.loads((e2e_run.out / "config.json").read_text())
    assert config["mode"] == "diagnostic" and config["epochs"] == 1 and config["max_records"] == 2
    assert config["train_records"] == list(dl.DS1[:2]) and not config["validate"]
    assert config["validation_records"] == []  # all of DS1 trains; the last averaged weights are kept
    assert config["test_records"] == list(dl.DS2[:2])
    assert list(config["rr_features"]) == list(dl.RR_FEATURES["diagnostic"])


@pytest.mark.parametrize("name", list(MODELS))
def test_metrics_json_is_complete_and_consistent(e2e_run, name):
    metrics = json.loads((e2e_run.out / "metrics.json").read_text())
    m = metrics[name]
    cm = np.asarray(m["confusion"])
    ref = _ds2_reference_counts()
    assert cm.shape == (5, 5)
    assert cm.sum() == ref.sum() == 435  # 222 N + 1 S (100) and 212 N (103)
    np.testing.assert_array_equal(cm.sum(axis=1), ref)  # rows are the reference classes
    total = cm.sum()
    for i, c in enumerate(dl.CLASSES):
        pc = m["per_class"][c]
        assert set(pc) >= {"se", "ppv", "fpr", "f1"}
        tp, fn, fp = cm[i, i], cm[i].sum() - cm[i, i], cm[:, i].sum() - cm[i, i]
        tn = total - tp - fn - fp
        assert pc["se"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
        assert pc["ppv"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert pc["fpr"] == pytest.approx(fp / (fp + tn) if fp + tn else 0.0)
        se, ppv = pc["se"], pc["ppv"]
        assert pc["f1"] == pytest.approx(2 * se * ppv / (se + ppv) if se + ppv else 0.0)
    assert m["accuracy"] == pytest.approx(np.trace(cm) / total)
    assert m["macro_f1_nsv"] == pytest.approx(np.mean([m["per_class"][c]["f1"] for c in "NSV"]))
    assert m["size_bytes"] == (e2e_run.out / MODELS[name]).stat().st_size


def test_int8_model_file_is_smaller(e2e_run):
    metrics = json.loads((e2e_run.out / "metrics.json").read_text())
    assert metrics["dynamic-int8"]["size_bytes"] < metrics["float32"]["size_bytes"]


@pytest.mark.parametrize("name", list(MODELS))
def test_saved_models_load_and_reproduce_the_reported_confusion(e2e_run, fixture_dir, name):
    clf = predict.load_classifier(e2e_run.out, name)
    assert clf.mode == "diagnostic" and clf.kind == name
    test = dl.load_beats(fixture_dir, dl.DS2[:2], "diagnostic", progress=False)
    pred = clf.predict_proba(test.x, test.rr).argmax(1)
    cm = np.bincount(test.y * 5 + pred, minlength=25).reshape(5, 5)
    reported = np.asarray(json.loads((e2e_run.out / "metrics.json").read_text())[name]["confusion"])
    np.testing.assert_array_equal(cm, reported)


def test_predictions_csv_matches_the_confusion_matrices(e2e_run):
    import pandas as pd

    pred = pd.read_csv(e2e_run.out / "predictions.csv", dtype={"record": str})
    metrics = json.loads((e2e_run.out / "metrics.json").read_text())
    assert sorted(pred["record"].unique()) == sorted(dl.DS2[:2])
    for name in MODELS:
        k = len(dl.CLASSES)
        idx = pred["reference"].map(dl.CLASS_INDEX) * k + pred[f"pred_{name}"].map(dl.CLASS_INDEX)
        cm = np.bincount(idx, minlength=k * k).reshape(k, k)
        np.testing.assert_array_equal(cm, metrics[name]["confusion"])


def test_report_md_shows_both_models(e2e_run):
    text = (e2e_run.out / "report.md").read_text()
    metrics = json.loads((e2e_run.out / "metrics.json").read_text())
    assert text.startswith("# ")
    for name in MODELS:
        assert name in text
        assert f"{metrics[name]['accuracy']:.4f}" in text
    assert "DS2" in text and "last averaged weights kept" in text and "val loss" not in text


@pytest.mark.parametrize("name", ["confusion_float32.png", "confusion_dynamic-int8.png", "training_curves.png"])
def test_plots_are_valid_png(e2e_run, name):
    data = (e2e_run.out / name).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 100
    assert data[-8:-4] == b"IEND"


def test_existing_out_is_refused_without_overwrite(e2e_run, capsys):
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in e2e_run.out.iterdir()}
    rc = main.main(smoke_args(e2e_run.out, e2e_run.cache))
    assert rc == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in e2e_run.out.iterdir()}
    assert after == before


def test_second_run_reads_the_cache(e2e_run, fixture_dir, monkeypatch, tmp_path):
    cache_before = {p.name: p.stat().st_mtime_ns for p in e2e_run.cache.iterdir()}
    assert len(cache_before) == 4  # 2 train + 2 test records (no validation set by default)
    calls = []
    real = dl.preprocess_record
    monkeypatch.setattr(dl, "preprocess_record", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))

    rc = main.main(smoke_args(tmp_path / "run2", e2e_run.cache))
    assert rc == 0
    assert calls == [], "preprocessing ran again although every record was cached"
    assert {p.name: p.stat().st_mtime_ns for p in e2e_run.cache.iterdir()} == cache_before
    first = json.loads((e2e_run.out / "metrics.json").read_text())
    second = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert second["test_counts"] == first["test_counts"]

    # what the cache holds is what preprocessing gives
    cached = next(p for p in e2e_run.cache.iterdir() if p.name.startswith("100-"))
    fresh = real(fixture_dir / "100", "diagnostic")
    with np.load(cached) as z:
        for key in ("x", "rr", "y", "sample"):
            np.testing.assert_array_equal(z[key], fresh[key])


def test_cache_is_keyed_by_mode(e2e_run, fixture_dir, monkeypatch, tmp_path):
    """A real-time load must not reuse the diagnostic cache (its filter and features differ)."""
    calls = []
    real = dl.preprocess_record
    monkeypatch.setattr(dl, "preprocess_record", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))
    cache = tmp_path / "cache"
    cache.mkdir()
    for p in e2e_run.cache.iterdir():
        (cache / p.name).write_bytes(p.read_bytes())
    dl.load_beats(fixture_dir, ["100"], "realtime", cache, offline=True, progress=False)
    assert len(calls) == 1
    dl.load_beats(fixture_dir, ["100"], "diagnostic", cache, offline=True, progress=False)
    assert len(calls) == 1
