"""Small file helpers: atomic writes, checksums and strict readers (nothing half-written is ever taken as
complete; a bad data file is reported with its path and line, not as a stack trace from deep in a library)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DataError(ValueError):
    """A data file that cannot be used as it is; the message names the file, the line and the fix."""


class DiskFullError(OSError):
    """No space (or quota) left while writing a result; the previous version of the file is untouched."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path in the same directory; rename it onto `path` only if the block succeeds.

    A failed or killed write leaves `path` as it was (absent, or its previous content); a kill -9 can leave only
    the hidden `.<name>.*.tmp`, which no reader takes for a result. A full disk is reported as such.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        _raise_if_disk_full(err, path)
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as err:
        _raise_if_disk_full(err, path)
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _raise_if_disk_full(err: OSError, path: Path) -> None:
    if err.errno in DISK_FULL or "No space left on device" in str(err):
        state = "keeps its previous content" if path.exists() else "was not created"
        raise DiskFullError(
            err.errno or errno.ENOSPC,
            f"disk full (or quota exceeded) while writing {path}: {err.strerror or err}. {path.name} {state} and "
            f"no partial file was left. Free space on that file system (`df -h {path.parent}`) or move results/ "
            f"to a larger disk, then rerun: finished results are kept and only what is missing is computed.",
        ) from err


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path):
    """A JSON file; a syntax error names the file, line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); fix or recreate the "
                        f"file.") from None


def read_text(path: str | Path) -> str:
    """A UTF-8 text file; other bytes are reported with the line and byte offset where they start."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                        f"save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).") from None


def read_jsonl(path: str | Path, required=(), *, allow_empty: bool = False) -> list[dict]:
    """The records of a JSON Lines file: one JSON object per line (blank lines are skipped, as the `datasets`
    reader does). Every problem names the file and line: bytes that are not UTF-8, a line that is not a JSON
    object, a record without a `required` field, and a file without records (unless `allow_empty`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; check the path.")
    records = []
    # split on newlines only: str.splitlines would also split inside records at U+2028 and other separators
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno}); each line must "
                            f"hold one JSON object: fix or remove line {lineno}.") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{lineno}: a JSON {type(record).__name__} where a JSON object (one record per "
                            f"line) belongs.")
        if missing := [field for field in required if field not in record]:
            raise DataError(f"{path}:{lineno}: the record has no {missing[0]!r} field (it has: "
                            f"{', '.join(sorted(record)) or 'none'}); every record needs {', '.join(required)}.")
        records.append(record)
    if not records and not allow_empty:
        what = "the file is empty" if not path.stat().st_size else "only blank lines"
        raise DataError(f"{path} holds no records ({what}); it needs one JSON object per line.")
    return records
