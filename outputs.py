"""Output folders and atomic writes: every artifact appears whole under its final name or not at all."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


class FolderError(ValueError):
    """An output folder that cannot be made; the message names it and the fix."""


def make_folder(path, option: str) -> Path:
    """path, made (with its parents) if missing; FolderError, naming another `option` as the fix, where
    it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a file of that name exists" if path.is_file() else exc.strerror
        raise FolderError(f"cannot make the folder {path} ({option}): {why}; choose another {option}") from None
    return path


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds. An OSError
    (a folder not writable, a full disk) names `path`, the file asked for, not the temporary one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    except OSError as exc:  # a folder not writable: its error names the temporary file it could not make
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename not in (None, tmp) and exc.filename2 is None:
            raise  # another file's error, in the block
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def discard(stream) -> None:
    """Send what is still written to `stream` (sys.stdout, sys.stderr) nowhere: its reader has gone
    (`| head`), and the next write would raise BrokenPipeError again."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path, data: bytes) -> None:
    """`data` written whole under `path`. Serialisers that write from C++ (torch.save, torch.jit.save) abort
    the process or raise RuntimeError on a full disk; given a buffer instead, their bytes are written here,
    where a full disk is an OSError naming `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")
