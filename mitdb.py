"""The MIT-BIH Arrhythmia Database: its records downloaded from PhysioNet or found in a folder, checked against
PhysioNet's SHA256SUMS.txt, and read (the MLII lead in mV; the reference beats with their AAMI EC57 classes)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

FS = 360  # Hz, MIT-BIH sampling rate
LEAD = "MLII"
PHYSIONET_DB = "mitdb"
RECORD_EXTENSIONS = (".hea", ".dat", ".atr")

# AAMI EC57 classes and the MIT-BIH beat labels they gather (the evaluation protocol's table).
CLASSES = ("N", "S", "V", "F", "Q")
AAMI_MAP = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}


class DataError(Exception):
    """A problem with the input data that the user can fix; the message says how."""


def record_files(data_dir: Path, record: str) -> list[Path]:
    return [Path(data_dir) / f"{record}{ext}" for ext in RECORD_EXTENSIONS]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _expected_sums(data_dir: Path) -> dict[str, str]:
    sums = Path(data_dir) / "SHA256SUMS.txt"
    if not sums.exists():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1].lstrip("*")] = parts[0]
    return out


BYTES_PER_SAMPLE = {"212": 1.5, "16": 2, "61": 2, "80": 1, "8": 1, "310": 4 / 3, "311": 4 / 3}  # WFDB formats


def signals_complete(data_dir: Path, record: str) -> bool:
    """Whether the record's header reads and its .dat holds every sample the header promises: the
    check for a folder without SHA256SUMS.txt (a file cut short by a failed copy)."""
    import wfdb

    try:
        header = wfdb.rdheader(str(Path(data_dir) / record))
    except Exception:
        return False
    return short_signal_file(Path(data_dir), header) is None  # (a layout it does not know: left to SHA256SUMS.txt)


def short_signal_file(folder: Path, header) -> Path | None:
    """The record's signal file if it holds fewer bytes than its header's samples need (one file, one
    format this knows); None otherwise."""
    files, formats = set(header.file_name or []), set(header.fmt or [])
    if len(files) != 1 or len(formats) != 1 or formats & set(BYTES_PER_SAMPLE) != formats or not header.sig_len:
        return None
    path = folder / files.pop()
    offset = max([b or 0 for b in (header.byte_offset or [])] or [0])
    need = offset + header.sig_len * header.n_sig * BYTES_PER_SAMPLE[formats.pop()]
    return path if path.is_file() and path.stat().st_size < need else None


def check_records(data_dir: Path, records) -> tuple[list[str], dict[str, str]]:
    """Return (records missing, cut short or failing SHA256SUMS.txt, digest of each good record)."""
    expected = _expected_sums(data_dir)
    bad, digests = [], {}
    for rec in records:
        files = record_files(data_dir, rec)
        if not all(f.is_file() for f in files):
            bad.append(rec)
            continue
        if f"{rec}.dat" not in expected and not signals_complete(data_dir, rec):  # else SHA256SUMS.txt tells
            bad.append(rec)
            continue
        sums = [_sha256(f) for f in files]
        if any(f.name in expected and expected[f.name] != s for f, s in zip(files, sums)):
            bad.append(rec)
            continue
        digests[rec] = hashlib.sha256("".join(sums).encode()).hexdigest()[:16]
    return bad, digests


def ensure_records(data_dir, records, offline: bool = False) -> dict[str, str]:
    """Make sure every record is present and intact, downloading from PhysioNet if allowed.

    Returns a content digest per record (used to key the preprocessing cache).
    """
    data_dir = Path(data_dir)
    bad, digests = check_records(data_dir, records)
    if bad and not offline:
        try:
            import wfdb

            data_dir.mkdir(parents=True, exist_ok=True)
            wfdb.dl_files(PHYSIONET_DB, str(data_dir), ["SHA256SUMS.txt", "RECORDS"])
            wfdb.dl_database(PHYSIONET_DB, str(data_dir), records=list(bad), overwrite=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(
                f"could not download MIT-BIH records {' '.join(bad)} from PhysioNet into "
                f"{data_dir}: {exc}. Check the network, or fetch the database by hand from "
                f"https://physionet.org/content/mitdb/1.0.0/ and pass --data-dir and --offline."
            ) from None
        bad, digests = check_records(data_dir, records)
    if bad:
        raise DataError(
            f"MIT-BIH records missing or corrupt in {data_dir}: {' '.join(bad)}. "
            f"Each record needs {', '.join(RECORD_EXTENSIONS)} files, complete and matching SHA256SUMS.txt "
            f"where the folder has one. "
            f"Run without --offline to download them, or copy the database from "
            f"https://physionet.org/content/mitdb/1.0.0/ into that folder."
        )
    return digests


def read_record(path, lead: str = LEAD) -> tuple[np.ndarray, int]:
    """Read one lead of a WFDB record by name. Returns (signal in mV, sampling rate in Hz)."""
    import wfdb

    header = wfdb.rdheader(str(path))
    if lead not in header.sig_name:
        raise DataError(f"record {path} has no lead {lead!r} (it has {', '.join(header.sig_name)}); "
                        f"choose one of those.")
    rec = wfdb.rdrecord(str(path), channel_names=[lead])
    return rec.p_signal[:, 0].astype(np.float64), int(rec.fs)


def read_beats(path) -> tuple[np.ndarray, np.ndarray]:
    """Reference beat annotations: (R-peak sample indices, AAMI class indices)."""
    import wfdb

    try:
        ann = wfdb.rdann(str(path), "atr")
    except OSError:
        raise  # missing or unreadable: the callers' messages name it
    except Exception as exc:  # wfdb's parser on a damaged file: IndexError, ValueError, ...
        raise DataError(f"cannot read the beat annotations {path}.atr ({type(exc).__name__}: {exc}); the file is "
                        f"damaged: copy the record again (or delete its files and run without --offline to download "
                        f"it)") from None
    symbols = np.asarray(ann.symbol)
    keep = np.isin(symbols, list(AAMI_MAP))
    labels = np.array([CLASS_INDEX[AAMI_MAP[s]] for s in symbols[keep]], dtype=np.int64)
    return np.asarray(ann.sample)[keep].astype(np.int64), labels
