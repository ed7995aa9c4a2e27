"""Running the `accel` command line as a user would (a subprocess of this interpreter)."""

from __future__ import annotations

import re
import subprocess
import sys

from accel.frontend.workflow import MODELS_DIR

#: The smallest bundled network, for command-line round trips.
DIGITS = str(MODELS_DIR / "cnn_digits.onnx")


def run_accel(*args, cwd=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m accel ARGS`` in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "accel", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def accel(*args, cwd=None) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``python -m accel ARGS``."""
    proc = run_accel(*args, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def one_line_error(stderr: str, pattern: str) -> None:
    """``stderr`` is one line, ``accel: error: `` then ``pattern``."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert re.match(rf"^accel: error: {pattern}", lines[0]), lines[0]
