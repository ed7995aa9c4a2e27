"""Misuse the command line as users did: each mistake is one line on stderr and exit 2, before any work;
no file a user had is replaced without --force; a closed pipe and a live progress bar stay quiet."""

import os
import re
import subprocess
import sys

import pytest

from accel.ir import save_model
from tests.support.cli import DIGITS
from tests.support.cli import run_accel as accel
from tests.support.models import small_resnet


def fails_with(proc, pattern: str) -> None:
    """Exit 2 and exactly one line on stderr matching ``pattern``; nothing on stdout."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and re.match(pattern, lines[0]), proc.stderr
    assert proc.stdout == ""


@pytest.fixture
def qmodel(tmp_path):
    return save_model(small_resnet(), tmp_path / "m.qmodel")


@pytest.mark.parametrize("args, pattern", [
    (["quantize", DIGITS, "-o", "x.qmodel", "--seed", "-1"],
     r"^accel quantize: error: argument --seed: -1: expected an integer of 0 or more$"),
    (["quantize", DIGITS, "-o", "x.qmodel", "--calib-size", "0"],
     r"^accel quantize: error: argument --calib-size: 0: expected a positive integer \(1 or more\)$"),
    (["quantize", DIGITS, "-o", "x.qmodel", "--levels", "-2"],
     r"^accel quantize: error: argument --levels: -2: expected a positive integer"),
    (["quantize", DIGITS, "-o", "x.qmodel", "--seed", "one"],
     r"^accel quantize: error: argument --seed: invalid integer 'one'$"),
    (["quantize", DIGITS, "-o", "x.qmodel", "--user-lut=-8,0,8"],
     r"^accel: error: --user-lut gives the levels of the 'user' LUT family; it has no effect with --lut mse$"),
    (["quantize", DIGITS, "-o", "x.qmodel", "--lut", "user"],
     r"^accel: error: --lut user needs --user-lut L0,L1,\.\.\. \(the int8 levels\)$"),
    (["quantize", DIGITS, "-o", "missing/x.qmodel"],
     r"^accel: error: missing/x\.qmodel: folder missing does not exist$"),
    (["rtl", "verify", "m.qmodel", "--images", "0"],
     r"^accel rtl verify: error: argument --images: 0: expected a positive integer \(1 or more\)$"),
    (["rtl", "verify", "m.qmodel", "--images", "-3"], r"^accel rtl verify: error: argument --images: -3: expected"),
    (["perf", "m.qmodel", "--images", "0"],
     r"^accel perf: error: argument --images: 0: expected a positive integer \(1 or more\)$"),
    (["rtl", "synth", "--freq", "-5"], r"^accel rtl synth: error: argument --freq: -5\.0: expected a number above 0$"),
    (["train", DIGITS, "--train", "digits", "-o", "x.qmodel", "--lr", "nan"],
     r"^accel train: error: argument --lr: nan: expected a number above 0$"),
    (["rtl", "verify", "m.qmodel", "--force"], r"^accel: error: --force replaces an existing --cycles file; give"),
    (["eval", "m.qmodel", "--data", "digits", "--calib", "digits"],
     r"^accel: error: --calib applies only to an \.onnx model, quantized on the fly; m\.qmodel is already quantized$"),
    (["eval", "m.qmodel", "--data", "digits", "--calib", "digits", "--config", "c.toml"],
     r"^accel: error: --calib and --config apply only to an \.onnx model"),
    (["demo", "--no-rtl", "--sim", "icarus"], r"^accel: error: --sim chooses the simulator of the RTL check; it has no "
                                               r"effect with --no-rtl$"),
    (["config", "--force"], r"^accel: error: --force replaces the file written by --init; without --init nothing"),
    (["config", "c.toml", "--init", "d.toml"], r"^accel: error: --init writes the defaults; it does not read c\.toml"),
    (["config", "--init", "m.qmodel/a.toml"], r"^accel: error: m\.qmodel/a\.toml: m\.qmodel is not a folder$"),
])
def test_misuse_is_one_line_and_exit_2(tmp_path, qmodel, args, pattern):
    fails_with(accel(*args, cwd=tmp_path), pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.qmodel"]  # nothing written


def test_config_init_force_and_a_users_tmp_file(tmp_path):
    (tmp_path / "accel.toml.tmp").write_text("the user's own notes")
    (tmp_path / "accel.toml").write_text("rows = 4\n")
    fails_with(accel("config", "--init", "accel.toml", cwd=tmp_path),
               r"^accel: error: accel\.toml: already exists; refusing to overwrite it \(use --force\)$")
    assert accel("config", "--init", "accel.toml", "--force", cwd=tmp_path).returncode == 0
    assert "rows = 8" in (tmp_path / "accel.toml").read_text()
    assert (tmp_path / "accel.toml.tmp").read_text() == "the user's own notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accel.toml", "accel.toml.tmp"]


def test_rtl_generate_keeps_hand_edited_verilog(tmp_path):
    out = tmp_path / "v"
    assert accel("rtl", "generate", "-o", out, cwd=tmp_path).returncode == 0
    verilog = out / "accel_gemm_core.v"
    verilog.write_text("// hand-edited\n")
    fails_with(accel("rtl", "generate", "-o", out, cwd=tmp_path),
               r"^accel: error: .*accel_gemm_core\.v: already exists; refusing to overwrite it \(use --force\)$")
    assert verilog.read_text() == "// hand-edited\n"
    proc = accel("rtl", "generate", "-o", out, "--force", cwd=tmp_path)
    assert proc.returncode == 0 and "module accel_gemm_core(" in verilog.read_text()
    (tmp_path / "file").write_text("")
    fails_with(accel("rtl", "generate", "-o", "file", cwd=tmp_path), r"^accel: error: file: is not a folder$")


def test_rtl_verify_refuses_an_existing_cycles_file_before_simulating(tmp_path, qmodel):
    (tmp_path / "cycles.json").write_text("{}")
    fails_with(accel("rtl", "verify", qmodel, "--cycles", "cycles.json", cwd=tmp_path),
               r"^accel: error: cycles\.json: already exists; refusing to overwrite it \(use --force\)$")
    fails_with(accel("rtl", "verify", qmodel, "--cycles", "no/cycles.json", cwd=tmp_path),
               r"^accel: error: no/cycles\.json: folder no does not exist$")
    assert (tmp_path / "cycles.json").read_text() == "{}"


def test_demo_refuses_to_replace_an_earlier_report(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "demo_report.md").write_text("kept")
    fails_with(accel("demo", "--no-rtl", cwd=tmp_path),
               r"^accel: error: out/demo_report\.md: already exists; refusing to overwrite it \(use --force\)$")
    assert (tmp_path / "out" / "demo_report.md").read_text() == "kept"


def test_an_error_under_a_progress_bar_starts_its_own_line(tmp_path):
    """The bar is closed (and cleared) before the error is printed, not left with the message after it."""
    proc = subprocess.run([sys.executable, "-m", "accel", "quantize", DIGITS, "-o", "x.qmodel", "--levels", "17"],
                          cwd=tmp_path, capture_output=True, timeout=300)  # bytes: keep the carriage returns
    stderr = proc.stderr.decode()
    assert proc.returncode == 2
    assert "quantize weights" in stderr  # the error came while the bar was drawn
    error = re.compile(r"^accel: error: layer '[^']+': levels 17, expected an integer in 2\.\.16 for 4-bit weights$")
    # A terminal shows what follows the last carriage return of each line.
    shown = [line.split("\r")[-1] for line in stderr.split("\n") if line.split("\r")[-1].strip()]
    assert len(shown) == 1 and error.match(shown[0]), repr(stderr[-300:])


@pytest.mark.parametrize("args", [["inspect", "m.qmodel"], ["inspect", "m.qmodel", "--json"],
                                  ["config"]])
def test_a_closed_pipe_ends_quietly(tmp_path, qmodel, args):
    """``accel inspect m.qmodel | head -0``: the reader is gone before we write; no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "accel", *args], cwd=tmp_path, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 141
