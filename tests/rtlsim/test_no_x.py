"""No X or Z after reset under Icarus (four-state): the core harness, sampled every cycle.

The monitor (accel/rtlsim/testbench/xcheck.py) checks the ready/valid/busy signals of
every core stream in every cycle from reset release to the end of each job, and the output
payload whenever ``out__valid`` is 1. The AXI top gets the same monitor in
tests/rtlsim/test_axi_top.py. Verilator is two-state, so it cannot show an X.
"""

import numpy as np
import pytest

from accel.compile import plan_tiles
from accel.config import AcceleratorConfig
from accel.rtlsim import build_simulation
from accel.rtlsim.xcheck import harness_x_findings
from tests.support.strategies import random_problem

pytestmark = pytest.mark.cocotb


def _plans(config, rng, n):
    plans = []
    for i in range(n):
        # A LUT load first in every job (the phase where the issue saw X), signed and unsigned inputs.
        prob = random_problem(rng, config, pixels=int(rng.integers(1, 2 * config.rows + 2)),
                              depth=int(rng.integers(1, 30)), channels=int(rng.integers(1, 2 * config.cols + 2)),
                              signed=bool(i % 2), raw=i == 2, name=f"x{i}")
        plans.append((prob.name, plan_tiles([prob], config)))
    return plans


@pytest.mark.parametrize("config", [AcceleratorConfig(),
                                    AcceleratorConfig(rows=2, cols=3, acc_bits=16, overflow="saturate",
                                                      requant="multiply_shift", rounding="floor",
                                                      lut_scope="channel", mult_bits=12)],
                         ids=["8x8", "2x3-odd"])
def test_core_harness_has_no_x_after_reset_under_icarus(config):
    build = build_simulation(config, "icarus")
    assert harness_x_findings(build, _plans(config, np.random.default_rng(21), 3)) == []


def test_no_x_inside_the_core_either_small_array():
    # Every signal inside a 2x2 core (skew registers, PEs, requantizers) is 0/1 in every cycle.
    config = AcceleratorConfig(rows=2, cols=2)
    assert harness_x_findings(build_simulation(config, "icarus"), _plans(config, np.random.default_rng(22), 2),
                              deep=True) == []
