import re

import pytest

from accel.config import AcceleratorConfig, LutScope, Overflow, load_config, save_config
from accel.errors import ConfigError, OutputError


def test_defaults():
    cfg = AcceleratorConfig()
    assert (cfg.rows, cfg.cols, cfg.weight_bits, cfg.act_bits, cfg.acc_bits) == (8, 8, 4, 8, 32)
    assert cfg.lut_entries == 16 and cfg.max_shift == 31
    assert cfg.overflow is Overflow.WRAP
    assert cfg.replace(requant="multiply_shift").max_shift == 32 + 16 - 1


def test_toml_round_trip(tmp_path):
    cfg = AcceleratorConfig(rows=4, cols=16, lut_scope="channel", acc_bits=24, overflow="saturate")
    path = save_config(cfg, tmp_path / "a.toml")
    loaded = load_config(path)
    assert loaded == cfg and loaded.lut_scope is LutScope.CHANNEL


def test_save_refuses_to_overwrite(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text("keep me")
    with pytest.raises(OutputError, match="already exists"):
        save_config(AcceleratorConfig(), path)
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("text, message", [
    ("rows = 0", r"config\.rows: 0 is out of range, allowed 1\.\.256"),
    ("weight_bits = 9", r"config\.weight_bits: 9 is out of range, allowed 2\.\.8"),
    ("acc_bits = 'wide'", r"config\.acc_bits: expected an integer in 8\.\.32, got 'wide'"),
    ("overflow = 'clip'", r"config\.overflow: 'clip' is not one of 'wrap', 'saturate'"),
    ("colz = 4", r"unknown field 'colz' in the configuration; allowed: acc_bits, act_bits, act_buffer_bytes, "),
    ("mac_pj = 1.0", r": unknown field 'mac_pj' in the configuration; it belongs in the \[energy\] table$"),
    ("[energy]\nrows = 4", r": energy: unknown field 'rows' in the \[energy\] table; it belongs in the top level"),
    ("[energy]\nmac = 1.0",
     r": energy: unknown field 'mac' in the \[energy\] table; allowed: acc_add_pj, dram_byte_pj, "),
    ("[timing]\nx = 1", r": unknown table 'timing' in the configuration; allowed: "),
    ("[accelerator]\nrows = 4\n[energy]\nmac_pj = 1.0",
     r": 'energy' is outside the \[accelerator\] table; a file with \[accelerator\] holds every field inside it"),
    ("accelerator = 3", r": 'accelerator' must be a table \(\[accelerator\]\), got 3$"),
    ("[accelerator]\nrowz = 4", r": unknown field 'rowz' in the configuration"),
    ("[accelerator.energy]\nrows = 4", r": energy: unknown field 'rows' in the \[energy\] table"),
    ("[energy]\nmac_pj = -1.0", r"energy\.mac_pj: -1\.0 is out of range"),
    ("rows = [", r"not valid TOML"),
    ("vector_lanes = 0", r"config\.vector_lanes: 0 is out of range"),
    ("dram_bytes_per_cycle = 0", r"config\.dram_bytes_per_cycle: 0 is out of range"),
    ("activation_coding = 1", r"config\.activation_coding: expected true or false, got 1"),
    ("[energy]\nrequant_mult_pj = -2", r"energy\.requant_mult_pj: -2 is out of range"),
])
def test_errors_name_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="^" + re.escape(str(path)) + ".*" + message):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_accelerator_table_holds_everything(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text("[accelerator]\nrows = 4\n[accelerator.energy]\nmac_pj = 1.5\n")
    cfg = load_config(path)
    assert cfg.rows == 4 and cfg.energy.mac_pj == 1.5
