"""Exports give the PyTorch model's classes; the static int8 model is small, whole-network int8
and close to float32."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch

import data_loader as dl
import quantize
from export import OnnxModel, export_onnx, export_torchscript, rr_input_ranges
from train import predict_proba

N_RR = len(dl.RR_FEATURES["diagnostic"])


@pytest.fixture(scope="module")
def beats(trained_model):
    return trained_model.beats


@pytest.fixture(scope="module")
def model(trained_model):
    return trained_model.model


@pytest.fixture(scope="module")
def files(model, tmp_path_factory, fixture_dir):
    d = tmp_path_factory.mktemp("export")
    export_onnx(model, d / "f.onnx", N_RR)
    export_torchscript(model, d / "f.jit.pt", N_RR)
    # Calibrated on the DS1 (training) records of the fixture only.
    train = dl.load_beats(fixture_dir, ["101", "106", "118", "124"], "diagnostic", progress=False)
    cx, crr = quantize.calibration_beats(train)
    quantize.quantize_static_onnx(d / "f.onnx", d / "q.onnx", cx, crr)
    quantize.quantize_dynamic_onnx(d / "f.onnx", d / "qd.onnx")
    return d, (cx, crr)


def _torch_proba(model, beats):
    return predict_proba(model, beats.x, beats.rr)


def test_onnx_float_gives_the_same_classes_and_probabilities(model, beats, files):
    d, _ = files
    ref = _torch_proba(model, beats)
    got = OnnxModel(d / "f.onnx", threads=1).predict_proba(beats.x, beats.rr)
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_torchscript_gives_the_same_classes_and_probabilities(model, beats, files):
    d, _ = files
    ts = torch.jit.load(str(d / "f.jit.pt"))
    ref = _torch_proba(model, beats)
    got = predict_proba(ts, beats.x, beats.rr)
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("name", ["q.onnx", "qd.onnx"])
def test_int8_is_close_to_float32(model, beats, files, name):
    d, _ = files
    ref = _torch_proba(model, beats)
    got = OnnxModel(d / name, threads=1).predict_proba(beats.x, beats.rr)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.97
    assert np.abs(got - ref).mean() < 0.02  # stated tolerance: mean absolute probability change


def test_static_int8_is_small_and_every_layer_is_int8(files):
    d, _ = files
    size, float_size = (d / "q.onnx").stat().st_size, (d / "f.onnx").stat().st_size
    assert size <= 100_000 and float_size / size >= 2.5
    ops = [n.op_type for n in onnx.load(str(d / "q.onnx")).graph.node]
    assert "QLinearConv" in ops and ("QGemm" in ops or "QLinearMatMul" in ops)
    assert not {"Conv", "Gemm", "MatMul"} & set(ops), f"float layers left: {sorted(set(ops))}"


def test_the_float32_onnx_file_holds_standard_operators_only(files):
    """README: model_float32.onnx runs in any ONNX engine; the static int8 file needs ONNX Runtime's own operators."""
    d, _ = files
    assert {n.domain for n in onnx.load(str(d / "f.onnx")).graph.node} <= {"", "ai.onnx"}
    assert {n.domain for n in onnx.load(str(d / "q.onnx")).graph.node} <= {"", "ai.onnx", "com.microsoft"}


def test_calibration_sample_holds_every_class_present(beats):
    x, rr = quantize.calibration_beats(beats, per_class=50)
    present = np.unique(beats.y)
    assert len(x) >= sum(min(50, int((beats.y == c).sum())) - 2 for c in present)
    assert x.shape[1:] == (len(dl.WINDOW_CHANNELS), dl.WINDOW) and rr.shape[1] == N_RR


def _with_annotation_gaps(beats):
    """The beats, with one S and one V beat after a 100-s gap in the annotations (as in 207)."""
    gapped = copy.deepcopy(beats)
    for c in ("S", "V"):
        i = np.flatnonzero(gapped.y == dl.CLASSES.index(c))[0]
        gapped.rr[i] = 100.0
    return gapped


def test_calibration_leaves_out_annotation_gaps(beats):
    _, rr = quantize.calibration_beats(_with_annotation_gaps(beats))
    assert rr.max() < 10


def test_static_int8_keeps_rr_resolution_despite_annotation_gaps(model, beats, files, tmp_path):
    """An extreme RR value among the calibration beats would stretch the int8 range of the RR input
    and blur every ordinary RR interval (a seed's int8 model lost 13% agreement on DS1 so): with
    such gaps in the training beats, the int8 model stays as close to float32 as without them."""
    ref, change = _torch_proba(model, beats), {}
    for name, calib in (("gaps", _with_annotation_gaps(beats)), ("clean", beats)):
        quantize.quantize_static_onnx(files[0] / "f.onnx", tmp_path / f"{name}.onnx",
                                      *quantize.calibration_beats(calib))
        got = OnnxModel(tmp_path / f"{name}.onnx", threads=1).predict_proba(beats.x, beats.rr)
        change[name] = np.abs(got - ref).mean()
    assert change["gaps"] < 2 * change["clean"], change


@pytest.mark.parametrize("mode", ["diagnostic", "realtime"])
def test_the_readme_deployment_example_runs_as_written(mode, request):
    """docs/deploy.md's "Deploying the model" snippet, run as a user would copy it (with a real run of either
    mode and a record for its placeholders): the run's mode's inputs, one class per annotated beat, the
    classes OnnxModel gives."""
    run = request.getfixturevalue(f"{mode}_run")
    import re
    from pathlib import Path

    from conftest import ROOT, fixture_record

    readme = (ROOT / "docs" / "deploy.md").read_text()
    section = readme[readme.index("# Deploying the model"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "runs/<run>" in code and "data/mitdb/100" in code
    code = code.replace("runs/<run>", str(Path(run))).replace("data/mitdb/100", fixture_record("100"))
    scope: dict = {}
    exec(compile(code, "docs/deploy.md", "exec"), scope)
    peaks, _ = dl.read_beats(fixture_record("100"))
    assert scope["mode"] == mode and len(scope["classes"]) == len(peaks) > 100
    np.testing.assert_array_equal(scope["rr"], dl.rr_features(peaks, dl.FS, mode))
    assert set(scope["classes"]) <= set(dl.CLASSES)
    onnx_model = OnnxModel(Path(run) / "model_int8_static.onnx")
    expected = onnx_model.predict_proba(scope["window"], scope["rr"]).argmax(1)
    assert scope["classes"] == [dl.CLASSES[i] for i in expected]


@pytest.mark.parametrize("mode", ["diagnostic", "realtime"])
def test_the_static_int8_models_rr_range_is_where_its_inputs_stop_counting(mode, request):
    """README's rule 7: an RR input past every range rr_input_ranges reports reads as the ranges' end (a longer
    pause changes nothing), while one inside them does count; a range after the logarithm ends above 0."""
    run = request.getfixturevalue(f"{mode}_run")
    ranges = rr_input_ranges(run / "model_int8_static.onnx")
    designs = quantize.load_model(run / "model_float32.pt")[1]["model_kwargs"]["member_kwargs"]  # one per network
    assert len(ranges) == len({d["rr_scale"] for d in designs})  # one per scale: networks of one design share it
    assert sorted(r[0] > 0 for r in ranges) == sorted(d["rr_scale"] == "log" for d in designs)  # a logarithm's: > 0
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    assert 0 <= lo < 0.8 < hi < 10
    onnx_model = OnnxModel(run / "model_int8_static.onnx", threads=1)
    x = np.random.default_rng(0).normal(size=(8, 2, dl.WINDOW)).astype(np.float32)
    rr = np.full((8, len(dl.RR_FEATURES[mode])), 0.8, np.float32)

    def with_pre(value):  # the first input, 'pre', set to value
        changed = rr.copy()
        changed[:, 0] = value
        return onnx_model.predict_proba(x, changed)

    np.testing.assert_array_equal(with_pre(hi), with_pre(3 * hi))
    assert not np.array_equal(with_pre(hi), with_pre(0.8))
    if lo > 0:  # a logarithm's range ends above 0
        np.testing.assert_array_equal(with_pre(lo), with_pre(lo / 3))


@pytest.mark.parametrize("name", ["q.onnx", "qd.onnx"])
def test_every_int8_layer_computes_exact_integers_whatever_the_cpu(files, name):
    """Each integer layer of the static and dynamic int8 files, fed the worst-case uint8 activations (0 and 255),
    gives what exact integer arithmetic gives. An 8-bit weight file fails this on x86-64 without VNNI (AVX2 only:
    pairs of products saturate int16; up to 203 uint8 steps off under `qemu-x86_64 -cpu Haswell`), whichever
    CPU computes the reference."""
    from int8_reference import exact_integers, layer_differences

    diffs = layer_differences(files[0] / name)
    assert exact_integers(diffs), diffs


def test_int8_weights_cannot_saturate_on_any_cpu(files, tmp_path, diagnostic_run, capsys):
    """The files' int8 weights are 7-bit: no pair of uint8 x int8 products overflows int16 on any CPU. An 8-bit
    file (as earlier versions made) is flagged on every layer, on whatever CPU this runs, and predict warns."""
    from export import saturating_weights

    d, (cx, crr) = files
    assert saturating_weights(d / "q.onnx") == [] and saturating_weights(d / "qd.onnx") == []

    quantize.quantize_static_onnx(d / "f.onnx", tmp_path / "old.onnx", cx, crr, reduce_range=False)
    layers = [n for n in onnx.load(str(tmp_path / "old.onnx")).graph.node if n.op_type in ("QLinearConv", "QGemm")]
    assert len(saturating_weights(tmp_path / "old.onnx")) == len(layers) == 7
    import shutil

    import predict

    run = shutil.copytree(diagnostic_run, tmp_path / "run")  # a run of an earlier version: 8-bit static int8
    quantize.quantize_static_onnx(run / "model_float32.onnx", run / "model_int8_static.onnx", cx, crr, reduce_range=False)
    capsys.readouterr()
    predict.load_classifier(run, "static-int8")
    assert "quantized by an earlier version with 8-bit weights" in capsys.readouterr().err
    predict.load_classifier(diagnostic_run, "static-int8")
    assert "8-bit" not in capsys.readouterr().err


def test_a_files_kind_is_read_from_its_stamp_only_while_the_file_is_as_stamped(files, tmp_path, diagnostic_run,
                                                                                 capsys):
    """predict reads an exported file's kind and saturating weights from its metadata (no onnx import); a file
    changed after export (here: quantized again with 8-bit weights, the stamp copied over) is read from its graph:
    its kind told right and the saturation warned of."""
    import shutil

    import onnxruntime as ort

    import predict
    from export import FLOAT32_ONNX, MODEL_FILES, onnx_kind, stamped_kind

    for kind, name in [("float32", FLOAT32_ONNX)] + [(k, MODEL_FILES[k]) for k in ("dynamic-int8", "static-int8")]:
        path = diagnostic_run / name
        meta = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
        assert stamped_kind(path, meta) == onnx_kind(path) == (kind, [])
    run = shutil.copytree(diagnostic_run, tmp_path / "run")
    stamped = onnx.load(str(run / "model_float32.onnx"))
    quantize.quantize_static_onnx(run / "model_float32.onnx", run / "model_int8_static.onnx", *files[1],
                                  reduce_range=False)
    changed = onnx.load(str(run / "model_int8_static.onnx"))
    del changed.metadata_props[:]
    changed.metadata_props.extend(stamped.metadata_props)  # "float32", no saturating weights: no longer true
    onnx.save(changed, str(run / "model_int8_static.onnx"))
    meta = ort.InferenceSession(str(run / "model_int8_static.onnx")).get_modelmeta().custom_metadata_map
    assert meta["deep_ecg_kind"] == "float32" and stamped_kind(run / "model_int8_static.onnx", meta) is None
    capsys.readouterr()
    assert predict.load_classifier(run, "static-int8").kind == "static-int8"
    assert "quantized by an earlier version with 8-bit weights" in capsys.readouterr().err
