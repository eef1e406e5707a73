"""What a user sees when data or options are wrong: exit code 2 and one clear line, no traceback."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wfdb

import config
import data_loader as dl
import main
from conftest import FIXTURE_DIR, FIXTURE_RECORDS, ROOT, copy_records, smoke_args

SMOKE_RECORDS = ["101", "106", "220", "223", "100", "103"]  # --max-records 2


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    return lines[0]


def _records_named(msg: str, data_dir) -> set[str]:
    return set(re.findall(r"\b\d{3}\b", msg.replace(str(data_dir), "<dir>")))


def test_missing_records_offline_exit_2_with_one_message(tmp_path, capsys):
    data = copy_records(tmp_path / "data", ["101", "106"])
    rc = main.main(smoke_args(tmp_path / "run", tmp_path / "cache", "--validate", data_dir=data))
    assert rc == 2
    msg = _one_error_line(capsys.readouterr().err)
    assert _records_named(msg, data) == {"220", "223", "100", "103"}  # validation and test records
    assert str(data) in msg
    assert "physionet.org/content/mitdb" in msg  # where to get them
    assert "--offline" in msg  # ... or how to let the program download them
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_missing_single_file_is_reported(tmp_path):
    data = copy_records(tmp_path / "data", ["100", "103"])
    (data / "103.atr").unlink()
    with pytest.raises(dl.DataError) as err:
        dl.ensure_records(data, ["100", "103"], offline=True)
    assert _records_named(str(err.value), data) == {"103"}


def test_failed_data_check_does_not_block_the_retry(tmp_path, capsys):
    data = copy_records(tmp_path / "data", ["101", "106"])
    args = smoke_args(tmp_path / "run", tmp_path / "cache", data_dir=data)
    assert main.main(args) == 2
    capsys.readouterr()
    copy_records(data, SMOKE_RECORDS)  # the user fetches the missing records and retries
    rc = main.main(args)
    assert "already holds a run" not in capsys.readouterr().err
    assert rc == 0


@pytest.mark.parametrize("failure", ["disk full", "interrupted"])
def test_a_run_that_fails_part_way_leaves_no_run_behind(tmp_path, capsys, monkeypatch, failure):
    """A write that fails (a full disk, a folder not writable) or Ctrl-C once config.json marks the folder: one
    error line (no traceback), and nothing marking a run, so the same command can be run again."""
    import errno

    def fail(*args, **kwargs):
        if failure == "interrupted":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "101.npz"))

    made, given = tmp_path / "made", tmp_path / "given"
    given.mkdir()
    (given / "notes.txt").write_text("the user's")
    for out in (made, given):
        with monkeypatch.context() as m:
            m.setattr(dl, "load_beats", fail)
            rc = main.main(smoke_args(out, tmp_path / "cache"))
        err = capsys.readouterr().err
        if failure == "interrupted":
            assert rc == 130 and err == "interrupted\n"
        else:
            assert rc == 2 and err == (f"error: cannot write {tmp_path / 'cache' / '101.npz'}: No space left on "
                                       f"device; choose another --out or --cache-dir, or free space there\n")
    assert not made.exists()  # made by the run, and empty once its mark is gone: taken away
    assert sorted(p.name for p in given.iterdir()) == ["notes.txt"]  # given: only the run's mark taken away
    assert not (tmp_path / "cache").exists()  # made by the run and still empty


def test_a_refused_or_failed_run_never_removes_what_it_did_not_make(tmp_path, capsys, monkeypatch):
    """A default --out that clashes with an earlier run of the same second is refused and left whole; an --out
    through 'new/..' is the folder above, not a folder the run made (it once removed it all)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(main.time, "strftime", lambda fmt: "20260101-120000")
    earlier = tmp_path / "runs" / "diagnostic-seed0-20260101-120000"
    earlier.mkdir(parents=True)
    (earlier / "config.json").write_text("{}")
    (earlier / "model_float32.pt").write_text("the earlier run's")
    args = smoke_args(tmp_path / "unused", tmp_path / "cache")
    del args[args.index("--out"):args.index("--out") + 2]
    assert main.main(args) == 2 and "already holds a run" in capsys.readouterr().err
    assert sorted(p.name for p in earlier.iterdir()) == ["config.json", "model_float32.pt"]
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("the user's")
    with monkeypatch.context() as m:
        m.setattr(dl, "load_beats", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        assert main.main(smoke_args(tmp_path / "work" / "new" / "..", tmp_path / "cache")) == 130
    assert (tmp_path / "work" / "notes.txt").read_text() == "the user's"
    assert not (tmp_path / "work" / "config.json").exists()


def test_a_failed_overwrite_leaves_no_mark_and_another_runs_mark_is_kept(tmp_path, capsys, monkeypatch):
    """--overwrite over a run that then fails: its config.json replaced the earlier run's, so the folder holds
    no run any more (no mark over a mix of two runs). A config.json another run wrote since stays."""
    out, cache = tmp_path / "run", tmp_path / "cache"
    out.mkdir()
    (out / "config.json").write_text('{"mode": "diagnostic"}')
    (out / "metrics.json").write_text("{}")
    with monkeypatch.context() as m:
        m.setattr(dl, "load_beats", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        assert main.main(smoke_args(out, cache, "--overwrite")) == 130
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    capsys.readouterr()
    args = main.build_parser().parse_args(smoke_args(out, cache))
    made = {}
    main.check_args(args, made)
    (out / "config.json").write_text("{}")
    made["config"] = (out / "config.json").stat().st_ino
    (out / "other.json").write_text('{"mode": "realtime"}')
    (out / "other.json").replace(out / "config.json")  # a run beside it with the same --out wrote its own
    main.undo_failed_run(args, made)
    assert (out / "config.json").read_text() == '{"mode": "realtime"}'


def _run_past_its_mark(tmp_path, load_beats: str, before: str = ""):
    """A training run in its own process, whose data_loader.load_beats is `load_beats` (source of a function
    body), once it has written config.json; `before`: source run first (e.g. a signal ignored)."""
    import time

    out = tmp_path / "run"
    script = (f"import signal, sys, time; {before}sys.path.insert(0, sys.argv[1]); import data_loader as dl, main\n"
              f"def load_beats(*a, **k):\n    {load_beats}\n"
              "dl.load_beats = load_beats; sys.exit(main.main(sys.argv[2:]))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(ROOT), *smoke_args(out, tmp_path / "cache")],
                            stderr=subprocess.PIPE, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not (out / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (out / "config.json").exists()
    return proc, out


def test_a_run_stopped_by_sigterm_leaves_no_mark(tmp_path):
    """`timeout`, a job scheduler or a closed terminal stop a run with SIGTERM or SIGHUP: undone as Ctrl-C."""
    import signal

    proc, out = _run_past_its_mark(tmp_path, "time.sleep(60)")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert proc.stderr.read().decode().strip() == "stopped"
    assert not out.exists()  # its mark removed, and the folder it made with it


def test_a_write_that_fails_names_the_file_asked_for_and_leaves_nothing(tmp_path):
    """outputs.atomic_path (every output and cache file): a full disk's error names the file, not the temporary
    one beside it, and no part-written file is left."""
    import errno

    import numpy as np

    from outputs import atomic_path

    with pytest.raises(OSError) as info:
        with atomic_path(tmp_path / "101.npz") as tmp:
            np.savez(tmp, a=np.arange(3))
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.filename == str(tmp_path / "101.npz") and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_folder_where_no_file_can_be_made_is_named_by_the_file_asked_for(tmp_path, monkeypatch):
    """A read-only folder fails at the temporary file itself (mkstemp): the error still names the file asked for."""
    import errno
    import tempfile

    from outputs import write_text

    def read_only(dir, prefix, suffix):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, f"{prefix}x1y2z3{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as info:
        write_text(tmp_path / "config.json", "{}")
    assert info.value.filename == str(tmp_path / "config.json") and info.value.errno == errno.EROFS
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["model_float32.pt", "model_float32.jit.pt"])
def test_a_model_file_the_disk_cannot_hold_is_one_error_line_and_leaves_no_run(e2e_run, tmp_path, name):
    """torch.save and torch.jit.save write from C++: on a full disk the first raised a RuntimeError (a traceback,
    exit 1), the second aborted the process (exit 134) and left config.json (the mark of a finished run) and a
    temporary file. A file-size limit just under the model file's size fails its write as a full disk does
    (EFBIG for ENOSPC); the cache is e2e_run's, already whole, so the models are the first files too large."""
    import resource
    import signal

    limit = (e2e_run.out / name).stat().st_size - 1  # the same run again writes the same bytes

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    args = smoke_args(out, e2e_run.cache, data_dir=Path("tests/fixtures/mitdb"))
    proc = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env, preexec_fn=limited)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == (f"error: cannot write {out / name}: File too large; choose another --out or --cache-dir, "
                           f"or free space there\n")
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []  # files written whole before it stay
    assert "config.json" not in left and name not in left and not [n for n in left if n.startswith(".")]


def test_an_unreadable_input_is_not_called_a_write_failure(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data" / "106.dat"

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(data))

    monkeypatch.setattr(dl, "load_beats", unreadable)
    assert main.main(smoke_args(tmp_path / "run", tmp_path / "cache")) == 2
    assert capsys.readouterr().err == f"error: cannot read {data}: Permission denied\n"


def test_a_run_under_nohup_is_not_stopped_by_sighup(tmp_path):
    """nohup ignores SIGHUP so that a run outlives its terminal: the run keeps it ignored."""
    import signal

    proc, _ = _run_past_its_mark(tmp_path, "time.sleep(3); raise KeyboardInterrupt",
                                 before="signal.signal(signal.SIGHUP, signal.SIG_IGN); ")
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=60) == 130  # it ran on, to the interruption the test made
    assert proc.stderr.read().decode().strip() == "interrupted"


def _corrupt(path, at=5000):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_record_cut_short_is_reported_without_sha256sums(tmp_path, capsys):
    data = copy_records(tmp_path / "data", SMOKE_RECORDS, sums=False)
    dat = data / "100.dat"
    dat.write_bytes(dat.read_bytes()[:-3])  # a copy that stopped three bytes early
    rc = main.main(smoke_args(tmp_path / "run", tmp_path / "cache", data_dir=data))
    assert rc == 2
    msg = _one_error_line(capsys.readouterr().err)
    assert _records_named(msg, data) == {"100"} and "complete" in msg
    assert not (tmp_path / "run").exists(), "no run folder is left behind"


def test_annotations_cut_short_are_reported_without_sha256sums(tmp_path, capsys):
    """Without SHA256SUMS.txt only the .dat's length is checked: wfdb's parser on a cut-short .atr raised IndexError."""
    data = copy_records(tmp_path / "data", SMOKE_RECORDS, sums=False)
    atr = data / "106.atr"
    atr.write_bytes(atr.read_bytes()[:len(atr.read_bytes()) // 2 + 1])
    assert main.main(smoke_args(tmp_path / "run", tmp_path / "cache", data_dir=data)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{data / '106'}.atr" in line and "copy the record again" in line
    assert not (tmp_path / "run").exists()


def test_a_record_without_beat_annotations_is_one_error_line(tmp_path, capsys):
    data = copy_records(tmp_path / "data", SMOKE_RECORDS, sums=False)
    ann = wfdb.rdann(str(data / "106"), "atr")
    rhythm = [i for i, s in enumerate(ann.symbol) if s not in dl.AAMI_MAP]  # rhythm and other non-beat labels only
    wfdb.wrann("106", "atr", ann.sample[rhythm], [ann.symbol[i] for i in rhythm],
               aux_note=[ann.aux_note[i] for i in rhythm], write_dir=str(data))
    assert main.main(smoke_args(tmp_path / "run", tmp_path / "cache", data_dir=data)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "106 has no beat annotations" in line and "leave it out" in line


def test_a_damaged_cache_file_is_made_again(tmp_path):
    data = copy_records(tmp_path / "data", ["100"])
    cache = tmp_path / "cache"
    good = dl.load_beats(data, ["100"], "diagnostic", cache, offline=True, progress=False)
    (cached,) = cache.iterdir()
    for damage in (b"", cached.read_bytes()[:1000]):  # emptied; cut short
        cached.write_bytes(damage)
        again = dl.load_beats(data, ["100"], "diagnostic", cache, offline=True, progress=False)
        np.testing.assert_array_equal(again.x, good.x)
        np.testing.assert_array_equal(again.y, good.y)
        assert cached.stat().st_size > 1000  # written whole again


@pytest.mark.parametrize("where", ["--out", "--cache-dir"])
def test_an_output_folder_that_cannot_be_made_is_one_error_line(tmp_path, capsys, where):
    (tmp_path / "file").write_text("not a folder")
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = smoke_args(tmp_path / "file" if where == "--out" else run,
                      tmp_path / "file" / "cache" if where == "--cache-dir" else cache)
    assert main.main(args) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert where in line and "choose another" in line
    assert not run.exists()


def test_corrupt_file_is_reported_via_sha256sums(tmp_path, capsys):
    data = copy_records(tmp_path / "data", FIXTURE_RECORDS)
    _corrupt(data / "103.dat")
    with pytest.raises(dl.DataError) as err:
        dl.ensure_records(data, ["101", "103", "100"], offline=True)
    msg = str(err.value)
    assert "corrupt" in msg and "SHA256SUMS.txt" in msg
    assert _records_named(msg, data) == {"103"}

    rc = main.main(smoke_args(tmp_path / "run", tmp_path / "cache", data_dir=data))
    assert rc == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "corrupt" in line and _records_named(line, data) == {"103"}


def test_corrupt_file_is_not_served_from_the_cache(tmp_path):
    data = copy_records(tmp_path / "data", ["100"])
    cache = tmp_path / "cache"
    good = dl.load_beats(data, ["100"], "diagnostic", cache, offline=True, progress=False)
    assert len(good) > 0 and any(cache.iterdir())
    _corrupt(data / "100.dat")
    with pytest.raises(dl.DataError, match="corrupt"):
        dl.load_beats(data, ["100"], "diagnostic", cache, offline=True, progress=False)


BAD_OPTIONS = [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "-3"], "--epochs"),
    (["--alpha", "1,2"], "--alpha"),
    (["--alpha", "1,2,1,1,x"], "--alpha"),
    (["--alpha", "1,0,1,1,1"], "--alpha"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "0"], "--lr"),
    (["--gamma", "-1"], "--gamma"),
    (["--balance", "1.5"], "--balance"),
    (["--max-records", "0"], "--max-records"),
    (["--device", "tpu"], "--device"),
    (["--ensemble", "0"], "--ensemble"),
    (["--ensemble", "-2"], "--ensemble"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2 ** 32)], "--seed"),
]


def _bad_option_run(tmp_path, capsys, opts):
    # An empty data folder: should an option slip through, the run stops at once (on the data).
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main.main(smoke_args(tmp_path / "run", tmp_path / "cache", *opts, data_dir=empty))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("opts,name", BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_bad_option_exits_2_with_clear_message(tmp_path, capsys, opts, name):
    rc, err = _bad_option_run(tmp_path, capsys, opts)
    assert rc == 2
    line = _one_error_line(err)
    assert name in line
    assert not (tmp_path / "run").exists(), "nothing is written for a rejected command line"


def test_alpha_message_says_what_is_expected(tmp_path, capsys):
    _, err = _bad_option_run(tmp_path, capsys, ["--alpha", "1,2"])
    line = _one_error_line(err)
    assert "5" in line and "N,S,V,F,Q" in line and "'1,2'" in line


@pytest.mark.parametrize("opts,name", [(["--alpha", "1,nan,1,1,1"], "--alpha"), (["--lr", "nan"], "--lr"),
                                       (["--gamma", "nan"], "--gamma")])
def test_nan_option_is_rejected(tmp_path, capsys, opts, name):
    rc, err = _bad_option_run(tmp_path, capsys, opts)
    assert rc == 2 and name in _one_error_line(err)


@pytest.mark.parametrize("opts,name", [(["--mode", "fast"], "--mode"), (["--epochs", "two"], "--epochs"),
                                       (["--mod", "realtime"], "--mod")])  # no abbreviations
def test_unparseable_option_exits_2(capsys, opts, name):
    with pytest.raises(SystemExit) as exc:
        main.main(opts)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert name in err and "Traceback" not in err


def test_missing_records_message_from_the_command_line(tmp_path):
    """The same failure as a user meets it: a real process, its exit status and its stderr."""
    data = copy_records(tmp_path / "data", ["101", "106", "220", "223"])
    proc = subprocess.run([sys.executable, "main.py", *smoke_args(tmp_path / "run", tmp_path / "cache",
                                                                  data_dir=data)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert _records_named(line, data) == {"100", "103"}


# --------------------------------------------------------------------------- online path (faked)

def test_online_path_downloads_the_missing_records(tmp_path, monkeypatch):
    calls = []

    def fake_dl_files(db, dl_dir, files, keep_subdirs=True, overwrite=False):
        calls.append(("files", db, dl_dir, list(files)))
        for f in files:
            if (FIXTURE_DIR / f).is_file():
                shutil.copyfile(FIXTURE_DIR / f, Path(dl_dir) / f)

    def fake_dl_database(db_dir, dl_dir, records="all", annotators="all", keep_subdirs=True, overwrite=False):
        calls.append(("database", db_dir, dl_dir, list(records)))
        copy_records(Path(dl_dir), records, sums=False)

    monkeypatch.setattr(wfdb, "dl_files", fake_dl_files)
    monkeypatch.setattr(wfdb, "dl_database", fake_dl_database)
    data = copy_records(tmp_path / "data", ["100"])
    digests = dl.ensure_records(data, ["100", "103"], offline=False)
    assert set(digests) == {"100", "103"}
    assert ("database", "mitdb", str(data), ["103"]) in calls  # only what is missing, from mitdb
    assert any(c[0] == "files" and "SHA256SUMS.txt" in c[3] for c in calls)  # to verify what came


def test_failed_download_is_a_data_error_saying_what_to_do(tmp_path, monkeypatch):
    def no_network(*a, **k):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(wfdb, "dl_files", no_network)
    monkeypatch.setattr(wfdb, "dl_database", no_network)
    with pytest.raises(dl.DataError) as err:
        dl.ensure_records(tmp_path / "data", ["100", "103"], offline=False)
    msg = str(err.value)
    assert _records_named(msg, tmp_path / "data") == {"100", "103"}
    assert "Network is unreachable" in msg and "--offline" in msg and "physionet.org" in msg


def test_data_dir_default_comes_from_the_environment(monkeypatch):
    """The Docker image sets DEEP_ECG_DATA_DIR so that `docker run deep-ecg predict ...` works."""
    import main

    monkeypatch.setenv("DEEP_ECG_DATA_DIR", "/data/mitdb")
    assert main.build_parser().parse_args([]).data_dir == "/data/mitdb"
    monkeypatch.delenv("DEEP_ECG_DATA_DIR")
    assert main.build_parser().parse_args([]).data_dir == "data/mitdb"


@pytest.mark.parametrize("mode", dl.MODES)
def test_mode_defaults_and_explicit_values(mode, tmp_path):
    """--gamma and --ensemble default by mode (config.GAMMA, config.ENSEMBLE, DS1 CV's choices); a value
    given on the command line wins in either mode. (Folders in tmp_path: the checkout is left as it was.)"""
    where = ["--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]
    args = main.build_parser().parse_args(["--mode", mode, *where])
    main.check_args(args)
    assert (args.gamma, args.ensemble) == (config.GAMMA[mode], config.ENSEMBLE[mode])
    args = main.build_parser().parse_args(["--mode", mode, "--gamma", "0.5", "--ensemble", "3", *where])
    main.check_args(args)
    assert (args.gamma, args.ensemble) == (0.5, 3)


def test_diagnostic_mode_trains_with_gamma_2(tmp_path):
    import json

    assert main.main(smoke_args(tmp_path / "run", tmp_path / "cache")) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["mode"] == "diagnostic" and config["gamma"] == 2.0


@pytest.mark.parametrize("command", [[], ["predict"], ["stream"]])
def test_help_states_defaults_but_never_none(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main.main([*command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "(default: None)" not in out and "(default:" in out


def test_the_docker_image_holds_every_file_the_product_reads():
    """The image copies the modules and bench/; a data file a module reads beside it (quality.py's polarity.json)
    must be copied too, or predict fails under `docker run` only."""
    import fnmatch

    root = Path(__file__).resolve().parent.parent
    copied = [word for line in (root / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")
              for word in line.split()[1:-1]]
    source = "".join(p.read_text() for p in root.glob("*.py"))
    read = [p.name for p in root.iterdir() if p.is_file() and p.suffix not in (".py", ".md", ".txt")
            and not p.name.startswith(".") and f'"{p.name}"' in source]
    assert "polarity.json" in read
    for name in read:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in copied), f"the Dockerfile does not copy {name}"
