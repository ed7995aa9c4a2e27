"""Writing output files safely: checked first, written atomically, never replacing a user's file unasked.

Every file accel writes goes through this module:

1. :func:`check_output` (or :func:`check_output_dir`) runs **before** the work that produces the
   file, so that a missing or read-only folder or an existing file is a one-line
   :class:`~accel.errors.OutputError` instead of a lost hour of work;
2. :func:`write_text`, :func:`write_bytes`, :func:`write_json` or :func:`open_atomic` write to a
   unique temporary file in the destination folder (``.<name>.<pid>.<random>.tmp``, from
   :func:`tempfile.mkstemp`) and publish it with one rename, so a reader sees the old file or the
   new one, never half of one; without ``overwrite`` the publication itself refuses to replace a
   file that appeared meanwhile (a hard link, which fails on an existing name);
3. each write first removes stale temporaries of that pattern left in the folder by a killed
   writer: those whose process is gone, or older than :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError

__all__ = ["STALE_AFTER_S", "check_output", "check_output_dir", "clean_stale_temporaries", "open_atomic",
           "write_bytes", "write_json", "write_text"]

#: A temporary file older than this (seconds) is stale even if its process id is in use again.
STALE_AFTER_S = 3600

# .<name>.<pid>.<mkstemp's 8 random characters>.tmp
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp$")


def _writable_dir(folder: Path, path: Path) -> None:
    if not folder.exists():
        raise OutputError(f"{path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"{path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {folder} is not writable")


def check_output(path: str | os.PathLike, *, overwrite: bool = False, make_parents: bool = False) -> Path:
    """Check that ``path`` can be written, before doing the work that produces it.

    Parameters
    ----------
    path : path-like
        The file to write.
    overwrite : bool
        Allow replacing an existing file (``--force``).
    make_parents : bool
        Create missing parent folders (for build outputs under a folder accel owns); otherwise a
        missing folder is an error.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        ``path`` is a folder, exists without ``overwrite``, or its folder is missing (without
        ``make_parents``), not a folder or not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; refusing to overwrite it (use --force)")
    folder = path.parent
    if make_parents:
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        _writable_dir(existing, path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create folder {folder} ({exc.strerror})") from None
    _writable_dir(folder, path)
    return path


def check_output_dir(folder: str | os.PathLike, names: list[str], *, overwrite: bool = False) -> list[Path]:
    """Check an output folder and the files ``names`` in it before the work; create the folder if missing.

    Returns the file paths. Raises :class:`~accel.errors.OutputError` as :func:`check_output` does,
    naming the first file that exists (without ``overwrite``).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is not a folder")
    paths = [folder / name for name in names]
    for path in paths:
        check_output(path, overwrite=overwrite, make_parents=True)
    return paths


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temporaries(folder: str | os.PathLike, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temporaries of our pattern in ``folder`` whose writer is gone or that are older than
    ``max_age_s``; returns what was removed. Files of other names are never touched."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stale = not _pid_alive(int(match["pid"])) or now - entry.stat().st_mtime > max_age_s
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # removed by someone else meanwhile, or not ours to remove
            continue
    return removed


def _new_file_mode(path: Path) -> int:
    """The mode an ordinary ``open(path, "w")`` would give (mkstemp's temporaries are 0600)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails on an existing name: no race between the check and the write
    except FileExistsError:
        raise OutputError(f"{path}: already exists; refusing to overwrite it (use --force)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():  # a file system without hard links: check, then rename
            raise OutputError(f"{path}: already exists; refusing to overwrite it (use --force)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, *, overwrite: bool = False, binary: bool = False) -> Iterator:
    """A file object writing to a temporary beside ``path``, published when the block ends cleanly.

    On an exception the temporary is removed and ``path`` is untouched. The destination is
    checked first (:func:`check_output`).
    """
    path = check_output(path, overwrite=overwrite)
    clean_stale_temporaries(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write in {path.parent} ({exc.strerror})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))
        _publish(tmp, path, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`open_atomic`); returns the path."""
    with open_atomic(path, overwrite=overwrite, binary=True) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`open_atomic`); returns the path."""
    with open_atomic(path, overwrite=overwrite) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data, *, overwrite: bool = False, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (with a final newline) to ``path`` atomically; returns the path."""
    return write_text(path, json.dumps(data, indent=indent) + "\n", overwrite=overwrite)
