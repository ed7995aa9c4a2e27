"""Mixed-precision search: the result meets its budget, counted from the written model's own LUTs."""

import numpy as np
import pytest

from accel.data import load_dataset, sample
from accel.errors import ConfigError
from accel.frontend.calibrate import calibrate
from accel.frontend.onnx_import import import_onnx
from accel.frontend.quantize import default_config
from accel.frontend.workflow import MODELS_DIR
from accel.perf import estimate
from accel.perf.network import stored_bits
from accel.precision import Budget, model_weight_bits, network_cost, search_precision


@pytest.mark.parametrize("text, value, unit", [("2.5", 2.5, "bpw"), ("3bpw", 3.0, "bpw"), ("12000B", 12000, "bytes"),
                                               ("12kB", 12000, "bytes"), ("2KiB", 2048, "bytes"),
                                               ("2.5uJ", 2.5, "uJ"), ("250nJ", 0.25, "uJ"), ("3µJ", 3.0, "uJ")])
def test_budget_parse(text, value, unit):
    budget = Budget.parse(text)
    assert budget.unit == unit and budget.value == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "0", "-2", "3 bits", "12MB", "x", "2J", "0uJ"])
def test_bad_budget(text):
    with pytest.raises(ConfigError, match=r"^budget .*: expected a positive number of bits per weight \(2\.5 or "
                                          r"2\.5bpw\), of bytes \(12000B, 12kB, 12KiB\) or of energy per inference"):
        Budget.parse(text)


@pytest.fixture(scope="module")
def digits_setup():
    graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
    x = load_dataset("digits", "train").x
    config = default_config()
    return graph, calibrate(graph, x, act_bits=config.act_bits), sample(x, 128, 0), config


@pytest.mark.parametrize("budget", ["4.5", "3", "2.8", "6000B"])
def test_search_meets_its_budget(digits_setup, budget):
    graph, calib, x, config = digits_setup
    wanted = Budget.parse(budget)
    result = search_precision(graph, calib, x, config, wanted)
    used = model_weight_bits(result.model)  # from the model's LUTs: distinct levels per table
    assert all(used[name] <= bits for name, bits in result.bits.items())
    assert network_cost(result.model, used, wanted.unit) <= wanted.value
    assert result.model.metadata["precision"]["weight_bits"] == result.bits
    widest = network_cost(result.model, dict.fromkeys(used, 4), wanted.unit)
    assert widest > wanted.value  # the budget did force lower widths
    assert min(result.bits.values()) < 4


def test_search_keeps_the_widest_weights_when_the_budget_allows(digits_setup):
    graph, calib, x, config = digits_setup
    result = search_precision(graph, calib, x, config, Budget(100.0, "bpw"))
    assert set(result.bits.values()) == {4}


def test_an_impossible_budget_is_refused(digits_setup):
    graph, calib, x, config = digits_setup
    with pytest.raises(ConfigError, match=r"^budget 1 bits per weight: cannot be met; with every layer at 2-bit "
                                          r"weights the network needs 2\.\d+ bits per weight$"):
        search_precision(graph, calib, x, config, Budget(1.0, "bpw"))


def test_lower_widths_cost_less(digits_setup):
    graph, calib, x, config = digits_setup
    model = search_precision(graph, calib, x, config, Budget(100.0, "bpw")).model
    names = list(model_weight_bits(model))
    costs = [network_cost(model, dict.fromkeys(names, b), "bytes") for b in (2, 3, 4)]
    assert costs == sorted(costs) and len(set(costs)) == 3
    assert np.isclose(network_cost(model, dict.fromkeys(names, 4), "bpw") * sum(
        np.asarray(layer.arrays["codes"]).size for layer in model.layers if "codes" in layer.arrays) / 8, costs[2])


@pytest.mark.parametrize("budget", ["0.27uJ", "250nJ"])
def test_energy_budget_is_met_with_weight_and_activation_bits(digits_setup, budget):
    """An energy budget: the written model, priced again by accel perf with packed activations and
    codes, meets it; activation widths narrower than act_bits appear, as clamp ranges of the model."""
    graph, calib, x, config = digits_setup
    wanted = Budget.parse(budget)
    result = search_precision(graph, calib, x, config, wanted)
    model = result.model
    assert estimate(model, packed=True).energy_uj <= wanted.value < estimate(model).energy_uj
    assert result.cost == estimate(model, packed=True).energy_uj
    assert min(result.act_bits.values()) < config.act_bits
    assert model.metadata["precision"]["act_bits"] == result.act_bits
    widths = stored_bits(model)
    for layer in model.layers:
        if layer.name in result.act_bits:
            assert widths[layer.output] <= result.act_bits[layer.name]
            assert model.tensors[layer.output].exponent == result.calibration.exponents[layer.output]
    used = model_weight_bits(model)
    assert all(used[name] <= bits for name, bits in result.bits.items())


def test_storage_budgets_keep_the_widest_activations(digits_setup):
    graph, calib, x, config = digits_setup
    result = search_precision(graph, calib, x, config, Budget.parse("3bpw"))
    assert set(result.act_bits.values()) == {config.act_bits}
    assert result.act_sensitivity == {name: {config.act_bits: 0.0} for name in result.act_bits}


def test_an_impossible_energy_budget_is_refused(digits_setup):
    graph, calib, x, config = digits_setup
    with pytest.raises(ConfigError, match=r"^budget 0\.1 uJ per inference: cannot be met; with every layer at 2-bit "
                                          r"weights and 4-bit activations the network needs 0\.2\d+ uJ per "
                                          r"inference$"):
        search_precision(graph, calib, x, config, Budget.parse("100nJ"))
