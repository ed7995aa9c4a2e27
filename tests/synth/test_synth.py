"""``accel rtl synth``: yosys + nextpnr on small configurations, results, cache, no-fit and tool errors."""

import json
import subprocess
import sys

import pytest

from accel.config import AcceleratorConfig
from accel.errors import ToolError, UsageError
from accel.hw.verilog import port_description
from accel.synth import TARGETS, FitError, get_target, run_name, synthesize
from accel.synth.flow import _overflow_watch, _tool

SMALL = AcceleratorConfig(rows=2, cols=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the first run of a key synthesizes, a repeat reads the cache."""
    return tmp_path_factory.mktemp("synth-cache")


def accel(*args, env_cache=None):
    env = None
    if env_cache is not None:
        import os

        env = {**os.environ, "ACCEL_CACHE_DIR": str(env_cache)}
    return subprocess.run([sys.executable, "-m", "accel", *args], capture_output=True, text=True,
                          timeout=600, env=env)


def test_unknown_target_names_the_known_ones():
    with pytest.raises(UsageError, match="unknown FPGA target 'ecp5-12k'; expected one of ecp5-25k"):
        get_target("ecp5-12k")


def test_missing_tool_names_the_install_command():
    with pytest.raises(ToolError, match=r"yowasp-nextpnr-xilinx not found: install it with "
                                        r"`pip install yowasp-nextpnr-xilinx`"):
        _tool("yowasp-nextpnr-xilinx")


@pytest.mark.synthesis
def test_ecp5_out_of_context_reports_area_fmax_and_path(cache, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("rows = 2\ncols = 2\n")
    out = accel("rtl", "synth", "--config", str(cfg), "--target", "ecp5-25k", "--json", "-o",
                str(tmp_path / "rep"), env_cache=cache)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["target"], r["device"], r["array"], r["out_of_context"], r["io"]) == (
        "ecp5-25k", "LFE5U-25F", "2x2", True, 0)
    assert r["dsp"] == 4  # one 9x8 multiplier per PE
    assert r["port_bits"] == sum(p["width"] for p in port_description(SMALL)["ports"])
    assert r["luts"] > 0 and r["ffs"] > 0 and r["carry"] > 0
    assert 0 < r["logic_cells"][0] < r["logic_cells"][1] == 24288
    assert r["constraint_mhz"] == SMALL.clock_mhz and r["fmax_mhz"]["clk"] > 10
    path = r["critical_path"]
    assert path["from"] and path["to"] and path["delay_ns"] == pytest.approx(
        path["logic_ns"] + path["routing_ns"], abs=0.01)
    assert 1000 / r["fmax_mhz"]["clk"] == pytest.approx(path["delay_ns"], rel=0.05)
    assert json.loads((tmp_path / "rep" / "synth-ecp5-25k.json").read_text())["luts"] == r["luts"]
    # The same key again: from the cache; the report files are not replaced without --force.
    again = synthesize(SMALL, TARGETS["ecp5-25k"], cache=cache)
    assert again.cached and again.luts == r["luts"]
    # Looked up without running: the same result here, nothing in another cache.
    assert synthesize(SMALL, TARGETS["ecp5-25k"], cache=cache, cached_only=True) == again
    assert synthesize(SMALL, TARGETS["ecp5-25k"], cache=tmp_path / "empty", cached_only=True) is None
    refused = accel("rtl", "synth", "--config", str(cfg), "--target", "ecp5-25k", "-o", str(tmp_path / "rep"),
                    env_cache=cache)
    assert refused.returncode == 2 and "synth-ecp5-25k.json" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    text = accel("rtl", "synth", "--config", str(cfg), "--target", "ecp5-25k", env_cache=cache)
    assert "2x2 core on LFE5U-25F (out of context) [cached]" in text.stdout and "Fmax clk" in text.stdout


def test_run_name_follows_the_verilog_target_and_constraint():
    name = run_name(SMALL, TARGETS["ecp5-25k"])
    assert name.startswith("ecp5-25k-2x2-") and name == run_name(SMALL, TARGETS["ecp5-25k"])
    others = {run_name(SMALL, TARGETS["ecp5-85k"]), run_name(SMALL, TARGETS["ecp5-25k"], freq_mhz=150),
              run_name(AcceleratorConfig(rows=2, cols=2, pe_kind="shift"), TARGETS["ecp5-25k"]),
              # clock_mhz is the default constraint: the same run as freq_mhz=150 above.
              run_name(AcceleratorConfig(rows=2, cols=2, clock_mhz=150), TARGETS["ecp5-25k"])}
    assert name not in others and len(others) == 3
    # The placement seed is part of the key; seed 1, the default, names the runs cached before it was a choice.
    assert run_name(SMALL, TARGETS["ecp5-25k"], seed=2) not in others | {name}
    assert run_name(SMALL, TARGETS["ecp5-25k"], seed=1) == name


def test_synth_cli_refuses_a_negative_seed(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "accel", "rtl", "synth", "--seed", "-3"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "--seed" in err[0], proc.stderr


# The head of nextpnr-ecp5's log of the 16x16 shift_add core on an 85k part (unused resources left out).
_UTILISATION = """Info: Packing FFs...
Info: Checksum: 0xff37c9ad

Info: Device utilisation:
Info: \t          TRELLIS_IO:       0/    365     0%
Info: \t          MULT18X18D:       0/    156     0%
Info: \t          TRELLIS_FF:   32731/  83640    39%
Info: \t        TRELLIS_COMB:   {comb}/  83640   107%
"""


@pytest.mark.parametrize("comb, stops", [(90173, True), (52227, False)])
def test_overflow_watch_stops_nextpnr_once_the_utilisation_block_overflows(tmp_path, comb, stops):
    log = tmp_path / "nextpnr.log"
    give_up = _overflow_watch(log)
    assert not give_up()  # no log yet
    log.write_text(_UTILISATION.format(comb=comb))
    assert not give_up()  # the block may go on: no verdict yet
    log.write_text(_UTILISATION.format(comb=comb) + "\nInfo: Placed 0 cells based on constraints.\n")
    assert give_up() is stops
    # Decided once: later lines (another block, while routing) are not read.
    log.write_text(_UTILISATION.format(comb=10 * comb) + "\n")
    assert give_up() is stops


@pytest.mark.synthesis
def test_axi_top_synthesizes_through_the_cli(cache, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("rows = 1\ncols = 2\n")
    out = accel("rtl", "synth", "--top", "axi", "--config", str(cfg), "--target", "ecp5-25k", "--json", "-o",
                str(tmp_path / "rep"), env_cache=cache)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert (r["top"], r["array"], r["port_bits"], r["dsp"]) == ("accel_axi_top", "1x2", 167, 2)
    assert r["ffs"] > r["port_bits"] and r["fmax_mhz"]["clk"] > 10
    assert (tmp_path / "rep" / "synth-axi-ecp5-25k.json").exists()


@pytest.mark.synthesis
def test_design_that_does_not_fit_names_the_resource(cache):
    # Nine multipliers for the eight DSPs of an iCE40 UP5K.
    with pytest.raises(FitError, match=r"the 3x3 core for iCE40UP5K \(SG48\) does not fit: "
                                       r"DSP multipliers \(ICESTORM_DSP\): 9 of 8"):
        synthesize(AcceleratorConfig(rows=3, cols=3), TARGETS["ice40-up5k"], cache=cache)


@pytest.mark.synthesis
@pytest.mark.slow
def test_ice40_scan_wrapper_places_in_five_pins(cache):
    r = synthesize(SMALL, TARGETS["ice40-up5k"], cache=cache)
    assert r.io == 5 and not r.out_of_context  # clk, rst, scan_in, capture, scan_out
    assert r.wrapper_ffs == r.port_bits and r.ffs > r.wrapper_ffs
    assert r.dsp == 4 and r.fmax_mhz["clk"] > 5


@pytest.mark.synthesis
@pytest.mark.slow
def test_default_8x8_on_ecp5_85k():
    r = synthesize(AcceleratorConfig(), TARGETS["ecp5-85k"])  # the user cache: docs/FPGA.md's numbers
    assert r.dsp == 64 and r.fmax_mhz["clk"] > 0


@pytest.mark.synthesis
@pytest.mark.slow
def test_default_8x8_meets_150_mhz_on_ecp5_85k():
    # Issue 11: the pipelined core places and routes at 150 MHz on an LFE5U-85F (docs/FPGA.md: 169.0 MHz).
    r = synthesize(AcceleratorConfig(), TARGETS["ecp5-85k"], freq_mhz=150)
    assert r.dsp == 64 and r.fmax_mhz["clk"] >= 150, r.critical_path


@pytest.mark.synthesis
@pytest.mark.slow
def test_multiplier_free_16x16_fits_ecp5_85k():
    # Issue 11: 256 shift PEs place and route on an LFE5U-85F without DSPs (docs/FPGA.md's numbers).
    r = synthesize(AcceleratorConfig(rows=16, cols=16, pe_kind="shift"), TARGETS["ecp5-85k"])
    assert r.dsp == 0 and r.logic_cells[0] < r.logic_cells[1] and r.fmax_mhz["clk"] > 0


@pytest.mark.synthesis
@pytest.mark.slow
@pytest.mark.parametrize("kind, resource", [
    ("general", r"DSP multipliers \(MULT18X18D\): 256 of 156"),
    # Two shifters and an adder per PE: more logic cells than the part has (stopped before placing).
    ("shift_add", r"logic cells \(LUT4/carry\) \(TRELLIS_COMB\): \d+ of 83640"),
])
def test_16x16_that_does_not_fit_ecp5_85k_names_the_resource(kind, resource):
    with pytest.raises(FitError, match=r"16x16 core for LFE5U-85F does not fit: " + resource):
        synthesize(AcceleratorConfig(rows=16, cols=16, pe_kind=kind), TARGETS["ecp5-85k"])
