"""bench/accuracy.py --resume reuses a finished run only if it was run with today's options."""
from __future__ import annotations

import importlib.util
import json

from conftest import ROOT, smoke_args

spec = importlib.util.spec_from_file_location("accuracy_bench", ROOT / "bench" / "accuracy.py")
accuracy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(accuracy)


def test_resume_reuses_only_runs_with_the_same_options(tmp_path, monkeypatch):
    import config
    import main

    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = smoke_args(out, cache, "--seed", "2")
    assert not accuracy.finished_alike(out, argv)  # nothing there yet
    assert main.main(argv) == 0
    assert accuracy.finished_alike(out, argv)
    # where it reads and writes is not what it computes
    assert accuracy.finished_alike(out, smoke_args(out, tmp_path / "elsewhere", "--seed", "2", "--device", "cpu"))
    assert not accuracy.finished_alike(out, smoke_args(out, cache, "--seed", "3"))
    assert not accuracy.finished_alike(out, smoke_args(out, cache, "--seed", "2", "--gamma", "0.5"))
    # a changed default is a changed option: the run recorded the gamma it trained with
    with monkeypatch.context() as m:
        m.setitem(config.GAMMA, "diagnostic", 0.25)
        assert not accuracy.finished_alike(out, argv)
    assert accuracy.finished_alike(out, argv)
    # so is a changed model input, recorded or not (older versions did not record the template's rule)
    saved = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "template"}))
    assert accuracy.finished_alike(out, argv)  # as older versions made it: the same template
    with monkeypatch.context() as m:
        m.setattr(config, "TEMPLATE_BEATS", 16)
        assert not accuracy.finished_alike(out, argv)
    (out / "config.json").write_text(json.dumps(saved))
    with monkeypatch.context() as m:
        m.setattr(config, "TEMPLATE_BEATS", 16)
        assert not accuracy.finished_alike(out, argv)
    assert accuracy.finished_alike(out, argv)
    # and a changed network: a run records its design (model.design); one from before it did is not reused
    with monkeypatch.context() as m:
        m.setitem(config.DESIGNS, saved["mode"], ({"rr_scale": "log", "pool": 5},))
        assert not accuracy.finished_alike(out, argv)
    assert accuracy.finished_alike(out, argv)
    (out / "config.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "model"}))
    assert not accuracy.finished_alike(out, argv)
    # earlier versions recorded one design for every member: still today's if it is
    (out / "config.json").write_text(json.dumps({**saved, "model": saved["model"][0]}))
    assert accuracy.finished_alike(out, argv) == (len(set(map(json.dumps, saved["model"]))) == 1)
    (out / "config.json").write_text(json.dumps(saved))
    (out / "metrics.json").unlink()  # an interrupted run is never reused
    assert not accuracy.finished_alike(out, argv)
