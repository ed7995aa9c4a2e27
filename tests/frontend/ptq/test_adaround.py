"""AdaRound on the LUT grid: lower reconstruction error than nearest rounding, codes only, bit-exact."""

import copy

import numpy as np
import pytest

from accel.engine import run_model, run_model_contract
from accel.frontend.ptq.adaround import adaround, neighbour_levels
from accel.frontend.ptq.layerwise import quantize_network_input
from accel.frontend.weights import quantize_weights
from tests.support.models import nearest_digits


def test_neighbour_levels_bracket_every_weight():
    w = np.random.default_rng(0).normal(size=(6, 4, 3, 3))
    for scope in ("layer", "channel"):
        q = quantize_weights(w, weight_bits=3, lut_scope=scope)
        code_lo, code_hi, lv_lo, lv_hi, frac = neighbour_levels(q, w)
        u = w / q.step.reshape(-1, 1, 1, 1)
        rows = np.zeros(6, int) if q.lut.shape[0] == 1 else np.arange(6)
        lut = q.lut.astype(float)[rows]
        assert np.all(lut[np.arange(6)[:, None], code_lo.reshape(6, -1)] == lv_lo.reshape(6, -1))
        assert np.all(lut[np.arange(6)[:, None], code_hi.reshape(6, -1)] == lv_hi.reshape(6, -1))
        inside = (u >= lut.min(axis=1).reshape(-1, 1, 1, 1)) & (u <= lut.max(axis=1).reshape(-1, 1, 1, 1))
        assert np.all((lv_lo <= u + 1e-9) | ~inside) and np.all((u <= lv_hi + 1e-9) | ~inside)
        np.testing.assert_allclose((lv_lo + frac * (lv_hi - lv_lo))[inside], u[inside], atol=1e-9)
        # nearest rounding is one of the two neighbours
        assert np.all((q.codes == code_lo) | (q.codes == code_hi) | (lv_lo == lv_hi))


@pytest.fixture(scope="module")
def rounded():
    graph, x, weights, nearest = nearest_digits(weight_bits=2)
    model = copy.deepcopy(nearest)
    results = adaround(model, graph, weights, x, iters=200)
    return nearest, model, results, x


def test_adaround_lowers_every_layers_reconstruction_error(rounded):
    _, _, results, _ = rounded
    assert len(results) == 4
    for name, r in results.items():
        assert r.adaround < r.nearest, (name, r)
        assert r.kept and r.changed > 0


def test_adaround_changes_only_codes_and_stays_bit_exact(rounded):
    nearest, model, _, x = rounded
    changed = 0
    for a, b in zip(nearest.layers, model.layers):
        assert a.attrs == b.attrs and set(a.arrays) == set(b.arrays)
        for key in a.arrays:
            if key == "codes":
                changed += int(np.count_nonzero(a.arrays[key] != b.arrays[key]))
                assert b.arrays[key].max() < 1 << model.config.weight_bits
            else:
                np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    assert changed > 0
    model.validate()
    x_int = quantize_network_input(model, x[:64])
    out = model.outputs[0]
    np.testing.assert_array_equal(run_model(model, x_int)[out], run_model_contract(model, x_int)[out])
