"""`accel rtl generate` and `accel rtl verify` as a user runs them."""

import json
from pathlib import Path

import numpy as np
import pytest

from accel.cli import main
from accel.frontend.workflow import MODELS_DIR

pytestmark = pytest.mark.cocotb


def test_generate_writes_verilog_and_description_and_lints_clean(tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("rows = 2\ncols = 3\nacc_bits = 20\noverflow = \"saturate\"\n")
    assert main(["rtl", "generate", "--config", str(cfg), "-o", str(tmp_path / "out"), "--lint"]) == 0
    out = capsys.readouterr().out
    assert "accel_gemm_core.v (verilog)" in out and ": clean" in out
    desc = json.loads((tmp_path / "out" / "accel_gemm_core.json").read_text())
    assert desc["config"]["rows"] == 2 and desc["timing"]["min_last_interval"] == 2 * 2 + 3 + 2


def test_generate_axi_top_lints_clean_and_fits_a_package(tmp_path, capsys):
    assert main(["rtl", "generate", "--top", "axi", "-o", str(tmp_path / "out"), "--lint"]) == 0
    out = capsys.readouterr().out
    assert "accel_axi_top.v (verilog)" in out and ": clean" in out
    desc = json.loads((tmp_path / "out" / "accel_axi_top.json").read_text())
    # 32-bit streams both ways, AXI4-Lite, clk, rst, irq: 167 pins for every array size (the
    # LFE5U-85F's 381-ball package has 205 user I/O); the core alone has 767 port bits at 8x8.
    assert desc["pins"] == sum(p["width"] for p in desc["ports"]) == 167
    assert {r["name"] for r in desc["registers"]} >= {"CTRL", "STATUS", "TILES", "CYCLES", "OUT_STALLS"}
    assert "| 0x0C | CTRL |" in (tmp_path / "out" / "accel_axi_top.md").read_text()


def test_generate_refuses_an_unbuildable_config_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("acc_bits = 14\n")
    assert main(["rtl", "generate", "--config", str(cfg), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["accel: error: config.acc_bits: the gateware cannot build 14, allowed 16..32 (the "
                   "accumulator must hold one 8-bit x int8 product: at least 16 bits)"]


def test_verify_prints_a_table_and_writes_cycles(digits_qmodel, tmp_path, capsys):
    cycles = tmp_path / "cycles.json"
    code = main(["rtl", "verify", str(digits_qmodel), "--sim", "icarus", "--layer", "classifier.classifier.1.Gemm",
                 "--layer", "classifier.classifier.3.Gemm", "--cycles", str(cycles)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "layer" in out and "mismatches" in out and "all outputs match the engine" in out
    data = json.loads(cycles.read_text())
    assert [la["layer"] for la in data["layers"]] == ["classifier.classifier.1.Gemm", "classifier.classifier.3.Gemm"]
    assert all(la["cycles_exact"] for la in data["layers"])
    tile = data["layers"][0]["tiles"][0]
    assert tile["cycles"] == tile["depth"] + 2 * 8 + 8 + 2 + 5  # K + 2 rows + cols + 2 + requant latency


def test_verify_json_and_exit_status_on_mismatch(digits_qmodel, capsys, monkeypatch):
    code = main(["rtl", "verify", str(digits_qmodel), "--sim", "icarus", "--layer",
                 "classifier.classifier.3.Gemm", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["layers"][0]["mismatches"] == 0
    # The exit status follows the reports: a report with a mismatch gives 1.
    from accel.rtlsim import verify

    real = verify.verify_model

    def one_wrong(*args, **kwargs):
        reports = real(*args, **kwargs)
        reports[0].mismatches = 1
        reports[0].first = [verify.Mismatch(reports[0].layer, 3, (0,), 5, 6)]
        return reports

    monkeypatch.setattr(verify, "verify_model", one_wrong)
    code = main(["rtl", "verify", str(digits_qmodel), "--sim", "icarus", "--layer", "classifier.classifier.3.Gemm"])
    out = capsys.readouterr().out
    assert code == 1
    assert "mismatch: layer 'classifier.classifier.3.Gemm': channel 3, pixel (0,): expected 5, got 6" in out


def test_verify_with_waves_keeps_the_waveform_in_its_run_folder_under_build_dir(digits_qmodel, tmp_path, capsys,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    code = main(["rtl", "verify", str(digits_qmodel), "--sim", "icarus", "--waves", "--images", "1",
                 "--layer", "classifier.classifier.3.Gemm", "--build-dir", "cache",  # relative to the working folder
                 "--cycles", str(tmp_path / "cycles.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("waveform: ")]
    waves = Path(line.removeprefix("waveform: "))
    assert waves.name == "accel_harness.fst" and waves.stat().st_size > 0
    assert waves.is_relative_to(cache / "runs")  # a private run folder, not the shared build


def test_verify_names_an_unknown_layer(digits_qmodel, capsys):
    assert main(["rtl", "verify", str(digits_qmodel), "--sim", "icarus", "--layer", "nope"]) == 2
    assert "layer 'nope': no such layer" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name,data", [("cnn_mnist", "mnist5k"), ("resnet_mnist", "mnist5k"),
                                       ("mobilenet_mnist", "mnist5k"), ("cnn_digits", "digits")])
def test_every_bundled_network_on_the_rtl(name, data, tmp_path):
    from accel.frontend import quantize_onnx
    from accel.rtlsim import model_inputs, verify_model

    model = quantize_onnx(MODELS_DIR / f"{name}.onnx", data)
    reports = verify_model(model, model_inputs(model, None, 1), sim="verilator")
    for r in reports:
        assert r.ok and r.cycles_exact, r.to_dict()
    assert np.sum([r.outputs for r in reports]) > 0
