"""cocotb module for tests/rtlsim/test_drivers.py: the driver/monitor classes step by step.

The configuration of the Verilog comes as JSON in ``ACCEL_CONFIG``; operands are
seeded random (``ACCEL_SEED``). Every check compares with the contract
(:mod:`accel.datapath`, through ``CoreDriver.expected``) and the cycle schedule.
"""

import json
import os

import cocotb
import numpy as np

from accel.compile import schedule
from accel.config import AcceleratorConfig
from accel.rtlsim.testbench.drivers import CoreDriver, OutputMonitor, run_tile
from tests.support.strategies import mac_arrays


def _config() -> AcceleratorConfig:
    return AcceleratorConfig.from_dict(json.loads(os.environ["ACCEL_CONFIG"]))


def _operands(rng, cfg, pixels, channels, depth, signed):
    arrays = mac_arrays(rng, cfg, channels, (channels, depth), extreme=False)
    lo, hi = cfg.act_range(signed)
    arrays["act"] = rng.integers(lo, hi + 1, (pixels, depth))
    return arrays


@cocotb.test()
async def lut_loads_and_tiles_in_one_job(dut):
    """Two tables, three tiles (the second reuses the first table), one job; values and cycles exact."""
    cfg, rng = _config(), np.random.default_rng(int(os.environ.get("ACCEL_SEED", "0")))
    driver, monitor = CoreDriver(dut, cfg), OutputMonitor(dut, cfg)
    await driver.reset()
    driver.set_layer(lo=0, hi=255, act_signed=False)
    shapes = [(cfg.rows, cfg.cols, 9), (max(1, cfg.rows - 1), cfg.cols, 1), (cfg.rows, max(1, cfg.cols - 1), 23)]
    for i, (pixels, channels, depth) in enumerate(shapes):
        ops = _operands(rng, cfg, pixels, channels, depth, signed=False)
        if i != 1:
            lut = ops["lut"] if ops["lut"].shape[0] == 1 else np.resize(ops["lut"], (cfg.cols, cfg.lut_entries))
            driver.load_lut(lut)
        assert driver.send_tile(ops["act"], ops["codes"], ops["bias"], ops["shift"], ops["mult"]) == i
    expected = driver.expected()
    plan = await driver.run()
    got = monitor.collect(plan)
    assert [t.lut_load for t in plan.tiles] == [True, False, True]
    for i, (res, exp) in enumerate(zip(got.results, expected)):
        assert np.array_equal(res, exp), f"tile {i}: {np.argwhere(res != exp).tolist()[:5]} differ"
    model = schedule(plan)
    assert got.stamps == [(c.first_in, c.last_out) for c in model]
    assert got.total_cycles == model[-1].last_out + 1
    assert len(got.words) == len(plan.tiles) * cfg.rows


@cocotb.test()
async def run_tile_after_another_job(dut):
    """A second job in the same simulation (the core reset in between): raw and clamped signed tiles."""
    cfg, rng = _config(), np.random.default_rng(int(os.environ.get("ACCEL_SEED", "0")) + 1)
    for raw in (True, False):
        ops = _operands(rng, cfg, cfg.rows, cfg.cols, 17, signed=True)
        run = await run_tile(dut, cfg, ops["lut"], ops["act"], ops["codes"], ops["bias"], ops["shift"],
                             ops["mult"], lo=-100, hi=90, raw=raw)
        assert run.ok, f"raw={raw}: got {run.result.tolist()}, expected {run.expected.tolist()}, " \
                       f"cycles {(run.first_in, run.last_out)} vs {run.schedule_cycles}"
        assert run.cycles == run.schedule_cycles[1] - run.schedule_cycles[0] + 1
