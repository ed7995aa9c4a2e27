"""Shared pytest configuration.

* ``slow`` tests (exhaustive sweeps) run only with ``ACCEL_FULL=1`` (``make test-full``)
  or when selected explicitly with ``-m slow``.
* Hypothesis profiles: ``default`` (the representative sample that ``make test`` runs)
  and ``full`` (selected by ``ACCEL_FULL=1``), both derandomized for reproducible runs.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

FULL = os.environ.get("ACCEL_FULL", "") not in ("", "0")

settings.register_profile("default", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("full", parent=settings.get_profile("default"), max_examples=5000)
settings.load_profile("full" if FULL else "default")


def pytest_collection_modifyitems(config, items):
    if FULL or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with ACCEL_FULL=1 (make test-full) or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
