"""Classify any recording: read it, resample to 360 Hz, filter as in training, detect beats, classify.

    python main.py predict --model runs/<run> --record path/to/record [--lead MLII]
    python main.py predict --model runs/<run>/model_int8_static.onnx --csv ecg.csv --fs 250 --column ECG
    python main.py predict --model runs/<run> --edf holter.edf --lead "ECG1"

Writes into --out (default predictions/<input name>): <name>_beats.csv (one row per beat),
<name>.aami (a WFDB annotation file: wfdb.rdann('<out>/<name>', 'aami')) and <name>_strip.png,
and prints a summary; the default folder is refused when it holds another input's outputs of the
same name. The model's mode (diagnostic or realtime) decides the filter and the RR features,
exactly as in training.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import warnings
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

import data_loader as dl
from export import LEGACY_DYNAMIC, MODEL_FILES
from outputs import discard

MIN_SECONDS = 5.0  # shorter recordings hold too few beats for RR features
FS_RANGE = (100.0, 20000.0)  # Hz: below, a QRS is a sample or two; above, most likely not Hz at all
MIN_BEATS = 3
SOURCE_MARK = ".source"  # in a default output folder: the input whose outputs it holds
MIN_MATCH = 0.5  # median beat-template correlation below which the "beats" are most likely noise
# A lead with more than this share of its power (above 0.5 Hz) within MAINS_BAND_HZ of a mains frequency is
# mostly hum (electrodes off, no ECG): its "beats" are cycles of the hum, and they resemble each other. The 48
# MIT-BIH records hold 0.005 at most; a lead of pure hum with a little noise, 0.998.
MAX_MAINS = 0.5
MAINS_HZ, MAINS_BAND_HZ = (50.0, 60.0), 1.0
# The mains check's Welch segment (samples), and how many it reads at most: up to 48.6 min at 360 Hz (each MIT-BIH
# record) the whole signal, beyond that this many spread evenly over it (bench/holter.py's 24-hour record: its
# share 0.060% sampled, 0.059% whole).
MAINS_SEGMENT, MAINS_SEGMENTS = 2048, 1024
LOW_CONFIDENCE = 0.6  # beats whose top probability is below this are counted as uncertain
ANNOTATION_EXT = "aami"
SYMBOLS = {"N": "N", "S": "S", "V": "V", "F": "F", "Q": "Q"}  # AAMI class -> WFDB beat symbol


class InputError(dl.DataError):
    """Input the user can fix; the message names the problem and the fix."""


# A lead's name, as records call them: the limb and chest leads (D1-D3 in much of Europe, V alone in bedside
# monitors' exports), modified limb (ML...) and Holter (CM5) leads
ECG_NAME = re.compile(r"ECG|EKG|^(I|II|III|aV[RLF]|V[1-6]?|ML.*|CM\d|D(I{1,3}|[1-3]))$", re.I)
# A value derived from a lead, not the lead: a rate, an RR interval, a peak or beat mark, a quality index, a label
NOT_A_LEAD = re.compile(r"(^|[\s_]|heart)rate\b|bpm|(^|[\s_])(hr|rr)\b|peak|beat|qual|sqi|class|label|annot", re.I)
UNIT = re.compile(r"[\[(]\s*([^\])]*?)\s*[\])]")  # 'V5 (mV)', 'MLII [uV]'


def lead_core(name) -> str:
    """A signal's name without quotes, a unit in brackets or a 'Lead' before it: 'Lead II (mV)' -> 'II'."""
    core = UNIT.sub("", str(name).strip().strip("'\"")).strip().rstrip(",;:").strip()
    return re.sub(r"^lead[\s_-]*", "", core, flags=re.I).strip()


def lead_like(name) -> bool:
    """Whether a signal's name is an ECG lead's: ECG, EKG, I-III (D1-D3), aVR-aVF, V1-V6 (V), ML..., CM5,
    also with a voltage unit or 'Lead' around it ('Lead II', 'V1 [mV]'); not a value derived from one ('ECG_Rate',
    'ECG HR') nor another quantity ('I [mA]')."""
    units = UNIT.findall(str(name))
    if any(not re.fullmatch(r"[mµuμn]?V", u) for u in units):
        return False
    return bool(ECG_NAME.search(lead_core(name))) and not NOT_A_LEAD.search(str(name))


def is_mlii(name) -> bool:
    """The lead the model was trained on (dl.LEAD), also with quotes or a voltage unit: 'MLII (mV)'."""
    return lead_core(name).upper() == dl.LEAD and lead_like(name)


def warn(msg: str) -> None:
    try:
        print(f"warning: {msg}", file=sys.stderr)
    except BrokenPipeError:  # stderr's reader has gone (`2>&1 | head`): the work goes on, unwarned
        discard(sys.stderr)


# --------------------------------------------------------------------------- the model

@dataclass
class Classifier:
    """A trained model of either mode, float or int8, behind one predict_proba(x, rr)."""

    mode: str
    kind: str
    path: Path
    _predict: object

    def predict_proba(self, x: np.ndarray, rr: np.ndarray) -> np.ndarray:
        return self._predict(x, rr)

    @property
    def batch_dependent(self) -> bool:
        """Whether a beat's probabilities depend on the other beats of the same call: dynamic int8 scales each
        call's activations by their range, so a caller wanting each beat's answer alone (the stream) passes one
        beat per call."""
        return self.kind == "dynamic-int8"


def load_classifier(path, kind: str = "float32", threads: int | None = None) -> Classifier:
    """A run directory (its `kind` model) or a model file (.pt from main.py, or .onnx)."""
    path = Path(path)
    if path.is_dir():
        if kind not in MODEL_FILES:
            raise InputError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_FILES)}")
        if kind == "dynamic-int8" and not (path / MODEL_FILES[kind]).is_file() and (path / LEGACY_DYNAMIC).is_file():
            raise InputError(f"{path} was made by an earlier version, whose dynamic int8 model ({LEGACY_DYNAMIC}) used "
                             f"PyTorch's deprecated quantized tensors; retrain it (`python main.py`) for "
                             f"{MODEL_FILES[kind]}, or choose --kind float32 or static-int8")
        if not (path / MODEL_FILES[kind]).is_file():
            raise InputError(f"{path} holds no {MODEL_FILES[kind]}: pass the directory of a finished "
                             f"`python main.py` run, or a model file")
        path = path / MODEL_FILES[kind]
    if not path.is_file():
        raise InputError(f"model {path} not found: pass a run directory made by `python main.py` "
                         f"(runs/...) or one of its model files")
    if path.suffix == ".onnx":
        from export import OnnxModel

        config = path.parent / "config.json"
        if not config.is_file():
            raise InputError(f"{path}: an ONNX model needs the config.json of its run beside it "
                             f"(to know its mode); keep the run directory together")
        try:
            run_config = json.loads(config.read_text())
            mode = run_config["mode"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise InputError(f"{config} is not a run's config.json (cut short or edited?): it should name the "
                             f"model's mode; copy it again from the run directory") from None
        if mode not in dl.MODES:
            raise InputError(f"{config} names the mode {mode!r}; a run's mode is one of {', '.join(dl.MODES)}")
        try:
            dl.check_model_inputs(path, mode, run_config)
        except dl.StaleModelError as exc:
            raise InputError(str(exc)) from None
        try:
            onnx = OnnxModel(path, threads=threads)
        except Exception as exc:
            raise InputError(f"{path} is not a readable ONNX model (cut short in a copy?): "
                             f"{str(exc).splitlines()[0][:200]}; copy it again from the run directory") from None
        from export import INPUTS, OUTPUT

        inputs, outputs = [i.name for i in onnx.session.get_inputs()], [o.name for o in onnx.session.get_outputs()]
        if inputs != list(INPUTS) or OUTPUT not in outputs:
            raise InputError(f"{path} is not a Deep-ECG model: it takes {', '.join(inputs)} and gives "
                             f"{', '.join(outputs)} (a Deep-ECG model takes {', '.join(INPUTS)} and gives {OUTPUT}); "
                             f"pass a model exported by a `python main.py` run")
        if onnx.mode is not None and onnx.mode != mode:
            raise InputError(f"{path} is a {onnx.mode} model, but the config.json beside it is a {mode} run's: "
                             f"keep each model with its own run's config.json")
        if onnx.saturating:
            warn(f"{path} was quantized by an earlier version with 8-bit weights: its classes differ on x86-64 CPUs "
                 f"without VNNI (AVX2 only) from those on other CPUs; retrain the run (`python main.py --mode {mode}`) "
                 f"for int8 files that give the same classes on every CPU")
        return Classifier(mode, "float32-onnx" if onnx.kind == "float32" else onnx.kind, path, onnx.predict_proba)
    import torch

    from export import load_model
    from model import predict_proba

    try:
        model, meta = load_model(path)
    except dl.StaleModelError as exc:
        raise InputError(str(exc)) from None
    except Exception:
        what = ("a TorchScript export (for other programs)" if path.name.endswith(".jit.pt") else
                "not a Deep-ECG model (or a copy cut short)")
        raise InputError(f"{path} is {what}; pass a run directory, or one of its model files: "
                         f"{', '.join(sorted({*MODEL_FILES.values(), 'model_float32.onnx'}))}") from None
    if threads:
        torch.set_num_threads(threads)

    def proba(x, rr):
        if len(x) > 256:
            return predict_proba(model, x, rr)
        with torch.inference_mode():  # a few beats at a time (streaming): no batching overhead
            z = model(torch.from_numpy(np.ascontiguousarray(x, np.float32)),
                      torch.from_numpy(np.ascontiguousarray(rr, np.float32)))
            return torch.softmax(z, dim=1).numpy()

    return Classifier(meta["mode"], meta["kind"], path, proba)


# --------------------------------------------------------------------------- the input

@dataclass
class Recording:
    x: np.ndarray  # one lead, float64 (mV or the file's unit), NaN where missing
    fs: float
    name: str
    lead: str
    source: str | None = None  # the file read (resolved path), if any


def choose_lead(names: list[str], lead: str | None, source: str, word: str, first: str) -> str:
    """The lead asked for, else MLII, else the first ECG-like one (else the first) with a warning; an
    unknown one is an error."""
    if lead is None:
        # MLII, else the first that looks like an ECG lead (a file may start with respiration or SpO2)
        ecg = [n for n in names if is_mlii(n)] + [n for n in names if lead_like(n)]
        lead = dl.LEAD if dl.LEAD in names else (ecg or names)[0]
        if not is_mlii(lead):
            warn(f"{source} has no {dl.LEAD} {word}; using its {'first ECG-like' if ecg else 'first'} {first} {lead!r} "
                 f"(the model was trained on {dl.LEAD}; choose another with --lead)")
    elif lead not in names:
        raise InputError(f"{source} has no {word} {lead!r}; it has {', '.join(names)} "
                         f"(choose one with --lead)")
    return lead


def read_wfdb(path, lead: str | None = None) -> Recording:
    import wfdb

    path = Path(str(path).removesuffix(".hea").removesuffix(".dat"))
    if not path.with_suffix(".hea").is_file():
        raise InputError(f"no WFDB record at {path} ({path.with_suffix('.hea').name} not found); "
                         f"pass the record path without extension, e.g. data/mitdb/100")
    try:
        header = wfdb.rdheader(str(path))
    except Exception as exc:
        raise InputError(f"cannot read the WFDB header {path}.hea (not a WFDB header, or cut short: {exc}); "
                         f"copy the record again") from None
    names = list(header.sig_name or [])
    if not names:
        raise InputError(f"record {path} has no signals")
    if header.sig_len == 0:
        raise InputError(f"record {path} holds no samples (its header says 0)")
    short = dl.short_signal_file(path.parent, header)  # (None: wfdb's own error tells what else is wrong)
    if short:
        raise InputError(f"{short} holds fewer samples than {path.name}.hea promises ({header.sig_len}): a copy "
                         f"cut short? Copy the record again")
    lead = choose_lead(names, lead, f"record {path.name}", "lead", "channel")
    try:
        rec = wfdb.rdrecord(str(path), channel_names=[lead])
    except Exception as exc:
        raise InputError(f"cannot read the signal of record {path}: {exc}") from None
    source = str(path.with_suffix(".hea").resolve().with_suffix(""))  # through links to the files
    return Recording(rec.p_signal[:, 0].astype(np.float64), float(rec.fs), path.name, lead, source)


EDF_ANNOTATIONS = "EDF Annotations"  # EDF+'s signal of events and time-keeping, not a lead


def not_a_file(path: Path, kind: str) -> str:
    """Why an input path that is no regular file cannot be read: absent, a folder, or a pipe or device (read
    twice here: once for its layout, once for its values)."""
    if str(path) == "-":
        return (f"'-' (standard input) cannot be read here (it is read twice: once for its layout, once for its "
                f"values); save the {kind} data to a file and give its path")
    if not path.exists():
        return f"{kind} file {path} not found"
    if path.is_dir():
        return f"{path} is a folder; give the path of a {kind} file in it"
    return (f"{path} is not a regular file (a pipe, standard input or a device), which cannot be read here; "
            f"save the {kind} data to a file and give its path")


def read_edf(path, lead: str | None = None) -> Recording:
    """One signal of an EDF/EDF+ file, at its own rate and in physical units (EDF+'s annotations
    signal skipped). Read here, not by wfdb, which resamples every signal to one rate."""
    path = Path(path)
    if not path.is_file():
        raise InputError(not_a_file(path, "EDF"))
    with open(path, "rb") as f:  # the header only: the samples are mapped (a day's Holter file need not fit in memory)
        data = f.read(256)
        signals = data[252:256].decode("latin-1").strip()
        data += f.read(256 * int(signals)) if signals.isdigit() else b""
    size = path.stat().st_size

    def field(lo: int, width: int, count: int = 1) -> list[str]:
        return [data[lo + k * width:lo + (k + 1) * width].decode("latin-1").strip() for k in range(count)]

    try:
        if field(0, 8)[0] != "0":  # EDF's version field; BDF (24-bit) and other files differ
            raise ValueError
        header_bytes, n_records, duration = int(field(184, 8)[0]), int(field(236, 8)[0]), float(field(244, 8)[0])
        ns = int(field(252, 4)[0])
        at = 256
        cols = {}
        for name, width in (("label", 16), ("transducer", 80), ("unit", 8), ("pmin", 8), ("pmax", 8),
                            ("dmin", 8), ("dmax", 8), ("prefilter", 80), ("samples", 8), ("reserved", 32)):
            cols[name] = field(at, width, ns)
            at += width * ns
        samples = np.array([int(v) for v in cols["samples"]])
        pmin, pmax, dmin, dmax = (np.array([float(v) for v in cols[k]]) for k in ("pmin", "pmax", "dmin", "dmax"))
    except (ValueError, IndexError, UnicodeDecodeError):
        raise InputError(f"cannot read {path} as EDF: its header is not an EDF header "
                         f"(export the recording as EDF or EDF+)") from None
    if field(192, 44)[0].startswith("EDF+D"):
        raise InputError(f"{path.name} is a discontinuous EDF+ file (EDF+D): its data records have gaps "
                         f"in time; export it as continuous EDF+ (EDF+C) or EDF")
    if at != header_bytes or ns < 1 or duration <= 0 or np.any(samples < 1) or np.any(dmax <= dmin):
        raise InputError(f"cannot read {path} as EDF: its header is inconsistent")
    per_record = int(samples.sum()) * 2  # 16-bit samples
    if n_records < 0:  # -1: still being recorded when the header was written
        n_records = (size - header_bytes) // per_record
    if n_records == 0:
        raise InputError(f"{path} holds no data records (no samples)")
    if size < header_bytes + n_records * per_record:
        raise InputError(f"{path} is cut short: its header announces {n_records} data records of "
                         f"{duration:g} s, the file holds {(size - header_bytes) // per_record}")
    names = [name for name in cols["label"] if name != EDF_ANNOTATIONS]
    if not names:
        raise InputError(f"{path.name} holds no signal, only annotations")
    lead = choose_lead(names, lead, path.name, "signal", "signal")
    k = cols["label"].index(lead)
    records = np.memmap(path, dtype="<i2", mode="r", offset=header_bytes, shape=(n_records, per_record // 2))
    first = int(samples[:k].sum())
    digital = records[:, first:first + samples[k]].reshape(-1).astype(np.float64)
    x = (digital - dmin[k]) * (pmax[k] - pmin[k]) / (dmax[k] - dmin[k]) + pmin[k]
    return Recording(x, samples[k] / duration, path.stem, lead, str(path.resolve()))


def read_csv(path, fs: float | None, column: str | None = None) -> Recording:
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(not_a_file(path, "CSV"))
    if fs is None:
        raise InputError(f"--fs is required with --csv: the sampling rate of {path.name} in Hz")
    if not (np.isfinite(fs) and fs > 0):
        raise InputError(f"--fs must be a positive sampling rate in Hz, got {fs}")
    check_rate(fs, path.name, "--fs")
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline()
        rows = [line for line in (f.readline() for _ in range(DIALECT_ROWS)) if line.strip()]
    sep, decimal = csv_dialect(header, rows, path.name)
    # A first row of numbers is data, not a header: read it as such (the columns then go by index).
    headerless = all(_is_number(cell.strip().strip('"').replace(decimal, ".")) for cell in header.split(sep))
    if headerless:
        warn(f"{path.name} has no header row; its first row is read as data and its columns go by "
             f"index (--column 0, 1, ...)")
    try:
        # A blank line is a one-column file's empty cell, a missing sample: kept in place (skipped, every
        # later sample would move one earlier); blank lines at the end are no samples.
        read = lambda encoding: pd.read_csv(path, sep=sep, decimal=decimal, skipinitialspace=True,  # noqa: E731
                                            header=None if headerless else "infer", skip_blank_lines=False,
                                            encoding=encoding)
        try:
            frame = read("utf-8")
        except UnicodeDecodeError:  # Latin-1 (Windows' 'EKG µV'): numbers read alike, names as written
            frame = read("latin-1")
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot read {path} as CSV ({detail}): --csv takes a text table of samples, one row "
                         f"per sample; for a WFDB record pass --record PATH (without extension), for EDF --edf PATH") from None
    present = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
    if len(present):  # (an all-empty column is left to the checks below, which name it)
        frame = frame.iloc[:present[-1] + 1]
    if frame.shape[1] == 0 or len(frame) == 0:
        raise InputError(f"{path} holds no data")

    def numbers(cells):  # a column pandas did not read as numbers: a few text cells, or mixed decimal marks
        if pd.api.types.is_numeric_dtype(cells):
            return cells.to_numpy(dtype=np.float64)
        cells = cells.astype("string").str.strip()
        if sep != ",":
            cells = cells.str.replace(",", ".", regex=False)
        return pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    values_of = {c: numbers(frame[c]) for c in frame.columns}
    if (len(frame) > 1 and frame.iloc[0].notna().all() and all(np.isnan(v[0]) for v in values_of.values())
            and units_row(list(frame.iloc[0]))):
        # a first row of text under the header (units: "s,mV") is not a sample: every index would be one off
        warn(f"{path.name}: its first row under the header ({', '.join(map(str, frame.iloc[0]))}) is text, not a "
             f"sample (units?); it is skipped")
        frame = frame.iloc[1:].reset_index(drop=True)
        values_of = {c: v[1:] for c, v in values_of.items()}
    # Numeric: at least 99% of its non-empty cells are numbers (a few text cells, e.g. "lead-off", become
    # gaps, as empty cells do).
    filled = {c: frame[c].notna().to_numpy() for c in frame.columns}
    numeric = [c for c, v in values_of.items()
               if filled[c].any() and np.isfinite(v[filled[c]]).mean() >= 0.99]
    if column is None:
        leads = [c for c in numeric if not _counter(values_of[c][np.isfinite(values_of[c])])
                 and (headerless or not TIME_COLUMN.search(str(c)))]  # (a device's clock jitters: it may fall)
        if not leads:
            raise InputError(f"{path} has no numeric column that could be an ECG lead; columns: "
                             f"{', '.join(map(str, frame.columns))} (choose one with --column)")
        # as a record's lead: MLII first, then an ECG-like name
        ecg = [c for c in leads if is_mlii(c)] + [c for c in leads if lead_like(c)]
        col = (ecg or leads)[0]
        if len(leads) > 1:
            which = f"its {dl.LEAD}" if is_mlii(col) else "its first ECG-like" if ecg else "the first"
            warn(f"{path.name} has several numeric columns; using {which}, {col!r} (choose one with --column)")
    elif column in frame.columns:
        col = column
    elif column.lstrip("-").isdigit() and -frame.shape[1] <= int(column) < frame.shape[1]:
        col = frame.columns[int(column)]
    else:
        raise InputError(f"{path.name} has no column {column!r}; columns are "
                         f"{', '.join(map(str, frame.columns))} (or give a 0-based index)")
    values = values_of[col]
    if np.isnan(values).all():
        raise InputError(f"column {col!r} of {path.name} holds no numbers")
    for c in frame.columns:
        if c != col and not headerless and TIME_COLUMN.search(str(c)):
            check_time_column(values_of[c], fs, f"{path.name}'s column {c!r}", str(c))
    return Recording(values, float(fs), path.stem, str(col), str(path.resolve()))


DIALECT_ROWS = 2000  # rows under the first that tell a CSV's separator and decimal mark (a few seconds of signal)


def csv_dialect(header: str, rows: list[str], name: str) -> tuple[str, str]:
    """(separator, decimal mark) of a CSV, judged from its rows under the first (comment lines and lines
    without a digit left out): a header may hold any character ('EKG [mV, Abl. II]'), and a file without one
    starts with a row of data.

    ';' or tab between columns (',' is then the decimal mark if the rows hold one, as in much of Europe),
    else ','. Where every row is one ',' between digits (or a whole number), the ',' is one column's decimal
    mark (-0,145) if the header names one column, or if a row reads -0,... or has a 0 after the ',' and more
    digits (0,055); else it is two columns of whole numbers (995,1011: two leads' ADC counts)."""
    rows = [r for r in rows if any(c.isdigit() for c in r) and not r.lstrip().startswith("#")] or [header]
    for sep in (";", "\t"):
        if sum(sep in r for r in rows) >= 0.9 * len(rows):
            return sep, "," if any("," in r for r in rows) else "."
    if not any("," in r for r in rows):
        return ",", "."  # one column, decimal points
    one_decimal = re.compile(r'^\s*"?([-+]?\d+),(\d+)"?\s*$')
    whole_row = re.compile(r'^\s*"?[-+]?\d+"?\s*$')  # one whole number: 0 as Excel or %g write 0,000
    if not all(one_decimal.match(r) or whole_row.match(r) for r in rows):
        return ",", "."
    headerless = bool(one_decimal.match(header))
    parts = [one_decimal.match(r).groups() for r in [*rows, *([header] * headerless)] if one_decimal.match(r)]
    # No whole number is written -0, nor with a leading 0 (055): a decimal comma's digits are
    decimal_comma = any(whole in ("-0", "+0") or (len(frac) > 1 and frac[0] == "0") for whole, frac in parts)
    if (not headerless and len(_header_names(header)) == 1) or decimal_comma:
        if headerless:
            warn(f"{name}: each row is one number with a decimal comma ({header.strip()} = "
                 f"{header.strip().strip(chr(34)).replace(',', '.')}); if it holds two columns of whole numbers, "
                 f"give it a header row naming them")
        return ";", ","  # (read as ';'-separated: one column)
    if headerless and len({whole for whole, _ in parts}) == 1:
        warn(f"{name}: each row is {parts[0][0]},<digits> ({header.strip()}): read as two columns, the first "
             f"{parts[0][0]} throughout; if it is one column of numbers with a decimal comma "
             f"({header.strip().replace(',', '.')}), give it a header row naming that one column")
    return ",", "."


def _header_names(header: str) -> list[str]:
    """A comma-separated header's names: quotes respected, and a ',' inside brackets ('EKG [mV, II]') is
    part of a name."""
    import csv

    names, depth, part = [], 0, ""
    for cell in next(csv.reader([header]), []):
        part = f"{part},{cell}" if depth else cell
        depth += sum(cell.count(c) for c in "([{") - sum(cell.count(c) for c in ")]}")
        if depth <= 0:
            names.append(part)
            depth = 0
    return names + ([part] if depth > 0 else [])


# A one-column CSV's units row under the header: one word of a unit ("mV", "[uV]", "counts"); not a gap's
# text ("lead-off", "lead off", "ERR"), which is a missing sample in place.
UNIT_WORD = re.compile(r"^[\[(]?[A-Za-zµμ°%/. ]{1,16}[\])]?$")
GAP_WORD = re.compile(r"off|lead|err|null|none|missing|gap|invalid|sat|^n/?a$|-", re.I)
# A CSV column named as a time: checked against --fs.
TIME_COLUMN = re.compile(r"time|zeit|temps|tiempo|tempo|^t$|^t[ _\[(]|\bsecs?\b|seconds|\[m?s\]|\(m?s\)|_m?s$", re.I)
TIME_UNITS = {"seconds": 1.0, "milliseconds": 1e3, "microseconds": 1e6, "nanoseconds": 1e9, "minutes": 1 / 60,
              "days": 1 / 86400}


def units_row(cells: list) -> bool:
    """Whether a first row of text under a CSV's header is its units (skipped), not a sample: any all-text
    row of several columns ("s,mV", "Seconds,Volts"); in one column, a unit's word, not a gap's text."""
    if len(cells) > 1:
        return True
    text = str(cells[0]).strip()
    return bool(UNIT_WORD.match(text)) and not GAP_WORD.search(text)


def check_time_column(t: np.ndarray, fs: float, what: str, name: str = "") -> None:
    """A warning if a time column's rows step at another rate than --fs in every unit it may count (off by
    more than 1%). Only a regular clock is judged: nearly every row filled, never falling, its steps within
    half of their median but for gaps; a step of 1 is a sample index unless the name says milliseconds."""
    filled = np.isfinite(t)
    if filled.mean() < 0.9 or filled.sum() < 3:
        return
    d = np.diff(t[filled])
    med = np.median(d)
    if np.any(d < 0) or med <= 0:
        return
    steps = d[d <= 3 * med]  # gaps (rows missing) left out
    if np.mean(np.abs(steps - med) <= 0.5 * med) < 0.9:
        return  # not a regular clock: jitter beyond rounding, a beat-time column, a clock of whole seconds
    step = float(steps.mean())  # times rounded in print average out
    if step == 1 and not re.search(r"ms|milli", name, re.I):
        return
    rates = {unit: scale / step for unit, scale in TIME_UNITS.items()}
    if any(abs(rate / fs - 1) <= 0.01 for rate in rates.values()):
        return
    warn(f"{what} steps {step:.6g} per row: {rates['seconds']:.5g} Hz if it counts seconds, "
         f"{rates['milliseconds']:.5g} Hz if milliseconds, but --fs says {fs:g} Hz; if --fs is wrong, so is every "
         f"RR interval and class: give the file's sampling rate with --fs")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _counter(v: np.ndarray) -> bool:
    """A time or sample index, or a packet counter, not a lead: it never falls, or it steps by one same
    amount at least 90% of the time (a counter that wraps around, as serial and Bluetooth devices send)."""
    d = np.diff(v)
    if len(d) == 0 or ((d >= 0).all() and (d > 0).any()):  # (a flat line is a lead, refused later as flat)
        return True
    steps, counts = np.unique(d, return_counts=True)
    return bool(steps[counts.argmax()] != 0 and counts.max() >= 0.9 * len(d))


def resample(x: np.ndarray, fs: float, target: int = dl.FS) -> np.ndarray:
    """Polyphase resampling to `target` Hz (NaN runs kept as NaN, at their new positions)."""
    from scipy import signal

    frac = Fraction(target / fs).limit_denominator(1000)
    gaps = np.isnan(x)
    filled = x
    if gaps.any():  # bridged by a straight line: no step at either edge to ring into the neighbours
        known = np.flatnonzero(~gaps)
        filled = np.interp(np.arange(len(x)), known, x[known])
    y = signal.resample_poly(filled, frac.numerator, frac.denominator)
    if gaps.any():
        t_new = np.arange(len(y)) * fs / target
        y[gaps[np.clip(np.round(t_new).astype(int), 0, len(x) - 1)]] = np.nan
    return y


def check_rate(fs: float, name: str, source: str) -> None:
    """InputError unless fs (Hz) lies in FS_RANGE."""
    low, high = FS_RANGE
    if not low <= fs <= high:
        fix = ("it is samples per second (e.g. 250 or 360), not the time between samples" if source == "--fs" else
               "is this signal an ECG? (choose another with --lead)")
        raise InputError(f"{name}: a sampling rate of {fs:g} Hz ({source}) is outside {low:g}-{high:g} Hz; {fix}")


def prepare(rec: Recording) -> tuple[np.ndarray, np.ndarray]:
    """(signal at 360 Hz with gaps filled, gap mask), after checking it can be classified."""
    x = rec.x
    check_rate(rec.fs, rec.name, "the file's header")
    if not np.isfinite(x[~np.isnan(x)]).all():
        raise InputError(f"{rec.name}: the signal holds infinite values; clean them or mark them NaN")
    if len(x) / rec.fs < MIN_SECONDS:
        raise InputError(f"{rec.name} is {len(x) / rec.fs:.1f} s long; at least {MIN_SECONDS:.0f} s "
                         f"(a few beats) are needed")
    if np.isnan(x).all():
        raise InputError(f"{rec.name}: lead {rec.lead!r} holds no samples (all NaN)")
    valid = x[~np.isnan(x)]
    if np.ptp(valid) < 1e-6:
        raise InputError(f"{rec.name}: lead {rec.lead!r} is a flat line (lead off?); nothing to classify")
    if rec.fs != dl.FS:
        print(f"resampling {rec.name} from {rec.fs:g} Hz to {dl.FS} Hz (the model's rate)", file=sys.stderr)
        x = resample(x, rec.fs)
    filled, gaps = dl.hold_gaps(x)  # (an all-NaN lead was refused above; a stream waits for the first value)
    if gaps.any():
        missing = int(np.isnan(rec.x).sum())  # in the input's own samples
        warn(f"{rec.name}: {missing} missing sample{'s' if missing > 1 else ''} ({missing / rec.fs:.2g} s; empty, "
             f"text or NaN cells); beats there are marked unclassifiable (Q)")
    return filled, gaps


def mains_fraction(x: np.ndarray, fs: float = dl.FS) -> float:
    """The share of a signal's power above 0.5 Hz that lies within MAINS_BAND_HZ of 50 or 60 Hz, or of where
    they fold to at a rate too low for them (60 Hz sampled at 100 Hz reads as 40 Hz). x at its own rate fs;
    NaN samples (gaps) count as the signal's median. A Welch spectrum of the whole signal, or of MAINS_SEGMENTS
    of its segments spread evenly over it where it has more (a recording of hours: the same share, in bounded time)."""
    from scipy.signal import welch

    x = np.asarray(x, dtype=np.float64)
    nperseg = min(len(x), MAINS_SEGMENT)
    if (len(x) - nperseg) // max(nperseg // 2, 1) + 1 > MAINS_SEGMENTS:  # (Welch's segments overlap by half)
        starts = np.linspace(0, len(x) - nperseg, MAINS_SEGMENTS).astype(np.int64)
        x = x[starts[:, None] + np.arange(nperseg)]  # one Welch segment a row
    x = np.where(np.isnan(x), np.nanmedian(x), x)
    f, p = welch(x - np.mean(x), fs, nperseg=nperseg)
    if p.ndim == 2:  # the rows' spectra averaged, as Welch averages its segments'
        p = p.mean(axis=0)
    folded = [abs(hz - fs * round(hz / fs)) for hz in MAINS_HZ]
    folded = [hz for hz in folded if hz >= 0.5 + MAINS_BAND_HZ]  # folded onto 0 Hz (fs 50, 60...): not seen
    total = p[f >= 0.5].sum()
    if not folded or total <= 0:
        return 0.0
    mains = np.any([np.abs(f - hz) <= MAINS_BAND_HZ for hz in folded], axis=0)
    return float(p[mains].sum() / total)


def check_signal(rec: Recording, match: np.ndarray) -> None:
    """Warnings that a recording's classes are not to be trusted (predict and stream give the same): its lead
    is mostly mains hum (judged on the input at its own rate), or the beats found do not resemble each other
    (match: each beat's correlation with its template, dl.template_match)."""
    hum = mains_fraction(rec.x, rec.fs)
    if hum > MAX_MAINS:
        warn(f"{rec.name}: lead {rec.lead!r} is mostly mains hum ({100 * hum:.0f}% of its power at 50 or 60 Hz; "
             f"each of the 48 MIT-BIH records has under 1%): electrodes off, or not an ECG? Do not trust these classes")
    median = float(np.nanmedian(match)) if np.isfinite(match).any() else float("nan")
    if not median >= MIN_MATCH:
        warn(f"{rec.name}: the beats found do not resemble each other (median correlation with their "
             f"template {median:.2f}, under {MIN_MATCH:g}; each of the 48 MIT-BIH records has 0.79 or more): "
             f"is lead {rec.lead!r} an ECG, or noise (lead off, mains hum)? Do not trust these classes")


# --------------------------------------------------------------------------- classification

def beat_inputs(x: np.ndarray, peaks: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of the beats at `peaks` (360 Hz samples), as training made them."""
    xf = dl.bandpass(x, dl.FS, mode)
    return dl.with_templates(dl.beat_windows(xf, peaks)), dl.rr_features(peaks, dl.FS, mode)


def classify(x: np.ndarray, clf: Classifier, gaps: np.ndarray | None = None, peaks=None) -> dict:
    """Beats of a 360 Hz signal: R-peak samples, class indices, probabilities (NaN if unclassifiable).

    Peaks are detected (detect.detect_r_peaks) unless given.
    """
    from detect import detect_r_peaks

    if peaks is None:
        # The detector starts at the first sample present: the flat fill of a leading gap would
        # take its learning phase (signal and noise levels learned on a flat line).
        start = int(np.argmax(~gaps)) if gaps is not None and gaps.any() else 0
        peaks = detect_r_peaks(x[start:], dl.FS) + start
    peaks = np.asarray(peaks, dtype=np.int64)
    windows, rr = beat_inputs(x, peaks, clf.mode)
    proba = clf.predict_proba(windows, rr).astype(np.float64) if len(peaks) else np.zeros((0, len(dl.CLASSES)))
    cls = proba.argmax(1) if len(peaks) else np.zeros(0, np.int64)
    if gaps is not None and gaps.any() and len(peaks):
        # A beat whose window or RR interval touches a gap cannot be trusted: Q, unclassifiable.
        c = np.concatenate([[0], np.cumsum(gaps)])
        lo = np.clip(np.concatenate([[0], peaks[:-1]]) - dl.WINDOW_BEFORE, 0, len(x))
        hi = np.clip(peaks + dl.WINDOW_AFTER, 0, len(x))
        bad = c[hi] - c[lo] > 0
        proba[bad] = np.nan
        cls[bad] = dl.CLASS_INDEX["Q"]
    return {"sample": peaks, "class": cls, "proba": proba, "match": dl.template_match(windows)}


# --------------------------------------------------------------------------- outputs

def beats_frame(beats: dict, fs_out: float):
    """One row per beat, samples in the input's own rate."""
    import pandas as pd

    scale = fs_out / dl.FS
    sample = np.round(beats["sample"] * scale).astype(np.int64)
    proba = beats["proba"]
    frame = pd.DataFrame({"time_s": np.round(beats["sample"] / dl.FS, 4), "sample": sample,
                          "class": [dl.CLASSES[i] for i in beats["class"]],
                          "confidence": np.round(proba.max(1) if len(proba) else np.zeros(0), 5)})
    for i, c in enumerate(dl.CLASSES):
        frame[f"p_{c}"] = np.round(proba[:, i], 5)
    frame["classifiable"] = ~np.isnan(proba).any(1)
    return frame


def plot_strip(x360: np.ndarray, beats: dict, path, start_s: float, seconds: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"N": "tab:green", "S": "tab:orange", "V": "tab:red", "F": "tab:purple", "Q": "tab:gray"}
    lo = int(max(start_s, 0) * dl.FS)
    seconds = min(seconds, len(x360) / dl.FS)  # a huge --plot-seconds (1e308) overflowed int()
    hi = min(lo + int(seconds * dl.FS), len(x360))  # run() refused a start past the end, before writing
    fig, ax = plt.subplots(figsize=(min(4 + 1.2 * seconds, 40), 3.2))
    t = np.arange(lo, hi) / dl.FS
    ax.plot(t, x360[lo:hi], lw=0.8, color="black")
    sel = (beats["sample"] >= lo) & (beats["sample"] < hi)
    top = np.nanmax(x360[lo:hi])
    for s, k in zip(beats["sample"][sel], beats["class"][sel]):
        c = dl.CLASSES[k]
        ax.axvline(s / dl.FS, color=colours[c], alpha=0.3, lw=1)
        ax.text(s / dl.FS, top, c, color=colours[c], ha="center", va="bottom", fontsize=9, weight="bold")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("ECG")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    from outputs import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_annotations(out_dir: Path, name: str, beats: dict, fs_out: float) -> Path:
    """WFDB annotation file <out_dir>/<name>.aami, written whole or not at all."""
    import wfdb

    sample = np.round(beats["sample"] * fs_out / dl.FS).astype(np.int64)
    symbols = [SYMBOLS[dl.CLASSES[k]] for k in beats["class"]]
    # WFDB record names hold letters, digits, '-' and '_' only: 'holter 01.csv' -> holter_01.aami
    final = out_dir / f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.{ANNOTATION_EXT}"
    # wrann writes under the final name: let it write in a private folder beside the output,
    # then rename (same file system, atomic).
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".wrann-") as tmp:
        written = Path(tmp) / final.name
        if len(sample):
            wfdb.wrann(final.stem, ANNOTATION_EXT, sample, symbols, write_dir=tmp, fs=fs_out)
        else:
            written.write_bytes(b"\x00\x00")  # an empty annotation file
        written.replace(final)
    return final


def too_few_beats(rec, n: int, duration_s: float) -> str:
    return f"{rec.name}: only {n} beats detected in {duration_s:.1f} s; is lead {rec.lead!r} an ECG?"


def summary(beats: dict, duration_s: float, low: float = LOW_CONFIDENCE) -> str:
    counts = {c: int((beats["class"] == i).sum()) for i, c in enumerate(dl.CLASSES)}
    n = len(beats["class"])
    rr = np.diff(beats["sample"]) / dl.FS
    hr = 60.0 / np.median(rr) if len(rr) else float("nan")
    ok = ~np.isnan(beats["proba"]).any(1) if n else np.zeros(0, bool)
    conf = beats["proba"][ok].max(1) if ok.any() else np.zeros(0)
    unclassifiable = int(np.isnan(beats["proba"]).any(1).sum()) if n else 0
    rate = (f"heart rate {hr:.0f} bpm (median RR), {n / duration_s * 60:.0f} bpm (mean)" if len(rr)
            else "no heart rate (fewer than 2 beats)")
    lines = [f"{n} beats in {duration_s / 60:.1f} min; {rate}",
             "  " + "  ".join(f"{c} {counts[c]} ({100 * counts[c] / max(n, 1):.1f}%)" for c in dl.CLASSES),
             f"  {int((conf < low).sum())} beats with confidence below {low:g}"
             + (f"; {unclassifiable} unclassifiable (gaps)" if unclassifiable else "")]
    return "\n".join(lines)


def cannot_read(exc: OSError, args) -> str:
    """An OSError while reading a command's input or model, naming the file (else the input given)."""
    return f"cannot read {exc.filename or args.record or args.csv or args.edf}: {exc.strerror or exc}"


def model_kind(model, kind: str | None, default: str) -> str:
    """--kind, or its default: it picks a run directory's model; beside a model file it must name that file."""
    if kind is not None and Path(model).is_file() and Path(model).name != MODEL_FILES[kind]:
        raise InputError(f"--kind {kind} picks {MODEL_FILES[kind]} of a run directory; {model} is a model file itself "
                         f"(pass the run directory with --kind, or the model file alone)")
    return kind or default


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """The input options, shared by predict and stream."""
    src = p.add_argument_group("input (one of)")
    src.add_argument("--record", help="WFDB record path without extension")
    src.add_argument("--csv", help="CSV file, one column per signal (a header row naming them is optional)")
    src.add_argument("--edf", help="EDF or EDF+ file")
    p.add_argument("--lead", default=None,
                   help="WFDB or EDF lead (default MLII, else the first ECG-like signal, else the first)")
    p.add_argument("--column", default=None, help="CSV column name or 0-based index "
                                                   "(default: MLII, else the first ECG-like, else the first numeric)")
    p.add_argument("--fs", type=float, default=None, help="CSV sampling rate in Hz (required with --csv)")


def check_input_options(args) -> None:
    """InputError unless the input options of add_input_arguments fit together."""
    if sum(a is not None for a in (args.record, args.csv, args.edf)) != 1:
        raise InputError("give one input: --record PATH (WFDB), --csv FILE --fs HZ or --edf FILE")
    if args.csv is None and (args.fs is not None or args.column is not None):
        # a WFDB or EDF file states its own rate and names its leads
        source = "a WFDB record" if args.record else "an EDF file"
        raise InputError(f"{'--fs' if args.fs is not None else '--column'} is for --csv only; {source} "
                         f"states its rate, and --lead chooses its lead")
    if args.csv is not None and args.lead is not None:
        raise InputError(f"--lead is for WFDB records and EDF files; a CSV's column is chosen with "
                         f"--column {args.lead}")


def read_input(args) -> Recording:
    """The recording the input options name."""
    if args.record:
        return read_wfdb(args.record, args.lead)
    if args.edf:
        return read_edf(args.edf, args.lead)
    return read_csv(args.csv, args.fs, args.column)


def run(args) -> dict:
    check_input_options(args)
    clf = load_classifier(args.model, model_kind(args.model, args.kind, "float32"))
    t0 = time.time()  # from here on: what a 30-minute record costs, model already loaded
    rec = read_input(args)
    x, gaps = prepare(rec)
    beats = classify(x, clf, gaps)
    if len(beats["sample"]) < MIN_BEATS:
        raise InputError(too_few_beats(rec, len(beats["sample"]), len(x) / dl.FS))
    seconds = time.time() - t0  # read, resample, filter, detect, classify
    check_signal(rec, beats["match"])
    if not args.no_plot and args.plot_start >= len(x) / dl.FS:
        raise InputError(f"--plot-start {args.plot_start:g} s is past the end of the recording "
                         f"({len(x) / dl.FS:.1f} s)")
    from outputs import FolderError, atomic_path, make_folder

    frame = beats_frame(beats, rec.fs)  # (before the folder is made: nothing between it and the writes fails)
    out = Path(args.out or Path("predictions") / rec.name)
    existed = out.is_dir()
    try:
        make_folder(out, "--out")
    except FolderError as exc:
        raise InputError(str(exc)) from None
    # The default folder is named after the input; another input of the same name (a/100 and b/100)
    # would overwrite its outputs unseen. The folder remembers which input it holds.
    mark = out / SOURCE_MARK
    try:
        other = mark.read_text(encoding="utf-8").strip() if mark.is_file() else ""
    except (OSError, UnicodeError):  # unreadable: as if absent
        other = ""
    if args.out is None and rec.source:
        if other and other != rec.source:
            raise InputError(f"{out} holds the outputs of {other}, another input named {rec.name!r}; "
                             f"choose a folder for {rec.source} with --out (or remove {out})")

    written = []  # a failure part-way removes what was written: all the outputs or none
    strip = out / f"{rec.name}_strip.png"
    try:
        with atomic_path(out / f"{rec.name}_beats.csv") as tmp:
            frame.to_csv(tmp, index=False)
        written.append(out / f"{rec.name}_beats.csv")
        ann = write_annotations(out, rec.name, beats, rec.fs)
        written.append(ann)
        if not args.no_plot:
            plot_strip(x, beats, strip, args.plot_start, args.plot_seconds,
                       f"{rec.name} ({rec.lead}), {clf.mode} model ({clf.kind})")
        elif strip.is_file():
            strip.unlink()  # an earlier run's, showing other beats than these
        if rec.source and (args.out is None or other) and not mark.is_dir():  # marked, given with --out: re-marked
            with atomic_path(mark) as tmp:
                tmp.write_text(rec.source + "\n", encoding="utf-8")
    except BaseException as exc:
        if written and strip.is_file():  # an earlier run's strip, beside none of its other outputs
            written.append(strip)
        for path in written:
            path.unlink(missing_ok=True)
        if not existed:  # the folder this run made, if left empty
            with suppress(OSError):
                out.rmdir()
        if isinstance(exc, OSError):  # a folder not writable, a full disk, a folder named as an output file
            name = exc.filename2 or exc.filename
            raise InputError(f"cannot write the outputs in {out}: {exc.strerror or exc}"
                             f"{f' ({Path(name).name})' if name else ''}; choose another folder with --out") from None
        raise
    text = summary(beats, len(x) / dl.FS, args.low_confidence)
    try:
        print(f"{rec.name}: {clf.mode} model {clf.path} ({clf.kind})\n{text}\n"
              f"classified in {seconds:.2f} s; outputs in {out} ({frame.shape[0]} rows, annotations {ann.name})")
    except BrokenPipeError:  # the reader stopped (`| head`): the outputs are written; stop without a traceback
        discard(sys.stdout)
    except OSError as exc:  # standard output on a full disk: the outputs are written, the summary is lost
        discard(sys.stdout)
        raise InputError(f"cannot write the summary to standard output: {exc.strerror or exc}; the outputs are "
                         f"in {out}") from None
    return {"beats": beats, "frame": frame, "out": out, "seconds": seconds}


def build_parser() -> argparse.ArgumentParser:
    from cli import HelpFormatter

    p = argparse.ArgumentParser(prog="main.py predict", description=__doc__.split("\n")[0], allow_abbrev=False,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="run directory from `python main.py`, or a model file")
    p.add_argument("--kind", choices=list(MODEL_FILES), default=None,
                   help="which model of a run directory to use (default: float32)")
    add_input_arguments(p)
    p.add_argument("--out", default=None, help="output folder (default predictions/<name>)")
    p.add_argument("--plot-start", type=float, default=0.0, help="start of the PNG strip, s")
    p.add_argument("--plot-seconds", type=float, default=10.0, help="length of the PNG strip, s")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG strip")
    p.add_argument("--low-confidence", type=float, default=LOW_CONFIDENCE,
                   help="beats whose top probability is below this are counted as uncertain")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not (0 < args.plot_seconds < np.inf):
            raise InputError(f"--plot-seconds must be a positive number of seconds, got {args.plot_seconds}")
        if not (0 <= args.plot_start < np.inf):
            raise InputError(f"--plot-start must be a number of seconds from the start, at least 0; "
                             f"got {args.plot_start}")
        if not 0 <= args.low_confidence <= 1:
            raise InputError(f"--low-confidence is a probability, between 0 and 1; got {args.low_confidence:g}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            run(args)
    except dl.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: outputs are written whole or not at all (run)
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # (before the outputs were written: a failure, without a traceback)
        discard(sys.stdout)
        return 1
    except OSError as exc:  # reading the input or the model (a failed write says so as an InputError)
        print(f"error: {cannot_read(exc, args)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
