"""Recordings as they come: WFDB records, EDF/EDF+ files and CSV tables read into one lead at its own rate,
resampled to 360 Hz, and checked (rate, length, flat or missing signal, mains hum, beats that resemble nothing).
predict and stream read their input here."""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

import data_loader as dl
from cli import InputError, warn  # noqa: F401  (recordings.InputError: the input's errors)

MIN_SECONDS = 5.0  # shorter recordings hold too few beats for RR features
FS_RANGE = (100.0, 20000.0)  # Hz: below, a QRS is a sample or two; above, most likely not Hz at all
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
MAINS_BLOCK = 64  # sampled segments whose spectra are computed at once



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

    path, lead, header, source = open_wfdb(path, lead)
    try:
        rec = wfdb.rdrecord(str(path), channel_names=[lead])
    except Exception as exc:
        raise InputError(f"cannot read the signal of record {path}: {exc}") from None
    return Recording(rec.p_signal[:, 0].astype(np.float64), float(rec.fs), path.name, lead, source)


def open_wfdb(path, lead: str | None = None):
    """(record path, lead, wfdb header, source) of a WFDB record, checked, its samples not read (chunked.py reads
    them piece by piece)."""
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
    source = str(path.with_suffix(".hea").resolve().with_suffix(""))  # through links to the files
    return path, lead, header, source


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
    signal skipped), read by edfio: of the samples only the chosen signal's are read. Not by wfdb, which resamples
    every signal to one rate."""
    edf = open_edf(path, lead)
    x = edf_values(edf.signal.digital[:edf.n], edf.calibration)  # (records past those announced: not read)
    return Recording(x, edf.fs, edf.path.stem, edf.lead, str(edf.path.resolve()))


@dataclass
class EdfLead:
    """One signal of an EDF file, checked (open_edf), its samples not read: n of them at fs Hz."""

    path: Path
    lead: str
    index: int  # in edfio's Edf.signals
    signal: object  # edfio's EdfSignal
    n: int
    fs: float
    calibration: tuple  # digital min, max; physical min, max


def edf_values(digital: np.ndarray, calibration: tuple) -> np.ndarray:
    """Physical values of an EDF signal's digital samples."""
    dmin, dmax, pmin, pmax = calibration
    return (digital.astype(np.float64) - float(dmin)) * (pmax - pmin) / float(dmax - dmin) + pmin


def open_edf(path, lead: str | None = None, lazy: bool | str = "auto") -> EdfLead:
    """The chosen signal of an EDF/EDF+ file, its header checked; with lazy, its samples read only when asked for
    (chunked.py reads a long one piece by piece)."""
    import warnings

    import edfio

    path = Path(path)
    if not path.is_file():
        raise InputError(not_a_file(path, "EDF"))
    not_edf = f"cannot read {path} as EDF: its header is not an EDF header (export the recording as EDF or EDF+)"
    inconsistent = f"cannot read {path} as EDF: its header is inconsistent"
    with warnings.catch_warnings(record=True) as said:  # edfio's word on a file shorter or longer than announced
        warnings.simplefilter("always")
        try:
            edf = edfio.read_edf(path, lazy, header_encoding="latin-1")
            if edf.version != 0:  # BDF (24-bit) and other files differ
                raise ValueError
            signals = edf.signals  # EDF+'s annotations signal left out
            header_bytes, duration, reserved = edf.bytes_in_header_record, edf.data_record_duration, edf.reserved
            every = len(edf._signals)  # with the annotations signal: the header holds 256 bytes for each (edfio 0.4)
            cols = [(sig.label.strip(), sig.samples_per_data_record, sig.digital_min, sig.digital_max,
                     sig.physical_min, sig.physical_max) for sig in signals]
        except OSError:
            raise
        except (ZeroDivisionError, UnboundLocalError):  # a count or a duration of 0 where the data need one
            raise InputError(inconsistent) from None
        except Exception:  # a header edfio cannot parse
            raise InputError(not_edf) from None
    if reserved.startswith("EDF+D"):
        raise InputError(f"{path.name} is a discontinuous EDF+ file (EDF+D): its data records have gaps "
                         f"in time; export it as continuous EDF+ (EDF+C) or EDF")
    if (header_bytes != 256 * (every + 1) or not every or duration <= 0
            or any(samples < 1 or dmax <= dmin for _, samples, dmin, dmax, _, _ in cols)):
        raise InputError(inconsistent)
    held = edf.num_data_records  # the whole data records in the file
    announced = [int(m[1]) for w in said if (m := re.search(r"header indicates (-?\d+) data records", str(w.message)))]
    n_records = announced[0] if announced and announced[0] >= 0 else held  # -1: still being recorded when written
    if n_records == 0:
        raise InputError(f"{path} holds no data records (no samples)")
    if held < n_records:
        raise InputError(f"{path} is cut short: its header announces {n_records} data records of "
                         f"{duration:g} s, the file holds {held}")
    names = [name for name, *_ in cols]
    if not names:
        raise InputError(f"{path.name} holds no signal, only annotations")
    lead = choose_lead(names, lead, path.name, "signal", "signal")
    k = names.index(lead)
    _, samples, dmin, dmax, pmin, pmax = cols[k]
    return EdfLead(path, lead, k, signals[k], n_records * samples, samples / duration, (dmin, dmax, pmin, pmax))


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
    valid = x[~np.isnan(x)]
    check_values(rec, len(x), bool(np.isfinite(valid).all()), len(valid), np.ptp(valid) if len(valid) else 0.0)
    from quality import flat_stretches

    flat = flat_stretches(x, rec.fs)
    if flat.any():  # a lead off holds one value: no signal there, as a NaN gap
        x = np.where(flat, np.nan, x)
        warn_flat(rec, int(flat.sum()))
    if rec.fs != dl.FS:
        say_resampling(rec)
        x = resample(x, rec.fs)
    filled, gaps = dl.hold_gaps(x)  # (an all-NaN lead was refused above; a stream waits for the first value)
    if np.isnan(rec.x).any():
        warn_missing(rec, int(np.isnan(rec.x).sum()))  # in the input's own samples
    return filled, gaps


def check_values(rec: Recording, length: int, finite: bool, n_valid: int, ptp: float) -> None:
    """InputError unless a lead of `length` samples (at rec.fs) can be classified: all its values finite, long
    enough, some samples present (n_valid), not a flat line (ptp: its valid values' range)."""
    if not finite:
        raise InputError(f"{rec.name}: the signal holds infinite values; clean them or mark them NaN")
    if length / rec.fs < MIN_SECONDS:
        raise InputError(f"{rec.name} is {length / rec.fs:.1f} s long; at least {MIN_SECONDS:.0f} s "
                         f"(a few beats) are needed")
    if n_valid == 0:
        raise InputError(f"{rec.name}: lead {rec.lead!r} holds no samples (all NaN)")
    if ptp < 1e-6:
        raise InputError(f"{rec.name}: lead {rec.lead!r} is a flat line (lead off?); nothing to classify")


def say_resampling(rec: Recording) -> None:
    if rec.fs != dl.FS:
        print(f"resampling {rec.name} from {rec.fs:g} Hz to {dl.FS} Hz (the model's rate)", file=sys.stderr)


def warn_flat(rec: Recording, flat: int) -> None:
    from quality import FLAT_S

    warn(f"{rec.name}: lead {rec.lead!r} is flat (one value for {FLAT_S:g} s or more: lead off?) for "
         f"{flat / rec.fs:.3g} s in all; taken as a gap, its beats marked unclassifiable (Q)")


def warn_missing(rec: Recording, missing: int) -> None:
    warn(f"{rec.name}: {missing} missing sample{'s' if missing > 1 else ''} ({missing / rec.fs:.2g} s; empty, "
         f"text or NaN cells); beats there are marked unclassifiable (Q)")


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
        fill = np.nanmedian(x)
        missing = np.isnan(x)
        mean = (np.nansum(x) + fill * missing.sum()) / x.size
        # the rows' spectra averaged, as Welch averages its segments', MAINS_BLOCK rows at a time (bounded memory)
        p = 0.0
        for a in range(0, len(x), MAINS_BLOCK):
            f, block = welch(np.where(missing[a:a + MAINS_BLOCK], fill, x[a:a + MAINS_BLOCK]) - mean, fs,
                             nperseg=nperseg)
            p = p + block.sum(axis=0)
        p = p / len(x)
    else:
        x = np.where(np.isnan(x), np.nanmedian(x), x)
        f, p = welch(x - np.mean(x), fs, nperseg=nperseg)
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


def cannot_read(exc: OSError, args) -> str:
    """An OSError while reading a command's input or model, naming the file (else the input given)."""
    return f"cannot read {exc.filename or args.record or args.csv or args.edf}: {exc.strerror or exc}"


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """The input options, shared by predict and stream."""
    src = p.add_argument_group("input (one of)")
    src.add_argument("--record", help="WFDB record path without extension")
    src.add_argument("--csv", help="CSV file, one column per signal. Columns are split by ',' or by ';' or tab with ',' "
                     "or '.' as the decimal mark, told by the rows under the first (a header may hold any character); "
                     "rows of two numbers split by ',' are two columns of whole numbers unless the header names one "
                     "column or a row reads -0,... or 0,0... (then one column with decimal commas). UTF-8 or Latin-1. "
                     "A first row of numbers is data (the columns then go by index); a units row under the header "
                     "(s,mV) is skipped; empty or text cells are gaps; a column is numeric when 99%% of its filled "
                     "cells are numbers; a time column whose clock disagrees with --fs gets a warning")
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
    from csv_input import read_csv

    return read_csv(args.csv, args.fs, args.column)
