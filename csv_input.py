"""ECG tables as people export them: a CSV's separator, decimal mark, header, units row, time and counter columns
and gaps told from its rows, and one numeric column read as the lead (recordings.py reads WFDB and EDF)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import data_loader as dl
from cli import InputError, warn
from recordings import Recording, check_rate, is_mlii, lead_like, not_a_file

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
