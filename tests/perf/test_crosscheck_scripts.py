"""The peer-simulator cross-check scripts under ``bench/`` fail with one clear line when their tool is missing.

The cross-checks themselves run ZigZag / SCALE-Sim from their own virtual
environments (``docs/PERF.md``), which the suite does not have; these tests
hold the user-facing failure modes that need no peer tool.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ZIGZAG_SCRIPT = ROOT / "bench" / "zigzag_crosscheck.py"


def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ZIGZAG_SCRIPT), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_zigzag_crosscheck_names_the_missing_interpreter_and_the_install(tmp_path):
    proc = run_script("--zigzag-python", tmp_path / "no-venv" / "python", "--out", tmp_path / "r.json")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--zigzag-python" in lines[0] and "no such interpreter" in lines[0], lines
    assert "pip install zigzag-dse==" in lines[0]
    assert not (tmp_path / "r.json").exists()


def test_zigzag_crosscheck_names_an_interpreter_without_zigzag(tmp_path):
    if subprocess.run([sys.executable, "-c", "import zigzag.api"], capture_output=True).returncode == 0:
        pytest.skip("this interpreter has ZigZag installed")
    proc = run_script("--zigzag-python", sys.executable, "--out", tmp_path / "r.json")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot import zigzag" in lines[0], lines


def test_zigzag_crosscheck_keeps_an_existing_results_file(tmp_path):
    out = tmp_path / "results.json"
    out.write_text("mine\n")
    proc = run_script("--zigzag-python", tmp_path / "no-venv" / "python", "--out", out)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--force" in proc.stderr
    assert out.read_text() == "mine\n"
