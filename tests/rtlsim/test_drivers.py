"""The reusable cocotb classes (accel/rtlsim/testbench/drivers.py): step by step on the RTL, and their
input checks without a simulator."""

import json

import numpy as np
import pytest
from cocotb_tools.runner import get_results

from accel.config import AcceleratorConfig
from accel.errors import ModelError
from accel.rtlsim import build_simulation, run_testbench
from accel.rtlsim.testbench.drivers import CoreDriver

ODD = AcceleratorConfig(rows=2, cols=3, acc_bits=16, overflow="saturate", requant="multiply_shift",
                        rounding="floor", lut_scope="channel", mult_bits=12)


@pytest.mark.cocotb
@pytest.mark.parametrize("sim,config", [("verilator", AcceleratorConfig()), ("icarus", ODD)],
                         ids=["verilator-8x8", "icarus-2x3-odd"])
def test_driver_and_monitor_step_by_step_on_the_rtl(sim, config, tmp_path):
    build = build_simulation(config, sim)
    try:
        results = run_testbench(build, "tests.rtlsim.drivers_tb", tmp_path,
                                extra_env={"ACCEL_CONFIG": json.dumps(config.to_dict()), "ACCEL_SEED": "11"})
    except SystemExit:  # cocotb's runner exits under pytest when a cocotb test fails: show why
        pytest.fail((tmp_path / "sim.log").read_text()[-4000:])
    assert get_results(results) == (2, 0)


def _driver(**changes):
    return CoreDriver(None, AcceleratorConfig(rows=2, cols=2).replace(**changes))


def test_send_tile_before_a_lut_load_is_refused():
    with pytest.raises(ModelError, match="no LUT loaded in this job; call load_lut first"):
        _driver().send_tile(np.zeros((2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize("args,message", [
    ((np.zeros((3, 4)), np.zeros((2, 4))), r"3 pixels x 2 channels: one tile holds at most 2 x 2"),
    ((np.zeros((2, 4)), np.zeros((2, 5))), r"act \(2, 4\) and codes \(2, 5\)"),
    ((np.full((2, 4), 128), np.zeros((2, 4))), r"act holds 128..128; expected -128..127"),
    ((np.zeros((2, 4)), np.full((2, 4), 16)), r"codes holds 16..16; expected 0..15"),
    ((np.zeros((1, 4)), np.zeros((1, 4)), [0], [32]), r"shift holds 32..32; expected 0..31"),
])
def test_send_tile_names_the_bad_operand(args, message):
    driver = _driver()
    driver.load_lut(np.arange(16) - 8)
    with pytest.raises(ModelError, match=message):
        driver.send_tile(*args)


def test_load_lut_checks_shape_values_and_the_configs_lut_scope():
    driver = _driver()
    with pytest.raises(ModelError, match=r"table of shape \(8,\): expected \(16,\) or \(2, 16\)"):
        driver.load_lut(np.zeros(8))
    with pytest.raises(ModelError, match=r"table holds 128..128; expected -128..127"):
        driver.load_lut(np.full(16, 128))
    layer_scope = _driver(lut_scope="layer")
    layer_scope.load_lut(np.zeros((2, 16)))  # per-channel tables need lut_scope "channel": the compiler says so
    with pytest.raises(ModelError, match="lut_scope 'channel'"):
        layer_scope.send_tile(np.zeros((1, 4)), np.zeros((2, 4)))


def test_queued_job_is_a_plan_with_lut_loads_where_asked():
    driver = _driver()
    driver.load_lut(np.arange(16) - 8)
    driver.send_tile(np.ones((2, 3)), np.ones((2, 3)))
    driver.send_tile(np.ones((1, 5)), np.ones((2, 5)))
    driver.load_lut(np.arange(16) - 8)
    driver.send_tile(np.ones((2, 1)), np.ones((1, 1)))
    plan = driver.plan
    assert [(t.problem, t.depth, t.lut_load) for t in plan.tiles] == [(0, 3, True), (1, 5, False), (2, 1, True)]
    assert [e.tolist() for e in driver.expected()] == [[[-21, -21]] * 2, [[-35, -35]], [[-7]] * 2]
    with pytest.raises(ModelError, match="layer settings hold for a whole job"):
        driver.set_layer(lo=0, hi=255)
