"""Output files: checked before the work, written atomically, never replaced unasked, no stray temporaries."""

import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from accel.errors import OutputError
from accel.report.files import (
    STALE_AFTER_S,
    check_output,
    check_output_dir,
    clean_stale_temporaries,
    open_atomic,
    write_text,
)


def temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_refuses_an_existing_file_unless_asked(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("mine")
    with pytest.raises(OutputError, match=r"a\.txt: already exists; refusing to overwrite it \(use --force\)$"):
        write_text(path, "new")
    assert path.read_text() == "mine"
    write_text(path, "new", overwrite=True)
    assert path.read_text() == "new" and temporaries(tmp_path) == []


def test_new_file_has_the_ordinary_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
        path.chmod(0o640)
        write_text(path, "y", overwrite=True)
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(umask)


def under_a_file(folder):
    (folder / "file").write_text("")
    return folder / "file" / "a.txt"


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing" / "a.txt", r"a\.txt: folder .*missing does not exist$"),
    (under_a_file, r"a\.txt: .*file is not a folder$"),
    (lambda d: d, r": is a folder; expected a file name$"),
])
def test_destination_checked_before_the_work(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(OutputError, match=message):
        check_output(path)
    with pytest.raises(OutputError, match=message):
        write_text(path, "x")


def check_without_root(path) -> str:
    """``check_output(path)`` as an unprivileged user: the message of its error, or "ok".

    Tests run as root, for whom a read-only folder is writable; a forked child that drops to
    ``nobody`` sees the permissions a user would (no exec: it reuses this process's imports)."""
    def attempt() -> str:
        try:
            check_output(path)
        except OutputError as exc:
            return str(exc)
        return "ok"

    if os.geteuid() != 0:
        return attempt()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, attempt().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    return message


def test_a_read_only_folder_is_refused_before_the_work():
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:  # not under pytest's 0700 root
        os.chmod(folder, 0o777)
        assert check_without_root(Path(folder) / "a.txt") == "ok"
        os.chmod(folder, 0o555)
        assert check_without_root(Path(folder) / "a.txt") == f"{folder}/a.txt: folder {folder} is not writable"
        os.chmod(folder, 0o755)


def test_folder_outputs_are_created_but_never_over_a_file(tmp_path):
    paths = check_output_dir(tmp_path / "new" / "out", ["a.v", "a.md"])
    assert [p.name for p in paths] == ["a.v", "a.md"] and (tmp_path / "new" / "out").is_dir()
    (tmp_path / "new" / "out" / "a.md").write_text("hand edits")
    with pytest.raises(OutputError, match=r"a\.md: already exists"):
        check_output_dir(tmp_path / "new" / "out", ["a.v", "a.md"])
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match=r"f: is not a folder$"):
        check_output_dir(tmp_path / "f", ["a.v"])


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError), open_atomic(tmp_path / "a.txt") as f:
        f.write("half")
        raise RuntimeError("the work failed")
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_appears_during_the_write_is_not_replaced(tmp_path):
    path = tmp_path / "a.txt"
    with pytest.raises(OutputError, match="already exists"), open_atomic(path) as f:
        f.write("ours")
        path.write_text("theirs")
    assert path.read_text() == "theirs" and temporaries(tmp_path) == []


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_stale_temporaries_are_cleaned_and_nothing_else(tmp_path):
    dead = tmp_path / f".a.txt.{dead_pid()}.abcd1234.tmp"
    live = tmp_path / f".a.txt.{os.getpid()}.abcd1234.tmp"
    old = tmp_path / f".b.txt.{os.getpid()}.efgh5678.tmp"
    users = [tmp_path / "a.txt.tmp", tmp_path / ".a.txt.tmp", tmp_path / f".a.txt.{dead_pid()}.tmp"]
    for path in (dead, live, old, *users):
        path.write_text("x")
    os.utime(old, (time.time() - STALE_AFTER_S - 60,) * 2)
    assert sorted(clean_stale_temporaries(tmp_path)) == sorted([dead, old])
    assert live.exists() and all(p.exists() for p in users)


def test_kill_9_during_a_save_leaves_nothing_after_the_next_write(tmp_path):
    """A writer killed (SIGKILL) mid-write leaves its temporary; the next write in that folder removes it."""
    script = ("import os, signal, sys\nfrom accel.report.files import open_atomic\n"
              "with open_atomic(sys.argv[1]) as f:\n    f.write('half'); f.flush()\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "a.txt")], capture_output=True)
    assert proc.returncode == -9
    assert not (tmp_path / "a.txt").exists() and len(temporaries(tmp_path)) == 1
    write_text(tmp_path / "b.txt", "whole")
    assert temporaries(tmp_path) == [] and (tmp_path / "b.txt").read_text() == "whole"
