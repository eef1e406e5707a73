"""Shared fixtures. Everything here reads only tests/fixtures/mitdb, never ../shared."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "mitdb"
FIXTURE_RECORDS = ("101", "106", "220", "223", "100", "103", "114", "118", "124")
PACED_RECORD = "107"  # one minute of a paced record, for the R-peak detector's tests only

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# AAMI EC57 classes of the MIT-BIH beat labels, copied from the project's evaluation protocol (the
# reference every figure must follow), so the tests do not trust data_loader's own table.
PROTOCOL_AAMI = {
    "N": "NLRej",
    "S": "AaJS",
    "V": "VE",
    "F": "F",
    "Q": "/fQ",
}
PROTOCOL_LABEL = {lab: cls for cls, labs in PROTOCOL_AAMI.items() for lab in labs}
PROTOCOL_DS1 = ("101 106 108 109 112 114 115 116 118 119 122 124 "
                "201 203 205 207 208 209 215 220 223 230").split()
PROTOCOL_DS2 = ("100 103 105 111 113 117 121 123 200 202 210 212 "
                "213 214 219 221 222 228 231 232 233 234").split()
PROTOCOL_PACED = ("102", "104", "107", "217")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fixture_record(record: str) -> str:
    """WFDB record path (no extension) of a fixture record."""
    return str(FIXTURE_DIR / record)


def copy_records(dst: Path, records, sums: bool = True) -> Path:
    """Copy fixture records (and, if asked, the fixture's SHA256SUMS.txt) into dst."""
    dst.mkdir(parents=True, exist_ok=True)
    for rec in records:
        for ext in (".hea", ".dat", ".atr"):
            shutil.copyfile(FIXTURE_DIR / f"{rec}{ext}", dst / f"{rec}{ext}")
    if sums:
        shutil.copyfile(FIXTURE_DIR / "SHA256SUMS.txt", dst / "SHA256SUMS.txt")
    return dst


def smoke_args(out: Path, cache: Path, *extra: str, data_dir: Path = FIXTURE_DIR) -> list[str]:
    """main.py arguments for a fast run on the fixture (first 2 records of each list)."""
    return ["--data-dir", str(data_dir), "--offline", "--epochs", "1", "--max-records", "2",
            "--cache-dir", str(cache), "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    assert (FIXTURE_DIR / "SHA256SUMS.txt").is_file(), \
        "tests/fixtures/mitdb is missing; run python tests/fixtures/make_fixture.py"
    return FIXTURE_DIR


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory, fixture_dir):
    """One diagnostic-mode run of main.py as a user starts it: a subprocess on the fixture."""
    base = tmp_path_factory.mktemp("e2e")
    out, cache = base / "run", base / "cache"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "main.py", *smoke_args(out, cache, data_dir=Path("tests/fixtures/mitdb"))],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"main.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return SimpleNamespace(out=out, cache=cache, proc=proc)


@pytest.fixture(scope="session")
def trained_model(fixture_dir):
    """A small diagnostic-mode network trained briefly (plain Adam + cross-entropy) on fixture
    DS1 beats, so quantization is tested on weights that have learned something."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    import data_loader as dl

    import export
    from model import build_model

    train = dl.load_beats(fixture_dir, ["101", "106", "118", "124"], "diagnostic", progress=False)
    torch.manual_seed(0)
    model = build_model("diagnostic")
    x, rr, y = torch.from_numpy(train.x), torch.from_numpy(train.rr), torch.from_numpy(train.y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        loss = F.cross_entropy(model(x, rr), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    allb = dl.load_beats(fixture_dir, FIXTURE_RECORDS, "diagnostic", progress=False)
    with torch.no_grad():
        pred = model(torch.from_numpy(allb.x), torch.from_numpy(allb.rr)).argmax(1).numpy()
    # The agreement test below means little for a network that answers one class for everything.
    assert len(np.unique(pred)) >= 2 and (pred == allb.y).mean() > 0.9, np.bincount(pred)
    return SimpleNamespace(model=model, beats=allb, pred=pred)


def _train_briefly(mode: str, fixture_dir, steps: int = 40):
    import torch
    import torch.nn.functional as F

    import data_loader as dl
    from model import build_model

    train = dl.load_beats(fixture_dir, ["101", "106", "118", "124", "220", "223"], mode, progress=False)
    torch.manual_seed(0)
    model = build_model(mode)
    x, rr, y = torch.from_numpy(train.x), torch.from_numpy(train.rr), torch.from_numpy(train.y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x, rr), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), train


def _make_run(mode: str, tmp_path_factory, fixture_dir) -> Path:
    import json

    import export
    from quantize import quantize_all

    out = tmp_path_factory.mktemp(f"{mode}_run")
    model, train = _train_briefly(mode, fixture_dir)
    quantize_all(model, train, out, mode)
    (out / "config.json").write_text(json.dumps({"mode": mode, **export.model_inputs(mode)}))
    return out


@pytest.fixture(scope="session")
def realtime_run(tmp_path_factory, fixture_dir) -> Path:
    """A run directory as `main.py --mode realtime` leaves it (config.json, float32, dynamic and
    static int8 models), from a network trained briefly on fixture DS1 beats."""
    return _make_run("realtime", tmp_path_factory, fixture_dir)


@pytest.fixture(scope="session")
def diagnostic_run(tmp_path_factory, fixture_dir) -> Path:
    """The same for diagnostic mode."""
    return _make_run("diagnostic", tmp_path_factory, fixture_dir)
