"""The one assertion that holds an executor to the datapath contract, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from accel.engine import run_model_contract


def assert_matches_contract(model, xs, got: dict[str, np.ndarray], executor: str,
                            expected: dict[str, np.ndarray] | None = None) -> None:
    """Every tensor of ``expected`` (default: the contract on ``xs``, all tensors) equals ``got``;
    a failure names the executor, the tensor, the first differing index, both values and the config."""
    if expected is None:
        expected = run_model_contract(model, xs, return_all=True)
    for name, want in expected.items():
        assert name in got, f"{executor}: tensor {name!r} is missing"
        have = np.asarray(got[name])
        if have.dtype.kind == "f":
            assert np.all(have == np.round(have)), f"{executor}: tensor {name!r} holds non-integers"
        have = have.astype(np.int64)
        if have.shape != want.shape:
            pytest.fail(f"{executor}: tensor {name!r} has shape {have.shape}, the contract {want.shape}")
        if not np.array_equal(have, want):
            idx = tuple(int(i) for i in np.argwhere(have != want)[0])
            pytest.fail(f"{executor}: tensor {name!r} differs at {idx}: contract {want[idx]}, got {have[idx]} "
                        f"(config {model.config.to_dict()})")
