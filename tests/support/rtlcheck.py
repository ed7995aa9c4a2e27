"""Shared by the cocotb suites: how many random problems to run, and a readable mismatch."""

import os

import numpy as np

#: Random problems per test (``ACCEL_SIM_SAMPLES``, default 6).
SAMPLES = int(os.environ.get("ACCEL_SIM_SAMPLES", "6"))


def describe_mismatch(prob, res, exp) -> str:
    """``name: N mismatches; first: channel c, pixel p: expected e, got g``."""
    bad = np.argwhere(res != exp)
    p, c = bad[0]
    return (f"{prob.name}: {len(bad)} mismatches; first: channel {c}, pixel {p}: expected {exp[p, c]}, "
            f"got {res[p, c]}")
