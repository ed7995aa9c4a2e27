"""The accel entry point as a user runs it: help, one-line errors, --debug, inspect."""

import json

import pytest

from accel.ir import save_model
from tests.support.cli import run_accel as accel
from tests.support.models import small_resnet


def test_help_lists_commands():
    out = accel("--help")
    assert out.returncode == 0
    for command in ("config", "demo", "quantize", "eval", "inspect", "sweep"):
        assert f"    {command} " in out.stdout


def test_user_error_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("acc_bits = 40\n")
    out = accel("config", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"accel: error: {bad}: config.acc_bits: 40 is out of range, allowed 8..32"]


def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("rows = -1\n")
    out = accel("--debug", "config", str(bad))
    assert out.returncode != 0 and "Traceback" in out.stderr and "ConfigError" in out.stderr


def test_unknown_command_exits_2():
    out = accel("frobnicate")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) <= 2


def test_config_init_never_overwrites(tmp_path):
    path = tmp_path / "accel.toml"
    assert accel("config", "--init", str(path)).returncode == 0
    assert "rows = 8" in path.read_text()
    path.write_text("rows = 4\n")
    out = accel("config", "--init", str(path))
    assert out.returncode == 2 and "refusing to overwrite" in out.stderr
    assert path.read_text() == "rows = 4\n"


def test_inspect_table_and_json(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")
    out = accel("inspect", str(path))
    assert out.returncode == 0 and "block.dw" in out.stdout and "103,840 MACs" in out.stdout
    data = json.loads(accel("inspect", str(path), "--json").stdout)
    assert data["total_macs"] == 103840 and data["layers"][-1]["dtype"] == "int32"


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04 truncated", "not a readable .qmodel (zip) file"),
    (b"", "not a readable .qmodel (zip) file"),
])
def test_inspect_bad_file(tmp_path, content, message):
    path = tmp_path / "broken.qmodel"
    path.write_bytes(content)
    out = accel("inspect", str(path))
    assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.cocotb
def test_demo_end_to_end(tmp_path):
    """The main job as `make demo` runs it: accuracy on every bundled model and RTL layers equal to the engine."""
    out = accel("demo", "-o", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "demo_report.json").read_text())
    assert {m["model"] for m in report["models"]} >= {"cnn_mnist", "resnet_mnist", "mobilenet_mnist", "cnn_digits"}
    assert all(m["float_top1"] - m["quant_top1"] <= 1.0 for m in report["models"])
    rtl = report["rtl"]
    assert rtl["ok"] and all(l["mismatches"] == 0 and l["cycles_exact"] for l in rtl["layers"])
    assert len(rtl["layers"]) == 4 and (tmp_path / "out" / "rtl_cycles.json").exists()
    assert "all outputs match the engine" in out.stdout
    assert "## RTL: cnn_digits" in (tmp_path / "out" / "demo_report.md").read_text()
    assert report["sweep"]["points_done"] == report["sweep"]["points_total"] == 24
    assert (tmp_path / "out" / "report" / "report.html").is_file() and "report/report.html" in out.stdout
